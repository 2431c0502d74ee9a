"""Container pools scale up under load, and back down to `min_containers` after
`scaledown_window`."""

from __future__ import annotations

import os
import time

import pytest
from ray import serve

import modal

app = modal.App("test-class-scaling")


@app.cls(cpu=0.1, min_containers=1, max_containers=3, scaledown_window=2)
class Scaled:
    @modal.method()
    def work(self, seconds: float) -> int:
        time.sleep(seconds)
        return os.getpid()


def _running_replicas(fragment: str) -> int:
    for name, status in serve.status().applications.items():
        if fragment in name:
            return sum(d.replica_states.get("RUNNING", 0) for d in status.deployments.values())
    return 0


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with app.run():
        yield app


def test_scales_up_under_load_and_down_after_scaledown_window(running: modal.App) -> None:
    s = Scaled()
    assert s.work.remote(0)  # the pool exists with its warm floor
    assert _running_replicas("Scaled") == 1
    peak = 0
    calls = [s.work.spawn(2.0) for _ in range(16)]
    deadline = time.monotonic() + 90
    while not all(fc._task.done() for fc in calls) and time.monotonic() < deadline:
        peak = max(peak, _running_replicas("Scaled"))
        time.sleep(0.25)
    pids = {fc.get(timeout=120) for fc in calls}
    assert peak > 1
    assert len(pids) > 1
    assert peak <= 3  # never beyond max_containers
    # Idle now: after scaledown_window the pool returns to min_containers, not below.
    deadline = time.monotonic() + 90
    while _running_replicas("Scaled") > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _running_replicas("Scaled") == 1


@app.cls(cpu=0.1, max_containers=2, scaledown_window=2)
class Adjustable:
    @modal.method()
    def ping(self) -> int:
        return os.getpid()


def test_update_autoscaler_changes_the_warm_floor(running: modal.App) -> None:
    a = Adjustable()
    a.ping.remote()
    a.update_autoscaler(min_containers=2)
    deadline = time.monotonic() + 60
    while _running_replicas("Adjustable") < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _running_replicas("Adjustable") == 2
