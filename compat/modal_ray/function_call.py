"""`modal.FunctionCall`: a handle on a spawned call.

A call spawned here is an asyncio task on the private loop (owned by the run's task group, so it
is cancelled or awaited when the app stops); one spawned by another process is found by id
through the backend's call tracker (`FunctionCall.from_id`). `get`, `cancel`, `gather` and the
call graph work the same on both.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from modal_ray.backends import get_backend
from modal_ray.exception import ExecutionError, InvalidError, NotFoundError, OutputExpiredError

from . import config
from .errors import is_failure
from .synchronizer import dual, dual_static

if TYPE_CHECKING:
    from .function import Function


R = TypeVar("R")
T = TypeVar("T")


class FunctionCall(Generic[R]):
    """A handle on a spawned call: poll or wait for its result, or cancel it."""

    __module__ = "modal.functions"

    _registry: weakref.WeakValueDictionary[str, FunctionCall[Any]] = weakref.WeakValueDictionary()

    def __init__(
        self, object_id: str, task: asyncio.Task[R], function: Function[..., R, Any] | None
    ) -> None:
        self._object_id = object_id
        self._task = task
        self._function = function
        self._pending: list[Any] = []
        FunctionCall._registry[object_id] = self

    def __repr__(self) -> str:
        return f"FunctionCall({self._object_id!r})"

    @property
    def object_id(self) -> str:
        return self._object_id

    @property
    def client(self) -> None:
        return None

    async def _wait(self, timeout: float | None) -> R:
        if timeout is None:
            return await asyncio.shield(self._task)
        try:
            return await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{self._object_id} has no result yet (waited {timeout:g}s)"
            ) from None

    @dual
    async def get(self, timeout: float | None = None, *, index: int = 0) -> R:
        """Wait for the result; builtin `TimeoutError` if it is not ready within `timeout`
        seconds."""
        if index != 0:
            raise InvalidError("`FunctionCall.get(index=...)` only applies to `spawn_map` calls.")
        return await self._wait(timeout)

    @dual
    async def iter(self, *, start: int = 0, end: int | None = None) -> AsyncIterator[R]:
        yield await self._wait(None)

    @dual
    async def num_inputs(self) -> int:
        return 1

    @dual
    async def cancel(self, terminate_containers: bool = False) -> None:
        """Stop the call. `terminate_containers=True` also kills the worker running it."""
        for pending in self._pending:
            pending.cancel(force=terminate_containers)
        self._task.cancel()

    def _owned_task(self) -> asyncio.Task[R]:
        """`RunTasks`: the task its app run waits for or cancels when it stops."""
        return self._task

    async def _cancel_owned(self) -> None:
        await self.cancel.aio()

    @dual
    async def get_call_graph(self) -> list[Any]:
        from modal_ray.call_graph import InputInfo, InputStatus

        status = InputStatus.PENDING
        if self._task.done():
            status = (
                InputStatus.TERMINATED
                if self._task.cancelled()
                else InputStatus.FAILURE
                if self._task.exception() is not None
                else InputStatus.SUCCESS
            )
        name = self._function._tag if self._function else ""
        module = getattr(self._function._raw_f, "__module__", "") if self._function else ""
        return [
            InputInfo(f"in-{self._object_id[3:]}-0", self._object_id, "", status, name, module, [])
        ]

    @dual
    async def get_dashboard_url(self) -> str:
        return ""

    @dual
    async def hydrate(self, client: Any = None) -> FunctionCall[R]:
        return self

    @property
    def logs(self) -> Any:
        raise NotImplementedError(
            "`FunctionCall.logs` is not available on Ray; use the Ray dashboard."
        )

    @staticmethod
    def _lookup(function_call_id: str) -> FunctionCall[Any]:
        call = FunctionCall._registry.get(function_call_id)
        if call is None:
            raise NotFoundError(
                f"No FunctionCall {function_call_id!r} in this process. Calls can be looked up"
                " by id only in the process that spawned them in this version of modal-ray."
            )
        return call

    @dual_static
    async def from_id(function_call_id: str, client: Any = None) -> FunctionCall[Any]:
        """Rebuild a handle from `FunctionCall.object_id`, in this or another process."""
        call = FunctionCall._registry.get(function_call_id)
        if call is not None:
            return call
        backend = get_backend()
        environment = config.environment_name()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, backend.connect, environment)
        pending = await loop.run_in_executor(
            None, backend.lookup_call, environment, function_call_id
        )
        if pending is None:
            raise NotFoundError(
                f"No FunctionCall {function_call_id!r} in environment {environment!r}: unknown id,"
                " older than 7 days, or spawned on another cluster."
            )

        async def _result() -> Any:
            try:
                value = await pending.result_async()
            except ExecutionError as exc:
                raise OutputExpiredError(
                    f"The result of {function_call_id} is no longer available: {exc}"
                ) from None
            if is_failure(value):
                raise value.to_exception("")
            return value

        return FunctionCall(function_call_id, loop.create_task(_result()), None)

    @dual_static
    async def gather(*function_calls: FunctionCall[T]) -> Sequence[T]:
        """Wait for every call; raise the first failure (cancelling the rest)."""
        try:
            return list(await asyncio.gather(*(asyncio.shield(fc._task) for fc in function_calls)))
        except BaseException:
            for fc in function_calls:
                fc._task.cancel()
            raise


__all__ = ["FunctionCall"]
