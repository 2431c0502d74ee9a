"""Deployed apps on a two-node cluster (issue 10): a `ray.cluster_utils.Cluster` with a head and a
worker node on this machine; only the worker node has a (fake) T4 GPU, so `gpu="T4"` puts a
function and a class there.

`modal deploy` runs and exits; a second process calls the function and the class method by name
(both run on the worker node, and their results are right) and a function on the worker node
that looks both up by name itself, then runs `modal app stop` and waits until no actor of the
app is left. The registry lives in the head's state store (the head node's `MODAL_RAY_STATE`),
not in the clients' or the worker node's. One cluster for the module, stopped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MODAL, modal_cli

APP = textwrap.dedent(
    """
    import modal

    app = modal.App("multinode-demo")


    def node_id():
        import ray

        return ray.get_runtime_context().get_node_id()


    @app.function(gpu="T4")
    def square(x):
        return x * x, node_id()


    @app.cls(gpu="T4")
    class Adder:
        base: int = modal.parameter(default=0)

        @modal.method()
        def add(self, x):
            return self.base + x, node_id()


    @app.function(gpu="T4")
    def via_name(x):
        # Lookups from inside a container on the worker node (whose own state store is empty).
        square = modal.Function.from_name("multinode-demo", "square")
        adder = modal.Cls.from_name("multinode-demo", "Adder")(base=100)
        return square.remote(x)[0], adder.add.remote(x)[0], node_id()
    """
)

CALLER = textwrap.dedent(
    """
    import json, subprocess, sys, time
    import modal
    import ray
    from ray.util.state import list_actors

    out = {}
    out["square"] = modal.Function.from_name("multinode-demo", "square").remote(7)
    Adder = modal.Cls.from_name("multinode-demo", "Adder")
    out["add"] = Adder(base=40).add.remote(2)
    out["via_name"] = modal.Function.from_name("multinode-demo", "via_name").remote(5)
    app_id = modal.App.lookup("multinode-demo").app_id

    def actors_of_app():
        return sorted(
            a.name
            for a in list_actors(filters=[("state", "!=", "DEAD")], limit=10000)
            if a.name and app_id in a.name
        )

    out["actors_before"] = actors_of_app()
    stop = subprocess.run(
        [sys.argv[1], "app", "stop", "multinode-demo"], capture_output=True, text=True, timeout=120
    )
    out["stop"] = [stop.returncode, stop.stderr[-2000:]]
    deadline = time.monotonic() + 90
    while (left := actors_of_app()) and time.monotonic() < deadline:
        time.sleep(0.25)
    out["actors_after"] = left
    print("RESULT " + json.dumps(out), flush=True)
    """
)


HOLDER = textwrap.dedent(
    """
    import json, sys
    from ray.cluster_utils import Cluster

    tmp = sys.argv[1]
    common = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": 2,
            "env_vars": {**common, "MODAL_RAY_STATE": tmp + "/head-state"},
        },
    )
    try:
        worker = cluster.add_node(
            num_cpus=3,
            num_gpus=3,
            resources={"accelerator_type:T4": 3},
            env_vars={**common, "MODAL_RAY_STATE": tmp + "/worker-state"},
        )
        cluster.wait_for_nodes()
        ready = {
            "address": cluster.address,
            "head": cluster.head_node.node_id,
            "worker": worker.node_id,
        }
        print("READY " + json.dumps(ready), flush=True)
        sys.stdin.read()  # until the test closes it
    finally:
        cluster.shutdown()
    """
)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A head (2 CPUs, its own state store) and a worker node (3 CPUs, three fake T4s, another
    state store, as on another machine), held by a subprocess (the pytest process may hold an
    integration Ray, and stopping a `Cluster` resets process-wide Ray state)."""
    tmp = tmp_path_factory.mktemp("multinode")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    with (tmp / "holder.log").open("w") as log:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(tmp)],
            env=env,
            cwd=tmp,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert holder.stdout is not None
    try:
        line = holder.stdout.readline()
        assert line.startswith("READY "), (tmp / "holder.log").read_text()[-3000:]
        yield {**json.loads(line.removeprefix("READY ")), "tmp": tmp}
    finally:
        try:
            holder.communicate(timeout=120)  # closes its stdin: it stops the cluster
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.communicate()
        assert holder.returncode == 0, (tmp / "holder.log").read_text()[-3000:]


def test_deploy_then_call_by_name_on_the_worker_node_and_stop(two_nodes: dict[str, Any]) -> None:
    tmp: Path = two_nodes["tmp"]
    (tmp / "multinode_app.py").write_text(APP)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS", "MODAL_TRACEBACK", "MODAL_ENVIRONMENT")
    }
    env.update(
        MODAL_RAY_ADDRESS=two_nodes["address"],
        MODAL_RAY_STATE=str(tmp / "client-state"),
        RAY_AUTH_MODE="disabled",
        NO_COLOR="1",
        PYTHONUNBUFFERED="1",
    )
    deployed = modal_cli("deploy", "multinode_app.py", env=env, cwd=tmp)
    assert deployed.returncode == 0, deployed.stderr[-3000:]

    # The deploying process has exited; another process calls by name, then stops the app.
    caller = subprocess.run(
        [sys.executable, "-c", CALLER, str(MODAL)],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    lines = [x for x in caller.stdout.splitlines() if x.startswith("RESULT ")]
    assert caller.returncode == 0, caller.stderr[-4000:]
    assert lines, caller.stdout[-2000:] + caller.stderr[-4000:]
    out = json.loads(lines[-1][len("RESULT ") :])

    worker = two_nodes["worker"]
    assert out["square"] == [49, worker]
    assert out["add"] == [42, worker]
    assert out["via_name"] == [25, 105, worker]
    assert out["actors_before"]  # the class's container pool
    assert out["stop"][0] == 0, out["stop"][1]
    assert out["actors_after"] == []

    # The registry is the head's: its state store has it; the clients' and the worker's do not.
    assert (tmp / "head-state" / "registry" / "main.sqlite").exists()
    assert not (tmp / "client-state" / "registry").exists()
    assert not (tmp / "worker-state" / "registry").exists()
