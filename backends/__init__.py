"""The backend seam: what the engine-neutral core needs from an execution engine.

Only one implementation exists (`modal_ray.backends.ray`); the core talks to it through the
protocols below and never sees an engine type. `get_backend()` imports it lazily, so
`import modal` does not import Ray until something runs.

Invariants:
- a `Pending` is the one handle on a submitted call: awaitable (`await p`), blocking
  (`p.result(timeout)`) or polled (`p.done()`); how it waits on the engine (futures, object
  references) stays inside the implementation, and `Backend.wait_any` is the only way to wait
  on several at once;
- the value of a call is the user's value or a `RemoteFailure` (`modal_ray.errors`); a failure
  of the engine itself (a worker lost for good, a result expired) raises a `modal.exception`
  error instead;
- the mypy check at the end of `modal_ray.backends.ray` holds the implementation to these
  protocols.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from modal_ray.runtime.container import ContainerSpec
    from modal_ray.runtime.worker import Invocation
    from modal_ray.serve_adapters.web import WebEndpoint
    from modal_ray.specs import FunctionSpec, ServiceSpec, StoreRef


class Pending(Protocol):
    """One submitted call: its value is the user's value or a `RemoteFailure`."""

    def result(self, timeout: float | None = None) -> Any:
        """Block for the value; builtin `TimeoutError` if not ready within `timeout`."""

    async def result_async(self) -> Any:
        """Await the value on the running event loop (the same as `await pending`)."""

    def __await__(self) -> Generator[Any, None, Any]:
        """`await pending` gives the value; awaiting again gives the same value."""

    def done(self) -> bool:
        """Is the value (or the engine's error) ready?"""

    def cancel(self, force: bool = False) -> None:
        """Stop waiting for the call and ask the engine to stop it (`force`: kill its worker).
        Its outcome, if it still comes, is dropped."""


PendingT = TypeVar("PendingT", bound=Pending)


class PendingStream(Protocol):
    """A submitted generator call: items (or a final `RemoteFailure`) as the worker yields them."""

    def __iter__(self) -> Iterator[Any]: ...

    def __aiter__(self) -> AsyncIterator[Any]: ...

    def cancel(self) -> None:
        """Stop the generator; items not yet read are dropped."""


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
    ) -> PendingStream:
        """A generator call."""

    @property
    def service(self) -> PreparedService | None:
        """The container pool this runs on; None for a function that runs as engine tasks."""


class PreparedService(Protocol):
    """A pool of containers (one class parameter set, or one function with container
    semantics), deployed or attached to by `Backend.prepare_service`."""

    def method(self, name: str) -> Prepared:
        """Calls to `name` (`"__call__"` for a function) on the pool's containers."""

    def update(
        self,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        scaledown_window: float | None = None,
    ) -> None:
        """New autoscaling bounds, applied in place: running containers stay."""


class Backend(Protocol):
    def connect(self, environment: str) -> None:
        """Connect to (or start) the engine, in the namespace of `environment`."""

    def prepare(self, spec: FunctionSpec, invocation: Invocation) -> Prepared:
        """A function that runs each input as an engine task."""

    def prepare_clustered(self, spec: FunctionSpec, invocation: Invocation) -> Prepared:
        """A clustered function: each input runs on `spec.cluster_size` ranks placed together
        (all or nothing); its value is rank 0's. `InvalidError` now if the cluster can never
        hold them."""

    async def wait_any(
        self, pendings: Sequence[PendingT], timeout: float | None = None
    ) -> list[PendingT]:
        """Wait until at least one of `pendings` is finished (or `timeout` passes); return the
        finished ones."""

    def total_cpus(self) -> float: ...

    def register_call(self, environment: str, call_id: str, pending: Pending) -> None:
        """Make a spawned call findable by id from other processes (best effort)."""

    def lookup_call(self, environment: str, call_id: str) -> Pending | None:
        """A call spawned by another process of the cluster, or None."""

    # -- Durable calls (one call keeper per environment; see backends/ray/call_keeper.py) --

    def durable_calls(self) -> bool:
        """Do spawned calls outlive this process (a long-lived cluster), going to the
        environment's call keeper? False on the embedded engine (the in-process path)."""

    def call_target(
        self, target: tuple[Any, str | None, dict[str, Any] | None], prepared: Prepared
    ) -> tuple[str, bytes]:
        """(digest, bytes) of a call target `(record, method or None, class parameters)`, made
        independent of this process."""

    async def spawn_calls(
        self,
        environment: str,
        digest: str,
        blob: bytes,
        meta: dict[str, Any],
        calls: list[tuple[str, bytes]],
    ) -> None:
        """Hand calls `(call id, pickled (args, kwargs))` to the keeper; returns once they are
        recorded. `meta`: parent, app_id, function_name, module_name, bound (to this driver)."""

    async def call_wait(
        self, environment: str, call_id: str, timeout: float
    ) -> tuple[str, bytes | None, str]:
        """(state, pickled outcome, function name) of a kept call once it ended or `timeout`
        passed (state "pending"); `NotFoundError` for an unknown id."""

    async def call_cancel(self, environment: str, call_ids: list[str], force: bool) -> None:
        """Cancel kept calls (and the calls they spawned)."""

    async def cancel_app_calls(self, environment: str, app_id: str) -> None:
        """Cancel every unfinished kept call of an app run."""

    async def call_graph(self, environment: str, call_id: str) -> list[dict[str, Any]]:
        """A kept call and the calls spawned below it (`CallsServer.graph`)."""

    def prepare_service(self, spec: ServiceSpec, container: ContainerSpec) -> PreparedService:
        """Deploy (once) a pool of containers, or attach to the one that exists."""

    def stop_services(self, prefix: str) -> None:
        """Stop every container pool whose name starts with `prefix` (runs `@exit` hooks)."""

    def serve_web(self, endpoints: Sequence[WebEndpoint]) -> list[str]:
        """Deploy (once) the pools of web endpoints, or attach to them, and give each its own
        origin; returns their URLs. `stop_services` removes both."""

    def web_url(self, name: str) -> str | None:
        """The URL of the web endpoint whose pool is `name`, if it is being served."""

    def prepare_web_service(self, spec: ServiceSpec, container: ContainerSpec) -> PreparedService:
        """A served web endpoint's pool, for calls of its function's own code (`.remote`);
        `ExecutionError` if it is not being served."""

    def proxy_token_call(self, method: str, args: tuple[Any, ...]) -> Any:
        """One operation on the cluster's proxy-auth tokens (`serve_adapters.auth.TokenTable`:
        create, list, revoke, delete, verify)."""

    def server_session(self, name: str, method: str, arg: Any) -> Any:
        """`start` (arg: idle timeout; the new token, None if the Server is not served) or
        `terminate` (arg: the token; whether it was live) a sticky session of the sessioned
        Server whose pool is `name` (`serve_adapters.sessions`)."""

    def replica_count(self, name: str) -> int:
        """Running containers of the pool `name` (0 if this process does not know it)."""

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

    # -- Sandboxes (one supervisor per node; see backends/ray/sandbox.py) --

    async def sandbox_create(
        self, environment: str, kwargs: dict[str, Any], resources: dict[str, float] | None
    ) -> dict[str, Any]:
        """Place and start a sandbox (`Supervisor.create` keywords); returns its description."""

    async def sandbox_call(
        self,
        environment: str,
        sandbox_id: str,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """One `Supervisor` operation on the sandbox's node."""

    async def sandbox_list(self, environment: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Descriptions of the environment's sandboxes matching `filters` (`Supervisor.list`)."""

    # -- Deployed apps (one registry per environment; see backends/ray/registry.py) --

    def connection_mode(self) -> str | None:
        """How this process is connected ("user", "address" or "embedded"); None if not yet."""

    async def registry_call(self, environment: str, method: str, args: tuple[Any, ...]) -> Any:
        """One operation of the environment's app registry (`RegistryServer`)."""

    def registry_call_sync(self, environment: str, method: str, args: tuple[Any, ...]) -> Any:
        """`registry_call` for a blocking caller, in the caller's thread."""

    def pin_code(
        self, runtime_env: Mapping[str, Any], target: Any
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The runtime env of a deployed object, its code uploaded to the cluster as packages
        that outlive this process (with their bytes, which the registry keeps)."""

    def restore_code(self, environment: str, runtime_env: Mapping[str, Any]) -> None:
        """Before calling a deployed object: restore any of its packages the engine dropped."""

    def stop_deployment(self, environment: str, app_id: str) -> None:
        """Remove every container pool of a deployed app (its `@exit` hooks run)."""

    def deployed_version(self, environment: str, app_id: str) -> int | None:
        """The current version of a deployed app as the registry published it (None: stopped or
        unpublished); a cheap read, for handles looked up by name (`modal_ray.freshness`)."""

    # -- Operations (cluster-wide state, containers, output; see backends/ray/ops.py) --

    def cluster_state_call(self, method: str, args: tuple[Any, ...]) -> Any:
        """One operation on the cluster's secrets and environments (`ClusterState`), kept in
        the head's state store."""

    def stop_environment(self, environment: str) -> None:
        """Stop the environment's registry (before the environment is deleted)."""

    def containers(self, environment: str, app_id: str | None) -> list[dict[str, Any]]:
        """Running containers of the environment's apps (or of `app_id`): `container_id`,
        `app_id`, `pool`, `tag`, `node`, `pid`, `started_at` (epoch seconds)."""

    def stop_container(self, environment: str, container_id: str) -> dict[str, Any]:
        """End one container (its pool may start another in its place); its description."""

    def read_output(
        self, match: Mapping[str, Any], offsets: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Worker output of the containers and tasks `match` names, on every node, from
        `offsets` (per log file; empty: from the start); the lines and the new offsets."""

    def dashboard_url(self) -> str | None:
        """The URL of the engine's own dashboard, if it runs."""


_backend: Backend | None = None


def get_backend() -> Backend:
    global _backend
    if _backend is None:
        from .ray import RayBackend

        _backend = RayBackend()
    return _backend
