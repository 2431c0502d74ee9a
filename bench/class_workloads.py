"""The classes and deployments both sides of `bench_classes.py` run, in an importable module."""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray import serve

import modal

app = modal.App("bench-classes")


@app.cls(cpu=0.1, min_containers=1, max_containers=1)
@modal.concurrent(max_inputs=64)
class Echo:
    @modal.method()
    def ping(self, x: Any) -> Any:
        return x


@app.cls(cpu=0.1, min_containers=2, max_containers=2)
class Pool2:
    @modal.method()
    def ping(self, x: Any) -> Any:
        return x


@app.cls(cpu=0.1, min_containers=1, max_containers=1)
class Batched:
    @modal.batched(max_batch_size=8, wait_ms=10)
    async def double(self, xs: list[int]) -> list[int]:
        return [2 * x for x in xs]


@app.cls(cpu=0.1, min_containers=1, max_containers=1)
class BatchedModel:
    """A batched model fed by `.map`; each output carries the size of the batch it came in."""

    @modal.batched(max_batch_size=32, wait_ms=10)
    async def predict(self, xs: list[int]) -> list[tuple[int, int]]:
        return [(2 * x, len(xs)) for x in xs]


IO_SECONDS = 0.05


@app.function(cpu=0.1, min_containers=1, max_containers=1)
@modal.concurrent(max_inputs=16)
async def io_bound(x: int) -> int:
    await asyncio.sleep(IO_SECONDS)
    return x


@ray.remote(num_cpus=0.1)
class RawActor:
    def ping(self, x: Any) -> Any:
        return x


# Same settings as modal-ray's deployments: no access log on either side.
QUIET = {"enable_access_log": False, "log_level": "WARNING"}


@serve.deployment(
    ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64, logging_config=QUIET
)
class RawEcho:
    def __call__(self, x: Any) -> Any:
        return x


@serve.deployment(
    ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64, logging_config=QUIET
)
class RawBatched:
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def double(self, xs: list[int]) -> list[int]:
        return [2 * x for x in xs]

    async def __call__(self, x: int) -> int:
        return await self.double(x)


@serve.deployment(
    ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64, logging_config=QUIET
)
class RawBatchedModel:
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def predict(self, xs: list[int]) -> list[tuple[int, int]]:
        return [(2 * x, len(xs)) for x in xs]

    async def __call__(self, x: int) -> tuple[int, int]:
        return await self.predict(x)  # type: ignore[no-any-return]


@serve.deployment(
    ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=16, logging_config=QUIET
)
class RawIOBound:
    async def __call__(self, x: int) -> int:
        await asyncio.sleep(IO_SECONDS)
        return x
