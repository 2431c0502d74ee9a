"""The run context: what a Function or Cls needs to know about the app run it belongs to.

`App.run_context()` builds one (frozen) from the app's state; `Cls`, `Function` and
`FunctionOptions` receive it and never read the `App` itself, as Modal's client passes its load
context down. It holds the environment, the app id (which names the run's container pools, see
`naming`), the app's defaults (image, secrets, volumes, include_source) and the `RunTasks` that
own what the run started in the background (spawned calls, background maps, prepared functions),
so that stopping the app finds them.

Inside a worker there is no running app: the environment comes from the settings and the app id
from `config.APP_ID_ENV`, which the driver sets in its workers' environment (`worker_context`).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import config


class OwnedCall(Protocol):
    """A spawned call a run owns (`FunctionCall`)."""

    def _owned_task(self) -> asyncio.Task[Any]: ...

    async def _cancel_owned(self) -> None: ...


class Prepared(Protocol):
    """Something prepared for a run that must prepare again in the next one (`Function`)."""

    def _forget(self) -> None: ...


class RunTasks:
    """The task group of one app run: spawned calls (held weakly, as the caller's handle owns
    them), background tasks (held strongly until the run ends) and prepared functions."""

    def __init__(self) -> None:
        # A detached run (`modal run --detach`): its calls kept by the cluster outlive it.
        self.detached = False
        self._calls: weakref.WeakSet[Any] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prepared: weakref.WeakSet[Any] = weakref.WeakSet()
        self._schedules: asyncio.Task[Any] | None = None  # fires the run's schedules

    def add(self, item: OwnedCall | asyncio.Task[Any]) -> None:
        if isinstance(item, asyncio.Task):
            self._tasks.add(item)
        else:
            self._calls.add(item)

    def add_prepared(self, item: Prepared) -> None:
        self._prepared.add(item)

    @property
    def num_prepared(self) -> int:
        return len(self._prepared)

    async def wait_all(self) -> None:
        """Let everything finish (a detached run must not leave before its work is done)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        pending = [c._owned_task() for c in list(self._calls) if not c._owned_task().done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def cancel_all(self) -> None:
        """Cancel background tasks and every spawned call still running."""
        for task in list(self._tasks):
            task.cancel()
        for call in list(self._calls):
            if not call._owned_task().done():
                await call._cancel_owned()

    def hold_schedules(self, task: asyncio.Task[Any]) -> None:
        """The task firing this run's schedules (`schedules.start_run_schedules`)."""
        self._schedules = task

    async def stop_schedules(self) -> None:
        """Stop firing schedules (first, so that a detached run's `wait_all` can end); the
        calls they started are cancelled."""
        task, self._schedules = self._schedules, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def forget_prepared(self) -> None:
        """The run ended: prepared functions prepare again in the next run."""
        for item in list(self._prepared):
            item._forget()


@dataclass(frozen=True)
class RunContext:
    """An app run as the functions and classes of the app see it."""

    environment: str
    app_id: str | None
    app_name: str | None = None
    running: bool = False
    image: Any = None
    secrets: tuple[Any, ...] = ()
    volumes: Mapping[Any, Any] = field(default_factory=dict)
    include_source: bool = True
    tasks: RunTasks | None = None


def app_id_from_env() -> str | None:
    """The app id a worker's driver handed down (`config.APP_ID_ENV`), if any."""
    return os.environ.get(config.APP_ID_ENV) or None


def worker_context() -> RunContext:
    """The context of code that belongs to no running app here (a worker, or no app at all)."""
    return RunContext(environment=config.environment_name(), app_id=app_id_from_env())
