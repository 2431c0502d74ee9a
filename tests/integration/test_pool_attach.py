"""A process that reaches an existing container pool attaches to it instead of redeploying it.

A worker's nested call, and `update_autoscaler` (from the owner or from a worker), must leave the
warm container in place: `@modal.enter` runs once per container, so its count stays 1.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from ray import serve

import modal

LOGS = Path(os.environ["MODAL_RAY_STATE"]) / "test-pool-attach"
LOGS.mkdir(parents=True, exist_ok=True)

app = modal.App("test-pool-attach")


@app.cls(cpu=0.1, scaledown_window=120)
class Warm:
    key: str = modal.parameter()

    @modal.enter()
    def up(self) -> None:
        self.token = uuid.uuid4().hex
        with (LOGS / f"{self.key}.enter").open("a") as f:
            f.write(self.token + "\n")

    @modal.method()
    def token_of(self) -> str:
        return self.token


@app.function(cpu=0.1)
def call_from_worker(key: str) -> str:
    return Warm(key=key).token_of.remote()


@app.function(cpu=0.1)
def rescale_from_worker(key: str) -> str:
    obj = Warm(key=key)
    before = obj.token_of.remote()
    obj.update_autoscaler(max_containers=1)  # a change that cannot scale out
    after = obj.token_of.remote()
    assert after == before
    return after


def _enters(key: str) -> list[str]:
    path = LOGS / f"{key}.enter"
    return path.read_text().split() if path.exists() else []


def _pools() -> set[str]:
    return {n for n in serve.status().applications if "-Warm-" in n}


def _snapshot(name: str) -> tuple[str, str, dict[str, int]] | None:
    status = serve.status().applications.get(name)
    if status is None:
        return None
    deployments = list(status.deployments.values())
    states = {str(k): int(v) for d in deployments for k, v in d.replica_states.items()}
    return str(status.status), str(deployments[0].status), states


def _settle(name: str) -> tuple[str, str, dict[str, int]] | None:
    """Wait until the pool's state has not changed for 2 s (a rollout, if any, is over)."""
    deadline = time.monotonic() + 90
    last, stable_since = _snapshot(name), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _snapshot(name)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif (
            now is not None
            and time.monotonic() - stable_since >= 2.0
            and set(now[2]) == {"RUNNING"}
        ):
            return now
    return last


def _warm(obj: Warm) -> tuple[str, str]:
    """Call a new parameter set once; its first token and the name of its pool."""
    before = _pools()
    first = obj.token_of.remote()
    (name,) = _pools() - before
    return first, name


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with app.run():
        yield app


def test_a_worker_call_attaches_to_the_warm_pool(running: modal.App) -> None:
    key = f"w{uuid.uuid4().hex[:8]}"
    first, name = _warm(Warm(key=key))
    assert call_from_worker.remote(key) == first
    _settle(name)
    assert Warm(key=key).token_of.remote() == first
    assert _enters(key) == [first]


def test_update_autoscaler_by_the_owner_keeps_the_container(running: modal.App) -> None:
    key = f"o{uuid.uuid4().hex[:8]}"
    obj = Warm(key=key)
    first, name = _warm(obj)
    obj.update_autoscaler(max_containers=1, scaledown_window=90)
    state = _settle(name)
    assert obj.token_of.remote() == first
    assert _enters(key) == [first]
    assert state is not None
    assert state[2] == {"RUNNING": 1}


def test_update_autoscaler_from_a_worker_keeps_the_container(running: modal.App) -> None:
    key = f"u{uuid.uuid4().hex[:8]}"
    first, name = _warm(Warm(key=key))
    assert rescale_from_worker.remote(key) == first
    _settle(name)
    assert Warm(key=key).token_of.remote() == first
    assert _enters(key) == [first]
