"""The replica runtime: what one engine replica of a container pool runs.

A `Replica` is one Modal container (`modal_ray.runtime.container.Container`) seen from the
engine: the backend makes one per replica, calls `start()` before the replica takes traffic and
`stop()` when the engine retires it, and forwards every call as plain values (method name,
arguments, the call id). Web endpoints will wrap the same object in an ASGI application, so the
container's lifecycle and its `@modal.concurrent` / `@modal.batched` semantics are written once.

Invariants:
- engine-neutral: nothing here imports Ray, and the object is built inside the replica process
  from a `ContainerSpec` that the backend pickled once per deployment;
- `start()` never raises for a user error: a failing `@modal.enter` hook is kept and returned to
  every input as a `RemoteFailure` (no restart loop);
- `stop()` runs `@modal.exit` hooks at most once, however often the engine calls it;
- each call's outcome is the user's value or a `RemoteFailure`, never a raised user exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from modal_ray.errors import RemoteFailure
from modal_ray.runtime.container import Container, ContainerSpec


class Replica:
    """One container of a pool, as an engine replica serves it."""

    __slots__ = ("_container",)

    def __init__(self, spec: ContainerSpec) -> None:
        self._container = Container(spec)

    @property
    def spec(self) -> ContainerSpec:
        return self._container.spec

    @property
    def start_failure(self) -> RemoteFailure | None:
        """Why the container could not start (import or `@modal.enter` error), or None."""
        return self._container.start_failure

    def user_callable(self, method: str) -> Callable[..., Any]:
        """The user's callable for `method` (`"__call__"`: the function), for web endpoints."""
        return self._container.user_callable(method)

    async def start(self) -> None:
        """Set up the process as a container and run `@modal.enter` hooks."""
        await self._container.start()

    async def call(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None
    ) -> Any:
        """One input of `method` (`"__call__"` for a function): its value or a RemoteFailure."""
        return await self._container.call(method, args, kwargs, call_id)

    async def chunk(
        self,
        method: str,
        args_list: list[tuple[Any, ...]],
        kwargs: dict[str, Any],
        call_id: str,
        first: int,
    ) -> tuple[list[Any], float]:
        """Inputs `first`, `first + 1`, ... of a map, run concurrently as the container allows:
        their outcomes in order, and the seconds they took."""
        return await self._container.call_chunk(method, args_list, kwargs, call_id, first)

    async def stream(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str
    ) -> AsyncIterator[Any]:
        """A generator input: its items as the user's generator yields them."""
        async for item in self._container.call_stream(method, args, kwargs, call_id):
            yield item

    async def stop(self) -> None:
        """Run `@modal.exit` hooks (once) and release the container's threads."""
        await self._container.stop()
