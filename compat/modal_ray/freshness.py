"""Handles looked up by name follow redeploys, as Modal resolves an object id to its latest version.

A Function or Cls looked up by name or id (`records.DeferredLookup`) is filled in from the record
of the version current at its lookup. It keeps a `Watch`: the app id and version it was filled
from, and the lookup that found them. Before a call, at most once per `CHECK_INTERVAL_S`, the
watch reads the app's current version where the registry publishes it
(`Backend.deployed_version`: one read of the engine's key-value store, no registry round trip)
and, when it differs (a redeploy, a rollback, a stop), runs the lookup again and rebuilds the
object in place (`follow`). So a new call reaches the current version at most
`CHECK_INTERVAL_S` after it was published, while calls in flight finish on the version they
started on (they hold their own engine handles).

A call that finds its container pool removed (`PoolGoneError`, raised by the backend) follows at
once, whatever the interval, and is retried once on the current version: a class method never
fails because its app was redeployed; on a stopped app the lookup's `NotFoundError` is raised.

Invariants:
- a handle pinned to a version (`from_name(..., version=n)`) has no watch: it never moves;
- the lookup runs in the calling thread, and `note` tells the watch (through `observing`, a
  per-thread collector) which app id and version the registry answered with, so the version a
  watch holds is the one its record came from, even when a deploy commits during the lookup;
- rebuilding keeps the object's identity and locks (`_KEEP`): instances (`Obj`) and method
  handles made from a class before the redeploy see the new record through it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .exception import NotFoundError

CHECK_INTERVAL_S = 1.0  # how stale a handle looked up by name may be (see docs/design.md)

# Attributes an object keeps when rebuilt from a newer record: its locks (a caller may hold
# one), its watch, the calls it spawned.
_KEEP = frozenset({"_lock", "_compile_lock", "_watch", "_spawned"})


class PoolGoneError(NotFoundError):
    """A call's container pool no longer exists (its app was redeployed or stopped)."""


@dataclass(frozen=True, slots=True)
class Found:
    """What one registry lookup answered with."""

    environment: str
    app_id: str
    version: int
    pinned: bool  # the caller asked for this version


_observed = threading.local()


@contextmanager
def observing() -> Iterator[list[Found]]:
    """Collect what the lookups run in this thread inside the block answered with."""
    outer = getattr(_observed, "found", None)
    found: list[Found] = []
    _observed.found = found
    try:
        yield found
    finally:
        _observed.found = outer


def note(environment: str, app_id: str, version: int, pinned: bool) -> None:
    """A lookup's answer (called by `deployment.lookup` / `lookup_id`)."""
    found = getattr(_observed, "found", None)
    if found is not None:
        found.append(Found(environment, str(app_id), int(version), pinned))


def _published(environment: str, app_id: str) -> int | None:
    from modal_ray.backends import get_backend

    return get_backend().deployed_version(environment, app_id)


class Watch:
    """Which version of its app a looked-up object is, and how to look it up again.

    `read(environment, app_id)` gives the published version (None: the app is stopped, or not
    published); `clock` is monotonic seconds. Both are parameters for tests of the logic."""

    def __init__(
        self,
        lookup: Callable[[], tuple[Any, str]],
        found: Found,
        *,
        read: Callable[[str, str], int | None] = _published,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lookup = lookup
        self.found = found
        self._read = read
        self._clock = clock
        self.interval = CHECK_INTERVAL_S
        self._checked = clock()  # when the version was last known to be current
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Where it is unpickled (e.g. a worker), it checks before its first call.
        return {"lookup": self.lookup, "found": self.found}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["lookup"], state["found"])  # type: ignore[misc]

    def due(self) -> bool:
        """Is the version to be checked before the next call?"""
        return self._clock() >= self._checked + self.interval

    def check(self, obj: Any, gone: BaseException | None = None) -> None:
        """Rebuild `obj` from the current version if its app's version changed (checked at most
        once per interval), or at once after `gone` (its pool was removed)."""
        if gone is None and not self.due():
            return
        with self._lock:
            if gone is None:
                if not self.due():
                    return  # another thread checked meanwhile
                found = self.found
                if self._read(found.environment, found.app_id) == found.version:
                    self._checked = self._clock()
                    return
            record, object_id, found_now = run_lookup(self.lookup)
            rebuild(obj, record, object_id)
            if found_now is not None:
                self.found = found_now
            self._checked = self._clock()

    def derived(self, lookup: Callable[[], tuple[Any, str]]) -> Watch:
        """A watch of the same version for an object whose lookup is `lookup` (a variant)."""
        watch = Watch(lookup, self.found, read=self._read, clock=self._clock)
        watch.interval, watch._checked = self.interval, self._checked
        return watch


def run_lookup(lookup: Callable[[], tuple[Any, str]]) -> tuple[Any, str, Found | None]:
    """Run `lookup`; with what the registry answered (None if pinned or not a registry
    lookup)."""
    with observing() as found:
        record, object_id = lookup()
    last = found[-1] if found else None
    return record, object_id, None if last is None or last.pinned else last


def watched(lookup: Callable[[], tuple[Any, str]]) -> tuple[Any, str, Watch | None]:
    """Run `lookup` for a new handle: its record, object id, and its watch (None when the
    lookup is pinned to a version)."""
    record, object_id, found = run_lookup(lookup)
    return record, object_id, None if found is None else Watch(lookup, found)


def rebuild(obj: Any, record: Any, object_id: str) -> None:
    """Fill `obj` in place from a newer `record` (`Function._from_record` / `Cls._from_record`
    of its class), keeping its identity, locks and watch."""
    fresh = type(obj)._from_record(record)
    obj.__dict__.update({k: v for k, v in fresh.__dict__.items() if k not in _KEEP})
    obj.__dict__["_object_id"] = object_id


def follow(obj: Any, gone: BaseException | None = None) -> None:
    """Before a call on `obj` (a Function or Cls): move it to its app's current version if it
    is a handle looked up by name and that changed. After `gone` (its pool was removed), move at
    once, or raise `gone` if `obj` cannot move (not looked up by name, or pinned)."""
    watch: Watch | None = getattr(obj, "_watch", None)
    if watch is not None:
        watch.check(obj, gone)
    elif gone is not None:
        raise gone


__all__ = [
    "CHECK_INTERVAL_S",
    "Found",
    "PoolGoneError",
    "Watch",
    "follow",
    "note",
    "observing",
    "rebuild",
    "run_lookup",
    "watched",
]
