"""The `.map` front end: what `Function.map` / `starmap` / `for_each` / `spawn_map` share.

It turns the caller's iterables (sync or async, zipped lazily and non-strictly as Modal does)
into input tuples, runs them through the map engine (`mapping.MapEngine`) with the function's
in-flight bound, and turns batches of outcomes back into values or exceptions
(`return_exceptions`, `wrap_returned_exceptions`). `Mapper` is the object behind `f.map(...)`:
a lazy iterator for blocking callers, an async iterator with `.aio`.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from modal_ray.backends import get_backend
from modal_ray.exception import InvalidError

from . import naming, output
from .errors import RemoteFailure, UserCodeException
from .mapping import Failed, MapEngine, container_slots
from .synchronizer import iter_async, iter_sync
from .warn import deprecation

if TYPE_CHECKING:
    from .function import Function

# A container pool without `max_containers` may grow to this many containers (Serve's bound in
# `FunctionOptions.build_container`).
DEFAULT_MAX_CONTAINERS = 100


async def zip_async(
    iterables: tuple[Any, ...], loop: asyncio.AbstractEventLoop | None
) -> AsyncIterator[tuple[Any, ...]]:
    """Zip sync and async iterables; async ones are advanced on the loop that owns them."""
    iters: list[Any] = [
        it.__aiter__() if hasattr(it, "__aiter__") else iter(it) for it in iterables
    ]
    while True:
        args = []
        for it in iters:
            if hasattr(it, "__anext__"):
                try:
                    if loop is not None and loop is not asyncio.get_running_loop():
                        fut = asyncio.run_coroutine_threadsafe(it.__anext__(), loop)
                        value = await asyncio.wrap_future(fut)
                    else:
                        value = await it.__anext__()
                except StopAsyncIteration:
                    return
            else:
                try:
                    value = next(it)
                except StopIteration:
                    return
            args.append(value)
        yield tuple(args)


async def star_async(
    iterable: Any, loop: asyncio.AbstractEventLoop | None
) -> AsyncIterator[tuple[Any, ...]]:
    async for (args,) in zip_async((iterable,), loop):
        yield tuple(args)


def length_hint(iterables: tuple[Any, ...]) -> int | None:
    hints = [
        operator.length_hint(it, -1) if not hasattr(it, "__aiter__") else -1 for it in iterables
    ]
    known = [h for h in hints if h >= 0]
    return min(known) if known and len(known) == len(hints) else None


async def map_batches(
    f: Function[..., Any, Any],
    inputs: Iterator[tuple[Any, ...]] | AsyncIterator[tuple[Any, ...]],
    kwargs: dict[str, Any],
    *,
    ordered: bool,
    length_hint: int | None,
) -> AsyncIterator[list[Any]]:
    f._check_not_generator("map")
    prepared = f._ensure_prepared()
    assert f._spec is not None
    backend = get_backend()
    engine = MapEngine(
        prepared,
        backend,
        inputs,
        kwargs,
        call_id=naming.new_call_id(),
        ordered=ordered,
        retries=f._spec.retries,
        max_tasks=map_capacity(f, backend),
        length_hint=length_hint,
    )
    progress = output.MapProgress(f"{f._tag} map", length_hint)
    try:
        async for batch in engine.run():
            progress.advance(len(batch))
            yield batch
    finally:
        progress.close()


def map_capacity(f: Function[..., Any, Any], backend: Any) -> int:
    """How many engine tasks a map keeps in flight.

    Task-backed: the cluster's worker slots (`max_containers` caps them); chunks amortise
    the per-task overhead. A container pool: every input slot of every container it may
    have (`max_containers`, else as many containers as the cluster has worker slots), so a
    map fills `@modal.concurrent` slots and `@modal.batched` batchers as Modal's does.
    """
    worker_slots = max(8, int(2 * backend.total_cpus()))
    options = f._pool_options()
    if options is None:
        assert f._spec is not None
        if f._spec.max_containers:
            return min(worker_slots, f._spec.max_containers)
        return worker_slots
    containers = options.max_containers or min(worker_slots, DEFAULT_MAX_CONTAINERS)
    containers = max(containers, options.min_containers or 0, 1)
    return containers * container_slots(options.max_inputs_concurrent, options.batch_max_size)


def outcomes(
    f: Function[..., Any, Any], batch: list[Any], return_exceptions: bool, wrap: bool | None
) -> list[Any]:
    if not any(type(o) is Failed for o in batch):
        return batch
    out = []
    for outcome in batch:
        if isinstance(outcome, Failed):
            err = outcome.error
            exc = err.to_exception(f._tag) if isinstance(err, RemoteFailure) else err
            if not return_exceptions:
                raise exc
            if wrap is None:
                deprecation(
                    "map-wrap-exceptions",
                    "`return_exceptions=True` returns exceptions wrapped in UserCodeException;"
                    " pass `wrap_returned_exceptions=False` to get the original exceptions"
                    " (the future default).",
                )
            out.append(UserCodeException(exc) if wrap is not False else exc)
        else:
            out.append(outcome)
    return out


async def map_async(
    f: Function[..., Any, Any],
    iterables: tuple[Any, ...],
    kwargs: dict[str, Any],
    order_outputs: bool,
    return_exceptions: bool,
    wrap: bool | None,
    caller_loop: asyncio.AbstractEventLoop | None = None,
    star: bool = False,
) -> AsyncIterator[list[Any]]:
    inputs: Iterator[tuple[Any, ...]] | AsyncIterator[tuple[Any, ...]]
    is_async = any(hasattr(it, "__aiter__") for it in iterables)
    if star:
        inputs = (
            star_async(iterables[0], caller_loop) if is_async else (tuple(t) for t in iterables[0])
        )
    elif is_async:
        inputs = zip_async(iterables, caller_loop)
    else:
        # Non-strict on purpose: Modal zips iterables of different lengths
        # (e.g. with itertools.repeat) and stops at the shortest.
        inputs = zip(*iterables, strict=False)
    batches = map_batches(
        f, inputs, kwargs, ordered=order_outputs, length_hint=length_hint(iterables)
    )
    async for batch in batches:
        yield outcomes(f, batch, return_exceptions, wrap)


def map_inputs(input_iterators: tuple[Any, ...], name: str) -> tuple[Any, ...]:
    """Check the iterables of a background map up front (its errors would otherwise surface
    in a task nobody awaits); sync ones become iterators, still unread."""
    if not input_iterators:
        raise InvalidError(f"`{name}` needs at least one input iterable.")
    out = []
    for it in input_iterators:
        if hasattr(it, "__aiter__"):
            out.append(it)
            continue
        try:
            out.append(iter(it))
        except TypeError:
            raise InvalidError(
                f"`{name}` takes iterables, one per argument; got {type(it).__name__}."
            ) from None
    return tuple(out)


class Mapper:
    """`f.map(...)` / `f.starmap(...)`: a lazy iterator, or an async one with `.aio`."""

    __slots__ = ("_f", "_star")

    def __init__(self, f: Function[..., Any], star: bool) -> None:
        self._f = f
        self._star = star

    def _iterables(self, input_iterators: tuple[Any, ...]) -> tuple[Any, ...]:
        if self._star and len(input_iterators) != 1:
            raise InvalidError("`starmap` takes exactly one iterable of argument tuples.")
        if not self._star and not input_iterators:
            raise InvalidError("`map` needs at least one input iterable.")
        return input_iterators

    def __call__(
        self,
        *input_iterators: Iterable[Any],
        kwargs: dict[str, Any] = {},  # noqa: B006
        order_outputs: bool = True,
        return_exceptions: bool = False,
        wrap_returned_exceptions: bool | None = None,
    ) -> Iterator[Any]:
        iterables = self._iterables(input_iterators)
        for it in iterables:
            if hasattr(it, "__aiter__"):
                raise InvalidError("Async iterables can only be used with `.map.aio(...)`.")
        return flatten(
            iter_sync(
                map_async(
                    self._f,
                    iterables,
                    dict(kwargs),
                    order_outputs,
                    return_exceptions,
                    wrap_returned_exceptions,
                    star=self._star,
                ),
                f"{self._f._tag}.map",
            )
        )

    async def aio(
        self,
        *input_iterators: Any,
        kwargs: dict[str, Any] = {},  # noqa: B006
        order_outputs: bool = True,
        return_exceptions: bool = False,
        wrap_returned_exceptions: bool | None = None,
    ) -> AsyncIterator[Any]:
        iterables = self._iterables(input_iterators)
        loop = asyncio.get_running_loop()
        agen = map_async(
            self._f,
            iterables,
            dict(kwargs),
            order_outputs,
            return_exceptions,
            wrap_returned_exceptions,
            loop,
            star=self._star,
        )
        async for batch in iter_async(agen):
            for item in batch:
                yield item


def flatten(batches: Iterator[list[Any]]) -> Iterator[Any]:
    for batch in batches:
        yield from batch


__all__ = ["Mapper", "map_async", "map_capacity", "map_inputs", "outcomes"]
