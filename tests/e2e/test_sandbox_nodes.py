"""Sandboxes over several nodes (a `ray.cluster_utils.Cluster` in a subprocess): placed by their
resources, one supervisor per node, listed and reached across nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=4)
    try:
        ray.init(address=cluster.address, namespace="modal-main", logging_level="ERROR")
        import modal

        small = modal.Sandbox.create(timeout=120)
        big = modal.Sandbox.create(cpu=3, timeout=120)  # only the worker node has 3 CPUs free
        out = {
            "head": ray.get_runtime_context().get_node_id(),
            "worker": worker.node_id,
            "small": small.object_id,
            "big": big.object_id,
            "echo": [sb.exec("echo", sb.object_id).stdout.read().strip() for sb in (small, big)],
            "listed": sorted(sb.object_id for sb in modal.Sandbox.list()),
        }
        for sb in (small, big):
            sb.terminate()
        print("RESULT " + json.dumps(out))
    finally:
        ray.shutdown()
        cluster.shutdown()
    """
)


def test_sandboxes_are_placed_by_resources_over_nodes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    env.update(MODAL_RAY_STATE=str(tmp_path / "state"), RAY_AUTH_MODE="disabled")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    prefix = len("sb-")
    assert out["big"][prefix : prefix + 16] == out["worker"][:16]  # placed where 3 CPUs were
    assert out["small"][prefix : prefix + 16] == out["head"][:16]  # no request: caller's node
    assert out["echo"] == [out["small"], out["big"]]
    assert out["listed"] == sorted([out["small"], out["big"]])
