"""Spawned calls findable by id from other processes, on a Ray that ends with its process.

On a long-lived cluster spawned calls are kept by the call keeper (`call_keeper`), and outlive
their spawner. Where the Ray was started by the spawning process itself (the embedded Ray, a
user's own local `ray.init()`), calls stay in-process and this tracker only lets other
processes of that Ray find them by id while the spawner lives:

One detached async actor per environment namespace keeps `call id -> result ObjectRef` for every
`.spawn` of a task-backed function (the ref travels inside a list, so the tracker borrows it and
keeps the result alive). Another process of the same cluster looks the id up and waits on the
ref. Ray's ownership still applies: a result is guaranteed while the process that spawned the
call lives; once Ray reports it lost, `get` raises OutputExpiredError. Entries are kept 7 days
(Modal's retention) and dropped in FIFO order beyond 100,000 calls. Calls to container pools
(Serve) are not tracked.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import ray

from modal_ray import config

TRACKER_NAME = "modal-ray-calls"
RETENTION_S = 7 * 24 * 3600
MAX_CALLS = 100_000


@ray.remote(num_cpus=0, max_concurrency=1000)  # type: ignore[call-overload]
class _CallTracker:
    def __init__(self) -> None:
        self._calls: OrderedDict[str, tuple[float, list[Any]]] = OrderedDict()

    async def register(self, call_id: str, box: list[Any]) -> None:
        self._calls[call_id] = (time.time(), box)
        self._calls.move_to_end(call_id)
        while len(self._calls) > MAX_CALLS:
            self._calls.popitem(last=False)

    async def lookup(self, call_id: str) -> list[Any] | None:
        entry = self._calls.get(call_id)
        if entry is None:
            return None
        registered, box = entry
        if time.time() - registered > RETENTION_S:
            self._calls.pop(call_id, None)
            return None
        return box


_lock = threading.Lock()
_handles: dict[str, Any] = {}


def _tracker(environment: str) -> Any:
    handle = _handles.get(environment)
    if handle is None:
        with _lock:
            handle = _handles.get(environment)
            if handle is None:
                handle = _CallTracker.options(  # type: ignore[attr-defined]
                    name=TRACKER_NAME,
                    namespace=config.namespace_for(environment),
                    lifetime="detached",
                    get_if_exists=True,
                ).remote()
                _handles[environment] = handle
    return handle


def register(environment: str, call_id: str, ref: Any) -> None:
    """Record a spawned call's current result ref (fire and forget)."""
    _tracker(environment).register.remote(call_id, [ref])


def lookup(environment: str, call_id: str) -> Any | None:
    """The result ref of a call spawned by any process of the cluster, or None."""
    box = ray.get(_tracker(environment).lookup.remote(call_id))
    return box[0] if box else None
