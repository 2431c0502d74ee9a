"""The Ray backend: the only package that imports `ray`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ray

from modal_ray.runtime.worker import Invocation
from modal_ray.specs import FunctionSpec

from . import runtime, store, tasks
from .tasks import PendingT, RayPending, RayPrepared, check_feasible

if TYPE_CHECKING:
    from modal_ray.runtime.container import ContainerSpec
    from modal_ray.serve_adapters.web import WebEndpoint
    from modal_ray.specs import ServiceSpec, StoreRef

    # Relative on purpose: mypy reads this tree with `backends` as a top-level package (the
    # editable install maps `modal_ray.backends` with an import hook that mypy cannot follow),
    # and only the relative spelling reaches the protocols in both layouts.
    from .. import Backend, Pending, Prepared  # noqa: TID252
    from .clustered import ClusteredPrepared
    from .serve import Service


class RayBackend:
    def connect(self, environment: str) -> None:
        runtime.connect(environment)

    def prepare(self, spec: FunctionSpec, invocation: Invocation) -> RayPrepared:
        check_feasible(spec.resources, f"Function {spec.tag!r}")
        return RayPrepared(spec, invocation)

    def prepare_clustered(self, spec: FunctionSpec, invocation: Invocation) -> ClusteredPrepared:
        from . import clustered

        return clustered.prepare(spec, invocation)

    def prepare_service(self, spec: ServiceSpec, container: ContainerSpec) -> Service:
        from . import serve as serve_backend

        check_feasible(spec.resources, f"The containers of {spec.tag!r}")
        return serve_backend.get_service(spec, container)

    def stop_services(self, prefix: str) -> None:
        from . import serve as serve_backend

        serve_backend.stop_services(prefix)

    def serve_web(self, endpoints: Sequence[WebEndpoint]) -> list[str]:
        from . import web as web_backend

        for e in endpoints:
            check_feasible(e.service.resources, f"The containers of {e.service.tag!r}")
        return web_backend.serve_web(endpoints)

    def web_url(self, name: str) -> str | None:
        from . import web as web_backend

        return web_backend.web_url(name)

    def prepare_web_service(self, spec: ServiceSpec, container: ContainerSpec) -> Service:
        from . import web as web_backend

        return web_backend.web_service(spec, container)

    def proxy_token_call(self, method: str, args: tuple[Any, ...]) -> Any:
        from . import web as web_backend

        return web_backend.proxy_token_call(method, args)

    def server_session(self, name: str, method: str, arg: Any) -> Any:
        from . import web as web_backend

        return web_backend.server_session(name, method, arg)

    def replica_count(self, name: str) -> int:
        from . import serve as serve_backend

        service = serve_backend._services.get(name)
        return service.replica_count() if service is not None else 0

    async def wait_any(
        self, pendings: Sequence[PendingT], timeout: float | None = None
    ) -> list[PendingT]:
        return await tasks.wait_any(pendings, timeout)

    def register_call(self, environment: str, call_id: str, pending: Pending) -> None:
        from . import calls

        if isinstance(pending, RayPending):  # container pools answer through Serve
            calls.register(environment, call_id, pending.ref)

    def lookup_call(self, environment: str, call_id: str) -> RayPending | None:
        from . import calls

        ref = calls.lookup(environment, call_id)
        return RayPending(ref, f"call {call_id}") if ref is not None else None

    def durable_calls(self) -> bool:
        from . import call_keeper

        return call_keeper.durable()

    def call_target(
        self, target: tuple[Any, str | None, dict[str, Any] | None], prepared: Prepared
    ) -> tuple[str, bytes]:
        from . import call_keeper

        return call_keeper.target_blob(target, prepared)

    async def spawn_calls(
        self,
        environment: str,
        digest: str,
        blob: bytes,
        meta: dict[str, Any],
        calls: list[tuple[str, bytes]],
    ) -> None:
        from . import call_keeper

        await call_keeper.spawn(environment, digest, blob, meta, calls)

    async def call_wait(
        self, environment: str, call_id: str, timeout: float
    ) -> tuple[str, bytes | None, str]:
        from . import call_keeper

        return await call_keeper.wait(environment, call_id, timeout)

    async def call_cancel(self, environment: str, call_ids: list[str], force: bool) -> None:
        from . import call_keeper

        await call_keeper.cancel(environment, call_ids, force)

    async def cancel_app_calls(self, environment: str, app_id: str) -> None:
        from . import call_keeper

        await call_keeper.cancel_app(environment, app_id)

    async def call_graph(self, environment: str, call_id: str) -> list[dict[str, Any]]:
        from . import call_keeper

        return await call_keeper.graph(environment, call_id)

    def total_cpus(self) -> float:
        return float(ray.cluster_resources().get("CPU", 1.0))  # type: ignore[no-untyped-call]

    def describe(self) -> str:
        mode = runtime.mode() or "not connected"
        return f"Ray {ray.__version__} ({mode})"

    async def store_call(
        self, ref: StoreRef, method: str, args: tuple[Any, ...], *, create: bool = False
    ) -> Any:
        return await store.call(ref, method, args, create=create)

    def store_call_sync(
        self, ref: StoreRef, method: str, args: tuple[Any, ...], *, create: bool = False
    ) -> Any:
        return store.call_sync(ref, method, args, create=create)

    async def store_create(self, ref: StoreRef) -> bool:
        return await store.create(ref)

    async def store_delete(self, ref: StoreRef) -> bool:
        return await store.delete(ref)

    async def store_list(self, root: str, kind: str, environment: str) -> list[dict[str, Any]]:
        return await store.list_names(root, kind, environment)

    def store_allow_direct(self, enabled: bool = True) -> None:
        store.allow_direct(enabled)

    async def sandbox_create(
        self, environment: str, kwargs: dict[str, Any], resources: dict[str, float] | None
    ) -> dict[str, Any]:
        from . import sandbox

        return await sandbox.create(environment, kwargs, resources)  # type: ignore[no-any-return]

    async def sandbox_call(
        self,
        environment: str,
        sandbox_id: str,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        from . import sandbox

        return await sandbox.call(environment, sandbox_id, method, args, kwargs or {})

    async def sandbox_list(self, environment: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        from . import sandbox

        return await sandbox.list_all(environment, filters)

    def connection_mode(self) -> str | None:
        mode = runtime.mode()
        if mode is None and ray.is_initialized():
            return "user"  # a worker, or a process whose user called `ray.init`
        return mode

    async def registry_call(self, environment: str, method: str, args: tuple[Any, ...]) -> Any:
        from . import registry

        return await registry.call(environment, method, args)

    def registry_call_sync(self, environment: str, method: str, args: tuple[Any, ...]) -> Any:
        from . import registry

        return registry.call_sync(environment, method, args)

    def pin_code(
        self, runtime_env: Mapping[str, Any], target: Any
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        from . import registry

        return registry.pin_code(runtime_env, target)

    def restore_code(self, environment: str, runtime_env: Mapping[str, Any]) -> None:
        from . import registry

        registry.restore_code(environment, runtime_env)

    def stop_deployment(self, environment: str, app_id: str) -> None:
        from modal_ray import naming

        from . import registry
        from . import serve as serve_backend

        prefix = naming.run_prefix(environment, app_id)
        serve_backend.stop_services(prefix)
        registry.forget_deployment(prefix)

    def deployed_version(self, environment: str, app_id: str) -> int | None:
        from . import app_versions

        return app_versions.read(environment, app_id)

    def cluster_state_call(self, method: str, args: tuple[Any, ...]) -> Any:
        from . import ops

        return ops.state_call(method, args)

    def stop_environment(self, environment: str) -> None:
        from . import ops

        ops.stop_environment(environment)

    def containers(self, environment: str, app_id: str | None) -> list[dict[str, Any]]:
        from . import ops

        return ops.containers(environment, app_id)

    def stop_container(self, environment: str, container_id: str) -> dict[str, Any]:
        from . import ops

        return ops.stop_container(environment, container_id)

    def read_output(
        self, match: Mapping[str, Any], offsets: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        from . import ops

        return ops.read_output(match, offsets)

    def dashboard_url(self) -> str | None:
        from . import ops

        return ops.dashboard_url()


if TYPE_CHECKING:
    # mypy holds the implementation to the seam: a method that drifts from `Backend` fails here.
    _checked: type[Backend] = RayBackend

__all__ = ["RayBackend"]
