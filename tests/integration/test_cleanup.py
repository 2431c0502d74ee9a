"""The per-test cleanup (`tests/support/cleanup.py`): what one test leaves behind is gone before
the next starts, while what a module-scoped app run keeps stays.

The tests run in file order: the first leaves a named Dict, a named Queue and a Serve
application of a run that is not running; the second checks they are gone and that the pool of
the module's running app was kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import ray
from ray import serve

import modal

app = modal.App("test-cleanup")

LEFT: dict[str, str] = {}


@app.cls(cpu=0.1)
class One:
    @modal.method()
    def one(self) -> int:
        return 1


@pytest.fixture(scope="module")
def running() -> Iterator[modal.App]:
    with app.run():
        yield app


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class Leftover:
    def __call__(self) -> str:
        return "still here"


def _pools_of(app_id: str) -> set[str]:
    return {n for n in serve.status().applications if app_id in n}


def test_leaves_objects_behind(running: modal.App) -> None:
    assert One().one.remote() == 1  # the running app's pool (a Serve app) exists now
    assert running.app_id is not None
    assert _pools_of(running.app_id)
    LEFT["dict"] = f"left-{uuid.uuid4().hex[:8]}"
    LEFT["queue"] = f"left-{uuid.uuid4().hex[:8]}"
    modal.Dict.from_name(LEFT["dict"], create_if_missing=True)["k"] = 1
    modal.Queue.from_name(LEFT["queue"], create_if_missing=True).put(1)
    # A pool of a run that is not running (as a crashed driver would leave it).
    LEFT["serve"] = f"modal-main-ap-{uuid.uuid4().hex[:22]}-Leftover-{uuid.uuid4().hex[:10]}"
    serve.run(Leftover.bind(), name=LEFT["serve"], route_prefix=None)  # type: ignore[attr-defined]
    assert LEFT["serve"] in serve.status().applications


def test_what_the_previous_test_left_is_gone(running: modal.App) -> None:
    assert set(LEFT) == {"dict", "queue", "serve"}, "run the whole module, in order"
    assert LEFT["serve"] not in serve.status().applications
    assert LEFT["dict"] not in {d.name for d in modal.Dict.objects.list()}
    assert LEFT["queue"] not in {q.name for q in modal.Queue.objects.list()}
    live = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
    assert f"modal-dict.{LEFT['dict']}" not in live
    assert f"modal-queue.{LEFT['queue']}" not in live
    # The module's app run is still running: its pool stayed, and it still serves calls.
    assert running.app_id is not None
    assert _pools_of(running.app_id)
    assert One().one.remote() == 1
