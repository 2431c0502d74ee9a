"""The scheduler of deployed apps on Ray: one detached named actor per environment, on the head.

The rules (fire times, claims, overlap) are engine-neutral (`modal_ray.schedules`); this module
hosts them and fires calls.

Invariants:
- The actor is named `modal-scheduler` in the environment's namespace, detached, restarted by
  Ray if it dies, and pinned to the head (like the registry): one per environment however many
  clients are connected, so each tick is fired by one process. Its state is the `FireLog` file
  (`<state root>/schedules/<environment>.sqlite` on the head), so a restarted actor resumes
  where the last one stopped; the log's compare-and-set claim keeps a tick from firing twice
  even if two schedulers ever ran at once.
- What to fire is the registry's (`active_schedules`: the current version of each deployed
  app): the scheduler re-reads it when a deploy, rollback or stop pokes it (`changed`, called
  by `registry.call` after those operations; it waits until the scheduler has re-read) and
  every `REFRESH_S` otherwise. A stopped app's schedules are forgotten, state included.
- It is created by the first deploy or rollback of a version with schedules, and again by the
  registry's actor when that starts while deployed schedules exist; after a head restart,
  `modal-ray cluster start` starts them (`environments_with_schedules`, `revive_main`), so
  schedules resume with no client connected.
- A fired call is `Function.from_name(app, tag, version=...).remote()` with no arguments, made
  from this actor; its failure is logged in the actor's log and the schedule goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray
import ray.exceptions as rex

from modal_ray import config, storage
from modal_ray.schedules import (
    FireLog,
    Scheduled,
    ScheduleTable,
    deployed_items,
    fire_log_path,
)

from . import registry, runtime

SCHEDULER_NAME = "modal-scheduler"
REFRESH_S = 10.0  # re-read the registry at least this often
POKE_TIMEOUT_S = 60.0
_HEAD = {"node:__internal_head__": 0.001}

logger = logging.getLogger("modal_ray.schedules")


_OPTIONS: dict[str, Any] = {
    "num_cpus": 0,
    "max_restarts": -1,
    "max_task_retries": -1,
    "max_concurrency": 8,  # `refresh` waits on the loop; `status` must not wait behind it
    "resources": _HEAD,
}


class _Scheduler:
    """The loop that fires the deployed schedules of one environment, on its own thread and
    event loop (the actor hosting it stays a threaded actor: Ray would run an actor with
    `async def` methods on its own event loop, where `refresh` would block it)."""

    def __init__(self, environment: str) -> None:
        self._environment = environment
        path = fire_log_path(config.state_root(), environment)
        self.log = FireLog(path, sync=storage.store_sync())
        self._functions: dict[tuple[str, tuple[str, str, int]], Any] = {}
        self._cond = threading.Condition()
        self.generation = 0  # registry reads completed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.table: ScheduleTable | None = None
        self.error: str | None = None
        threading.Thread(target=self._main, name="modal-scheduler", daemon=True).start()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        table = self.table = ScheduleTable(self._fire, self.log)
        while True:
            try:
                rows = await registry.call(self._environment, "active_schedules", ())
                await asyncio.to_thread(table.set_items, deployed_items(rows))
                self.error = None
            except Exception as exc:  # keep firing what was known; try again soon
                self.error = f"{type(exc).__name__}: {exc}"
                logger.error("The scheduler could not read the app registry: %s", self.error)
            with self._cond:
                self.generation += 1
                self._cond.notify_all()
            upcoming = table.step()
            timeout = max(0.0, min(upcoming - time.time(), REFRESH_S))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:  # a distinct class before Python 3.11
                pass
            self._wake.clear()

    async def _fire(self, item: Scheduled) -> Any:
        from modal_ray.function import Function

        app_name, tag, version = item.target
        # By key too: the key names the app by id, and a name stopped and deployed again is
        # a new app whose versions count from 1 again.
        cache_key = (item.key, item.target)
        fn = self._functions.get(cache_key)
        if fn is None:
            active = self.table.items if self.table is not None else {}
            self._functions = {k: f for k, f in self._functions.items() if k[0] in active}
            fn = Function.from_name(
                app_name, tag, version=version, environment_name=self._environment
            )
            self._functions[cache_key] = fn
        return await fn.remote.aio()

    def refresh(self) -> int:
        """Re-read the registry now; returns once it has been read (the generation read)."""
        with self._cond:
            wanted = self.generation + 1
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)
        with self._cond:
            self._cond.wait_for(lambda: self.generation >= wanted, POKE_TIMEOUT_S)
            return self.generation


@ray.remote(**_OPTIONS)
class _SchedulerHost:
    """Hosts the scheduler of one environment (see the module docstring)."""

    def __init__(self, environment: str) -> None:
        self._scheduler = _Scheduler(environment)

    def refresh(self) -> int:
        return self._scheduler.refresh()

    def status(self) -> dict[str, Any]:
        """What is scheduled, the recent ticks per schedule key, and this process."""
        s = self._scheduler
        table = s.table
        items = list(table.items.values()) if table is not None else []
        return {
            "pid": os.getpid(),
            "generation": s.generation,
            "error": s.error,
            "schedules": [
                {"key": i.key, "label": i.label, "anchor": i.anchor, "target": list(i.target)}
                for i in items
            ],
            "fired": s.log.history(),
            "in_flight": table.in_flight() if table is not None else 0,
            "skipped": table.skipped if table is not None else 0,
        }


def _existing(environment: str) -> Any | None:
    runtime.connect(environment)
    try:
        return ray.get_actor(SCHEDULER_NAME, namespace=config.namespace_for(environment))
    except ValueError:
        return None


def ensure(environment: str) -> Any:
    """The environment's scheduler, created if it does not run."""
    runtime.connect(environment)
    return _SchedulerHost.options(  # type: ignore[attr-defined]
        name=SCHEDULER_NAME,
        namespace=config.namespace_for(environment),
        lifetime="detached",
        get_if_exists=True,
    ).remote(environment)


def changed(environment: str, method: str, result: Any) -> None:
    """After a registry `deploy`, `rollback` or `stop`: make the scheduler re-read the
    registry (created when the new version has schedules) and wait until it has."""
    has_schedules = isinstance(result, dict) and bool(result.get("schedules"))
    handle = ensure(environment) if has_schedules else _existing(environment)
    if handle is None:
        return
    try:
        ray.get(handle.refresh.remote(), timeout=POKE_TIMEOUT_S)
    except (rex.RayError, TimeoutError) as exc:
        from modal_ray.warn import warn_once

        warn_once(
            "scheduler-poke",
            f"The schedules' scheduler did not confirm the {method} ({exc}); it re-reads the"
            f" registry every {REFRESH_S:g} s, so schedules change within that time.",
        )


def revive(environment: str, active: list[Any]) -> None:
    """From the registry's actor as it starts: bring the scheduler back if schedules exist
    (after a head restart nothing else would)."""
    if active:
        ensure(environment)


def environments_with_schedules(root: Path) -> list[str]:
    """The environments whose registry (in the state store `root`, read in this process) has
    deployed schedules: after a head restart, `modal-ray cluster start` revives their
    schedulers with `revive_main` so that nothing waits for a client to come."""
    from modal_ray.storage.registry_server import RegistryServer

    found = []
    for path in sorted((root / "registry").glob("*.sqlite")):
        server = RegistryServer(path, environment=path.stem)
        if server.call("active_schedules", True, ()):
            found.append(path.stem)
    return found


def revive_main(environments: list[str]) -> None:
    """Start the registry (which starts the scheduler) of each of `environments`, and wait
    until each scheduler has read its registry (`python -m modal_ray.backends.ray.scheduler`
    in a process connected to the head)."""
    for environment in environments:
        registry.call_sync(environment, "active_schedules", ())
        handle = ensure(environment)
        ray.get(handle.refresh.remote(), timeout=POKE_TIMEOUT_S)


def status(environment: str) -> dict[str, Any] | None:
    """The scheduler's `status()`, or None if it does not run."""
    handle = _existing(environment)
    if handle is None:
        return None
    result: dict[str, Any] = ray.get(handle.status.remote(), timeout=POKE_TIMEOUT_S)
    return result


def kill(environment: str) -> bool:
    """Kill the scheduler's process (Ray restarts it: for tests of that)."""
    handle = _existing(environment)
    if handle is None:
        return False
    ray.kill(handle, no_restart=False)
    return True


__all__ = [
    "SCHEDULER_NAME",
    "changed",
    "ensure",
    "environments_with_schedules",
    "kill",
    "revive",
    "revive_main",
    "status",
]

if __name__ == "__main__":
    # Through the module's own name: the actor class must be this module's, not `__main__`'s.
    from modal_ray.backends.ray import scheduler as _scheduler

    _scheduler.revive_main(sys.argv[1:])
