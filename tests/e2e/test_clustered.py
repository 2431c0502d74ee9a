"""Clustered functions over several nodes: a three-node `ray.cluster_utils.Cluster` in one
subprocess (the integration suite holds its own Ray in-process), which runs every scenario once
and reports them; each test checks its part.

- `size=2`: ranks 0 and 1 on two distinct nodes, both addresses known to both, a sum over TCP;
- `size=4` on three nodes: a clear `InvalidError`, no hang;
- a failing rank fails the call and no rank process is left; every placement group is removed;
- `retries=` restarts the whole group (rank 0 runs again in a new process);
- `timeout=` covers the group: a rank that runs past it fails the call;
- with the operator's `MODAL_RAY_CLUSTER_SHARE_NODES=1`, four ranks share the three nodes (warned).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys, time
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    for _ in range(2):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    out = {}
    work = sys.argv[1]
    try:
        ray.init(address=cluster.address, namespace="modal-main", logging_level="ERROR")
        out["nodes"] = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        import modal
        import modal.experimental
        from modal.experimental import get_cluster_info

        app = modal.App("clustered")

        @app.function(timeout=60)
        @modal.experimental.clustered(size=2)
        def tcp_sum(values):
            info = get_cluster_info()
            me = {
                "rank": info.rank,
                "cluster_rank": modal.Cluster.from_context().container_rank(),
                "node": ray.get_runtime_context().get_node_id(),
                "ips": info.container_ips,
                "master": [os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])],
                "value": values[info.rank],
            }
            addr = (info.container_ips[0], info.container_ports[0])
            if info.rank == 1:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        conn = socket.create_connection(addr, timeout=5)
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                with conn:
                    conn.sendall(json.dumps(me).encode() + b"\\n")
                return None
            with socket.create_server(addr) as server:
                server.settimeout(30)
                conn, _ = server.accept()
                with conn, conn.makefile() as f:
                    peer = json.loads(f.readline())
            return {"ranks": [me, peer], "sum": me["value"] + peer["value"], "port": addr[1]}

        @app.function()
        @modal.experimental.clustered(size=4)
        def too_big():
            return "placed"

        @app.function(timeout=60)
        @modal.clustered(size=2)
        def one_fails(d):
            rank = get_cluster_info().rank
            with open(os.path.join(d, f"rank{rank}.pid"), "w") as fh:
                fh.write(str(os.getpid()))
            if rank == 1:
                # Fail once rank 0 runs (so that there is a running rank to stop).
                deadline = time.monotonic() + 30
                while not os.path.exists(os.path.join(d, "rank0.pid")):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                raise ValueError("rank 1 broke")
            time.sleep(120)
            return "rank 0 finished"

        @app.function(timeout=60, retries=modal.Retries(max_retries=2, initial_delay=0.0))
        @modal.experimental.clustered(size=2)
        def flaky(d):
            rank = get_cluster_info().rank
            path = os.path.join(d, f"attempts{rank}")
            with open(path, "a") as fh:
                fh.write(f"{os.getpid()}\\n")
            with open(path) as fh:
                pids = fh.read().split()
            if rank == 1 and len(pids) == 1:
                # Once rank 0 runs too, so that the retry has a rank 0 to restart.
                deadline = time.monotonic() + 30
                while not os.path.exists(os.path.join(d, "attempts0")):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                raise RuntimeError("first attempt of rank 1 fails")
            return pids

        @app.function(timeout=3)
        @modal.experimental.clustered(size=2)
        def slow_rank():
            if get_cluster_info().rank == 1:
                time.sleep(60)
            return "rank 0 finished"

        @app.function()
        @modal.experimental.clustered(size=4)
        def shared():
            info = get_cluster_info()
            return info.node_ids

        t0 = time.monotonic()
        with app.run():
            out["sum"] = tcp_sum.remote([20, 22])
            out["t_sum"] = time.monotonic() - t0
            try:
                too_big.remote()
                out["too_big"] = ["no error", ""]
            except Exception as exc:
                out["too_big"] = [type(exc).__module__ + "." + type(exc).__name__, str(exc)]
            try:
                one_fails.remote(work)
                out["one_fails"] = ["no error", ""]
            except Exception as exc:
                out["one_fails"] = [type(exc).__name__, str(exc)]
            pids = [int(open(os.path.join(work, f"rank{r}.pid")).read()) for r in (0, 1)]
            deadline = time.monotonic() + 30
            alive = pids
            while alive and time.monotonic() < deadline:
                alive = []
                for pid in pids:
                    try:
                        os.kill(pid, 0)
                        alive.append(pid)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
            out["alive_after_failure"] = alive
            out["flaky"] = flaky.remote(work)
            try:
                slow_rank.remote()
                out["slow_rank"] = ["no error", ""]
            except Exception as exc:
                out["slow_rank"] = [type(exc).__name__, str(exc)]
            os.environ["MODAL_RAY_CLUSTER_SHARE_NODES"] = "1"
            out["shared"] = shared.remote()
        out["placement_groups"] = sorted(
            {pg["state"] for pg in ray.util.placement_group_table().values()}
        )
        print("RESULT " + json.dumps(out), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    """
)


@pytest.fixture(scope="module")
def clustered_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("clustered")
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    env.pop("MODAL_RAY_CLUSTER_SHARE_NODES", None)
    env.update(MODAL_RAY_STATE=str(tmp / "state"), RAY_AUTH_MODE="disabled")
    (tmp / "clustered_app.py").write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, "clustered_app.py", str(work)],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        cwd=tmp,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    out: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    out["stderr"] = done.stderr
    return out


def test_two_ranks_on_distinct_nodes_sum_over_tcp(clustered_run: dict[str, Any]) -> None:
    result = clustered_run["sum"]
    me, peer = result["ranks"]
    assert [me["rank"], peer["rank"]] == [0, 1]
    assert [me["cluster_rank"], peer["cluster_rank"]] == [0, 1]
    assert me["node"] != peer["node"]
    assert {me["node"], peer["node"]} <= set(clustered_run["nodes"])
    assert me["ips"] == peer["ips"]
    assert len(me["ips"]) == 2
    assert me["master"] == peer["master"] == [me["ips"][0], result["port"]]
    assert result["sum"] == 42


def test_cluster_too_small_fails_clearly(clustered_run: dict[str, Any]) -> None:
    kind, message = clustered_run["too_big"]
    assert kind == "modal.exception.InvalidError"
    assert "size=4" in message
    assert "has 3 such node(s)" in message


def test_failing_rank_fails_the_call_and_stops_the_others(clustered_run: dict[str, Any]) -> None:
    assert clustered_run["one_fails"] == ["ValueError", "rank 1 broke"]
    assert clustered_run["alive_after_failure"] == []
    assert clustered_run["placement_groups"] == ["REMOVED"]


def test_retries_restart_the_whole_group(clustered_run: dict[str, Any]) -> None:
    pids = clustered_run["flaky"]
    assert len(pids) == 2
    assert pids[0] != pids[1]  # rank 0 ran again, in a new process


def test_timeout_covers_the_group(clustered_run: dict[str, Any]) -> None:
    # Rank 0 returned at once; rank 1 ran past `timeout=3`: the call times out.
    kind, message = clustered_run["slow_rank"]
    assert kind == "FunctionTimeoutError"
    assert "timed out after 3s" in message


def test_operator_lets_ranks_share_nodes(clustered_run: dict[str, Any]) -> None:
    nodes = clustered_run["shared"]
    assert len(nodes) == 4
    assert len(set(nodes)) <= 3
    warning = "ranks share nodes because MODAL_RAY_CLUSTER_SHARE_NODES is set"
    assert warning in clustered_run["stderr"]
