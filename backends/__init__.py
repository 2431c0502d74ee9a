"""The backend seam: what the engine-neutral core needs from an execution engine.

Only one implementation exists (`modal_ray.backends.ray`); the core talks to it through the
protocols below and never sees an engine type. `get_backend()` imports it lazily, so
`import modal` does not import Ray until something runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from modal_ray.dict import StoreRef
    from modal_ray.runtime.worker import Invocation
    from modal_ray.specs import FunctionSpec


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

    def register_call(self, environment: str, call_id: str, pending: Pending) -> None:
        """Make a spawned call findable by id from other processes (best effort)."""

    def lookup_call(self, environment: str, call_id: str) -> Pending | None:
        """A call spawned by another process of the cluster, or None."""

    def prepare_service(self, spec: Any, container: Any) -> Any:
        """Deploy (once) a pool of containers; `.method(name)` gives a `Prepared` per method."""

    def stop_services(self, prefix: str) -> None:
        """Stop every container pool whose name starts with `prefix` (runs `@exit` hooks)."""

    def replica_count(self, name: str) -> int: ...

    def describe(self) -> str: ...

    # -- Dict / Queue storage (one persisted server per object; see backends/ray/store.py) --

    async def store_call(
        self, ref: StoreRef, method: str, args: tuple[Any, ...], *, create: bool = False
    ) -> Any:
        """One operation on the object's server; `NotFoundError` if the object does not exist
        (and `create` is False)."""

    def store_call_sync(
        self, ref: StoreRef, method: str, args: tuple[Any, ...], *, create: bool = False
    ) -> Any:
        """`store_call` for a blocking caller, in the caller's thread."""

    async def store_create(self, ref: StoreRef) -> bool:
        """Create the object (an ephemeral one is owned by this process); True if it existed."""

    async def store_delete(self, ref: StoreRef) -> bool:
        """Delete the object and its data; True if it existed."""

    async def store_list(self, root: str, kind: str, environment: str) -> list[dict[str, Any]]:
        """The named objects of `kind` ("dict" or "queue"): `name`, `created_at` (epoch
        seconds) and, for queues, `partitions` and `items`."""

    def store_allow_direct(self, enabled: bool = True) -> None:
        """One-shot tools (the CLI): with no cluster configured and Ray not running in this
        process, use the state store in-process instead of starting an embedded Ray."""


_backend: Backend | None = None


def get_backend() -> Backend:
    global _backend
    if _backend is None:
        from modal_ray.backends.ray import RayBackend

        _backend = RayBackend()
    return _backend
