"""The backend seam: what the engine-neutral core needs from an execution engine.

Only one implementation exists (`modal_ray.backends.ray`); the core talks to it through the
protocols below and never sees an engine type. `get_backend()` imports it lazily, so
`import modal` does not import Ray until something runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from modal_ray.specs import FunctionSpec
    from modal_ray.worker import Invocation


class Pending(Protocol):
    """One submitted engine task whose value is a result or a `RemoteFailure`."""

    def result(self, timeout: float | None = None) -> Any:
        """Block for the value; builtin `TimeoutError` if not ready within `timeout`."""

    async def result_async(self) -> Any: ...

    def done(self) -> bool: ...

    def cancel(self, force: bool = False) -> None: ...


class PendingStream(Protocol):
    """A submitted generator task: items as the worker yields them."""

    def __iter__(self) -> Iterator[Any]: ...

    def __aiter__(self) -> AsyncIterator[Any]: ...

    def cancel(self) -> None: ...


class Prepared(Protocol):
    """A function made ready to run on the engine (options resolved, code exported once)."""

    def submit(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None = None
    ) -> Pending:
        """One input. Without `call_id` the worker makes its own ids (the `.remote` fast path)."""

    def submit_chunk(
        self, args_list: list[tuple[Any, ...]], kwargs: dict[str, Any], call_id: str, first: int
    ) -> Pending:
        """Inputs `first`, `first + 1`, ... sharing `kwargs`; the value is (outcomes, seconds)."""

    def submit_stream(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str
    ) -> PendingStream: ...


class Backend(Protocol):
    def connect(self, environment: str) -> None: ...

    def prepare(self, spec: FunctionSpec, invocation: Invocation) -> Prepared: ...

    async def wait_any(
        self, pendings: list[Pending], timeout: float | None = None
    ) -> list[Pending]: ...

    def total_cpus(self) -> float: ...

    def describe(self) -> str: ...


_backend: Backend | None = None


def get_backend() -> Backend:
    global _backend
    if _backend is None:
        from modal_ray.backends.ray import RayBackend

        _backend = RayBackend()
    return _backend
