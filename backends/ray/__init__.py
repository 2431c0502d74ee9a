"""The Ray backend: the only package that imports `ray`."""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from modal_ray.runtime.worker import Invocation
from modal_ray.specs import FunctionSpec

from . import runtime, store
from .tasks import RayPending, RayPrepared, check_feasible


class RayBackend:
    def connect(self, environment: str) -> None:
        runtime.connect(environment)

    def prepare(self, spec: FunctionSpec, invocation: Invocation) -> RayPrepared:
        check_feasible(spec.resources, f"Function {spec.tag!r}")
        return RayPrepared(spec, invocation)

    def prepare_service(self, spec: Any, container: Any) -> Any:
        from . import serve as serve_backend

        check_feasible(spec.resources, f"The containers of {spec.tag!r}")
        return serve_backend.get_service(spec, container)

    def stop_services(self, prefix: str) -> None:
        from . import serve as serve_backend

        serve_backend.stop_services(prefix)

    def replica_count(self, name: str) -> int:
        from . import serve as serve_backend

        service = serve_backend._services.get(name)
        return service.replica_count() if service is not None else 0

    async def wait_any(self, pendings: list[Any], timeout: float | None = None) -> list[Any]:
        """Wait until at least one of `pendings` is finished; return the finished ones."""
        futs = {p.future(): p for p in pendings}
        done, _ = await asyncio.wait(futs, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return [futs[f] for f in done]

    def register_call(self, environment: str, call_id: str, pending: Any) -> None:
        from . import calls

        ref = getattr(pending, "ref", None)
        if ref is not None:  # task-backed calls; container pools answer through Serve
            calls.register(environment, call_id, ref)

    def lookup_call(self, environment: str, call_id: str) -> Any | None:
        from . import calls

        ref = calls.lookup(environment, call_id)
        return RayPending(ref, f"call {call_id}") if ref is not None else None

    def total_cpus(self) -> float:
        return float(ray.cluster_resources().get("CPU", 1.0))  # type: ignore[no-untyped-call]

    def describe(self) -> str:
        mode = runtime.mode() or "not connected"
        return f"Ray {ray.__version__} ({mode})"

    async def store_call(
        self, ref: Any, method: str, args: tuple[Any, ...], *, create: bool = False
    ) -> Any:
        return await store.call(ref, method, args, create=create)

    def store_call_sync(
        self, ref: Any, method: str, args: tuple[Any, ...], *, create: bool = False
    ) -> Any:
        return store.call_sync(ref, method, args, create=create)

    async def store_create(self, ref: Any) -> bool:
        return await store.create(ref)

    async def store_delete(self, ref: Any) -> bool:
        return await store.delete(ref)

    async def store_list(self, root: str, kind: str, environment: str) -> list[dict[str, Any]]:
        return await store.list_names(root, kind, environment)

    def store_allow_direct(self, enabled: bool = True) -> None:
        store.allow_direct(enabled)


__all__ = ["RayBackend"]
