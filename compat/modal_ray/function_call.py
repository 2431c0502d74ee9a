"""`modal.FunctionCall`: a handle on a spawned call.

Two kinds, one surface (`get`, `cancel`, `gather`, `get_call_graph`, `from_id`, all with `.aio`):
- on a long-lived cluster (`Backend.durable_calls()`), a spawned call is kept by the
  environment's call keeper on the cluster: the handle holds only the call's id and environment,
  and its outcome is read from the keeper, from any process, also after the spawning process
  exited; outcomes are kept `RETENTION_DAYS` (7) days after the call ended, then `get` raises
  `OutputExpiredError`. An unknown id raises `NotFoundError`.
- on the embedded engine (nothing outlives this process), a call spawned here is an asyncio
  task on the private loop (owned by the run's task group, so it is cancelled or awaited when
  the app stops); another process of the same Ray finds it through the backend's call tracker.
"""

from __future__ import annotations

import asyncio
import pickle
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from modal_ray.backends import get_backend
from modal_ray.exception import (
    ExecutionError,
    InputCancellation,
    InvalidError,
    NotFoundError,
    OutputExpiredError,
)

from . import config
from .errors import is_failure
from .synchronizer import dual, dual_static

if TYPE_CHECKING:
    from .function import Function


R = TypeVar("R")
T = TypeVar("T")

RETENTION_DAYS = 7
POLL_S = 50.0  # one wait on the keeper lasts at most this long; `get()` waits again


class FunctionCall(Generic[R]):
    """A handle on a spawned call: poll or wait for its result, or cancel it."""

    __module__ = "modal.functions"

    _registry: weakref.WeakValueDictionary[str, FunctionCall[Any]] = weakref.WeakValueDictionary()

    def __init__(
        self,
        object_id: str,
        task: asyncio.Task[R] | None,
        function: Function[..., R, Any] | None,
        environment: str | None = None,
    ) -> None:
        self._object_id = object_id
        self._task = task  # None: kept by the cluster's call keeper, in `environment`
        self._function = function
        self._environment = environment
        self._pending: list[Any] = []
        FunctionCall._registry[object_id] = self

    @classmethod
    def _kept(
        cls, object_id: str, environment: str, function: Function[..., R, Any] | None
    ) -> FunctionCall[R]:
        """A call kept by the call keeper of `environment`."""
        return cls(object_id, None, function, environment)

    def __repr__(self) -> str:
        return f"FunctionCall({self._object_id!r})"

    @property
    def object_id(self) -> str:
        return self._object_id

    @property
    def client(self) -> None:
        return None

    async def _wait(self, timeout: float | None) -> R:
        if self._task is None:
            return await self._wait_kept(timeout)
        if timeout is None:
            return await asyncio.shield(self._task)
        try:
            return await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{self._object_id} has no result yet (waited {timeout:g}s)"
            ) from None

    async def _wait_kept(self, timeout: float | None) -> R:
        assert self._environment is not None
        backend = get_backend()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(0.0, timeout)
        while True:
            wait_s = POLL_S if deadline is None else min(POLL_S, max(0.0, deadline - loop.time()))
            state, payload, name = await backend.call_wait(
                self._environment, self._object_id, wait_s
            )
            if state != "pending":
                return self._kept_outcome(state, payload, name)  # type: ignore[no-any-return]
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(
                    f"{self._object_id} has no result yet (waited {timeout:g}s)"
                ) from None

    def _kept_outcome(self, state: str, payload: bytes | None, name: str) -> Any:
        """The value of a kept call that ended, or the exception it ended with."""
        if state == "success":
            assert payload is not None
            return pickle.loads(payload)
        if state in ("failure", "timeout") and payload is not None:
            failure = pickle.loads(payload)
            if is_failure(failure):
                raise failure.to_exception(name)
            raise ExecutionError(f"{self._object_id} failed: {failure!r}")
        if state == "terminated":
            raise InputCancellation(f"{self._object_id} was cancelled before it finished.")
        if state == "expired":
            raise OutputExpiredError(
                f"The result of {self._object_id} has expired: results of spawned calls are"
                f" kept for {RETENTION_DAYS} days after the call ended. Spawn the call again."
            )
        raise ExecutionError(f"{self._object_id} ended in an unknown state {state!r}.")

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
        if self._task is None:
            assert self._environment is not None
            await get_backend().call_cancel(
                self._environment, [self._object_id], terminate_containers
            )
            return
        for pending in self._pending:
            pending.cancel(force=terminate_containers)
        self._task.cancel()

    def _owned_task(self) -> asyncio.Task[R]:
        """`RunTasks`: the task its app run waits for or cancels when it stops (only calls
        spawned here are owned so; kept calls belong to the keeper)."""
        assert self._task is not None
        return self._task

    async def _cancel_owned(self) -> None:
        await self.cancel.aio()

    @dual
    async def get_call_graph(self) -> list[Any]:
        from modal_ray.call_graph import InputInfo, InputStatus

        if self._task is None:
            return await self._kept_graph()
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

    async def _kept_graph(self) -> list[Any]:
        """The call graph from the keeper's records: this call, with the calls spawned inside
        it (and theirs) as children."""
        from modal_ray.call_graph import InputInfo, InputStatus

        assert self._environment is not None
        rows = await get_backend().call_graph(self._environment, self._object_id)
        statuses = {
            "pending": InputStatus.PENDING,
            "success": InputStatus.SUCCESS,
            "failure": InputStatus.FAILURE,
            "timeout": InputStatus.TIMEOUT,
            "terminated": InputStatus.TERMINATED,
            "expired": InputStatus.SUCCESS,
        }
        nodes: dict[str, InputInfo] = {}
        roots: list[InputInfo] = []
        for row in rows:
            call_id = row["call_id"]
            node = InputInfo(
                f"in-{call_id[3:]}-0",
                call_id,
                "",
                statuses.get(row["state"], InputStatus.PENDING),
                row["function_name"],
                row["module_name"],
                [],
            )
            nodes[call_id] = node
            parent = nodes.get(row["parent"] or "")
            if parent is not None and call_id != self._object_id:
                parent.children.append(node)
            else:
                roots.append(node)
        return roots[:1]

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
        if backend.durable_calls():
            try:
                await backend.call_wait(environment, function_call_id, 0.0)
            except NotFoundError:
                pass  # not kept: perhaps spawned in-process by a run of another process
            else:
                return FunctionCall._kept(function_call_id, environment, None)
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
            return list(await asyncio.gather(*(fc._wait(None) for fc in function_calls)))
        except BaseException:
            for fc in function_calls:
                if fc._task is not None:
                    fc._task.cancel()
                else:
                    await fc.cancel.aio()
            raise


__all__ = ["FunctionCall"]
