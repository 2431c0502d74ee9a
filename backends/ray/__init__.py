"""The Ray backend: the only package that imports `ray`."""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from modal_ray.specs import FunctionSpec
from modal_ray.worker import Invocation

from . import runtime
from .tasks import RayPending, RayPrepared, check_feasible


class RayBackend:
    def connect(self, environment: str) -> None:
        runtime.connect(environment)

    def prepare(self, spec: FunctionSpec, invocation: Invocation) -> RayPrepared:
        check_feasible(spec.resources, f"Function {spec.tag!r}")
        return RayPrepared(spec, invocation)

    async def wait_any(self, pendings: list[Any], timeout: float | None = None) -> list[Any]:
        """Wait until at least one of `pendings` is finished; return the finished ones."""
        futs = {p.future(): p for p in pendings if isinstance(p, RayPending)}
        done, _ = await asyncio.wait(futs, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return [futs[f] for f in done]

    def total_cpus(self) -> float:
        return float(ray.cluster_resources().get("CPU", 1.0))  # type: ignore[no-untyped-call]

    def describe(self) -> str:
        mode = runtime.mode() or "not connected"
        return f"Ray {ray.__version__} ({mode})"


__all__ = ["RayBackend"]
