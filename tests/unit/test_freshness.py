"""A handle looked up by name follows its app's redeploys (`modal_ray.freshness`): the version is
read at most once per interval, a changed (or removed) version runs the lookup again and rebuilds
the handle in place, a removed pool follows at once, and a handle pinned to a version never
moves. The clock and the published versions are plain values here; the e2e test
(tests/e2e/test_deploy.py) runs the same logic against a cluster."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import pytest

from modal.exception import NotFoundError
from modal_ray import freshness
from modal_ray.freshness import CHECK_INTERVAL_S, PoolGoneError, Watch


class Handle:
    """Stands in for a Function / Cls: rebuilt from a record by `_from_record`."""

    def __init__(self, record: str) -> None:
        self.record = record
        self._lock = threading.Lock()
        self._watch: Watch | None = None

    @staticmethod
    def _from_record(record: str) -> Handle:
        return Handle(record)


class Registry:
    """The deployed app's versions as the registry answers lookups (`note`s what it answered)."""

    def __init__(self) -> None:
        self.version: int | None = 1
        self.lookups = 0

    def lookup(self) -> tuple[Any, str]:
        self.lookups += 1
        if self.version is None:
            raise NotFoundError("App 'demo' not found in environment 'main'")
        freshness.note("main", "ap-1", self.version, pinned=False)
        return f"record v{self.version}", "fu-1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup() -> tuple[Handle, Registry, Clock, list[int | None]]:
    registry, clock = Registry(), Clock()
    reads: list[int | None] = []

    def read(environment: str, app_id: str) -> int | None:
        assert (environment, app_id) == ("main", "ap-1")
        reads.append(registry.version)
        return registry.version

    record, _, found = freshness.run_lookup(registry.lookup)
    assert found is not None
    handle = Handle(record)
    handle._watch = Watch(registry.lookup, found, read=read, clock=clock)
    return handle, registry, clock, reads


def test_version_read_at_most_once_per_interval(setup: Any) -> None:
    handle, registry, clock, reads = setup
    freshness.follow(handle)
    assert reads == []  # just looked up
    clock.now += CHECK_INTERVAL_S
    freshness.follow(handle)
    freshness.follow(handle)
    assert reads == [1]
    assert handle.record == "record v1"
    assert registry.lookups == 1  # unchanged: no lookup


def test_changed_version_rebuilds_in_place(setup: Any) -> None:
    handle, registry, clock, reads = setup
    lock, watch = handle._lock, handle._watch
    registry.version = 2
    freshness.follow(handle)
    assert handle.record == "record v1"  # not due yet: the staleness bound
    clock.now += CHECK_INTERVAL_S
    freshness.follow(handle)
    assert handle.record == "record v2"
    assert handle._lock is lock  # identity, locks and watch are kept
    assert handle._watch is watch
    assert handle._object_id == "fu-1"
    assert watch.found.version == 2
    clock.now += CHECK_INTERVAL_S
    freshness.follow(handle)
    assert registry.lookups == 2  # v2 is current now: read, no lookup
    assert reads == [2, 2]


def test_stopped_app_raises_not_found_on_each_call(setup: Any) -> None:
    handle, registry, clock, _ = setup
    registry.version = None  # `modal app stop`: the version is unpublished
    clock.now += CHECK_INTERVAL_S
    for _ in range(2):
        with pytest.raises(NotFoundError, match="App 'demo' not found"):
            freshness.follow(handle)
    assert handle.record == "record v1"


def test_pool_gone_follows_at_once(setup: Any) -> None:
    handle, registry, _, reads = setup
    registry.version = 3
    freshness.follow(handle, PoolGoneError("gone"))  # not due, yet it looks up
    assert handle.record == "record v3"
    assert reads == []


def test_without_a_watch_pool_gone_is_raised() -> None:
    handle = Handle("record v1")
    freshness.follow(handle)  # a handle of this process's own app: nothing to follow
    with pytest.raises(PoolGoneError, match="gone"):
        freshness.follow(handle, PoolGoneError("gone"))


def test_pinned_lookup_has_no_watch() -> None:
    def pinned() -> tuple[Any, str]:
        freshness.note("main", "ap-1", 1, pinned=True)
        return "record v1", "fu-1"

    assert freshness.watched(pinned)[2] is None
    # A lookup that is not the registry's (nothing noted) has none either.
    assert freshness.watched(lambda: ("record", "fu-1"))[2] is None


def test_watch_pickles_as_its_lookup(setup: Any) -> None:
    handle = setup[0]
    found = handle._watch.found
    again = pickle.loads(pickle.dumps(Watch(_lookup, found)))
    assert again.found == found
    assert again.lookup is _lookup
    assert not again.due()  # a fresh interval where it lands


def _lookup() -> tuple[Any, str]:
    return "record", "fu-1"


def test_a_variant_follows_from_where_its_class_is(setup: Any) -> None:
    handle, registry, clock, _ = setup
    clock.now += CHECK_INTERVAL_S / 2
    variant = Handle("variant of record v1")
    variant._watch = handle._watch.derived(registry.lookup)
    registry.version = 2
    clock.now += CHECK_INTERVAL_S / 2  # due for both: the variant's clock is its class's
    freshness.follow(variant)
    assert variant.record == "record v2"
    assert handle.record == "record v1"  # until its own call
