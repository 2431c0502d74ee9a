"""Idle containers do not block new ones, explicit `cpu=` stays exact, and a container that
cannot be placed says what it waits for.

A separate embedded Ray with 2 CPUs (as on a 2-core laptop): a container without `cpu=`
requests Modal's default share (0.125 core), so three parameter sets of a class hold a container
each at the same time; a class with `cpu=1.5` gets exactly 1.5, and its second parameter set waits
(visibly) until the first one's container scales down.
"""

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
    import modal
    from ray import serve

    app = modal.App("placement")

    def assigned_cpus():
        import ray
        return ray.get_runtime_context().get_assigned_resources().get("CPU")

    @app.cls()
    class Small:
        name: str = modal.parameter()

        @modal.method()
        def cpus(self):
            return assigned_cpus()

    @app.cls(cpu=1.5, scaledown_window=8)
    class Big:
        n: int = modal.parameter()

        @modal.method()
        def cpus(self):
            return assigned_cpus()

    def running(fragment):
        return sorted(
            sum(d.replica_states.get("RUNNING", 0) for d in s.deployments.values())
            for name, s in serve.status().applications.items()
            if fragment in name
        )

    with app.run():
        small = [Small(name=f"n{i}").cpus.remote() for i in range(3)]
        small_running = running("-Small-")
        big = [Big(n=0).cpus.remote(), Big(n=1).cpus.remote()]
    print("RESULT", json.dumps({"small": small, "running": small_running, "big": big}))
    """
)


def test_idle_containers_do_not_block_new_ones(tmp_path: Path) -> None:
    (tmp_path / "placement.py").write_text(SCRIPT)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS", "MODAL_RAY_NUM_CPUS")
    }
    env.update(
        MODAL_RAY_STATE=str(tmp_path / "state"),
        MODAL_RAY_NUM_CPUS="2",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    result = subprocess.run(
        [sys.executable, "placement.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    # Modal's default request: many idle containers fit on two cores, all alive at once.
    assert out["small"] == [0.125, 0.125, 0.125]
    assert out["running"] == [1, 1, 1]
    # An explicit request is exact; the one that cannot be placed says what it waits for.
    assert out["big"] == [1.5, 1.5]
    assert "Big(n=1) is waiting for 1.5 CPU" in result.stderr, result.stderr[-3000:]
