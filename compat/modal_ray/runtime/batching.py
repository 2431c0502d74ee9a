"""Dynamic batching for `@modal.batched` inside a container (`Container` owns one `_Batcher`).

Invariants: the first input opens a batch, which runs when `max_size` inputs are in or `wait_s`
after it opened; inputs beyond `max_size` open the next batch; the user's method receives one
list per parameter (defaults applied) and must return a list with one output per input; every
caller gets its own element, or the batch's failure as a `RemoteFailure` value (never raised).
Runs on the replica's event loop; the batch itself takes one of the container's input slots.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .container import Container


class _Batcher:
    """Collects concurrent inputs into one call: the first input opens a batch, which runs when
    `max_size` inputs are in or `wait_s` after it opened."""

    def __init__(self, container: Container, method: str, max_size: int, wait_s: float) -> None:
        self.container = container
        self.method = method
        self.max_size = max_size
        self.wait_s = wait_s
        self.pending: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        self.timer: asyncio.TimerHandle | None = None
        fn = container._callable(method)
        self.signature = inspect.signature(fn)

    def submit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self.pending.append((args, kwargs, fut))
        if len(self.pending) >= self.max_size:
            self._flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.wait_s, self._flush)
        return fut

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending[: self.max_size], self.pending[self.max_size :]
        if self.pending:
            self.timer = asyncio.get_running_loop().call_later(self.wait_s, self._flush)
        if batch:
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(
        self, batch: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]]
    ) -> None:
        futures = [f for _, _, f in batch]
        try:
            columns: dict[str, list[Any]] = {name: [] for name in self.signature.parameters}
            for args, kwargs, _ in batch:
                bound = self.signature.bind(*args, **kwargs)
                bound.apply_defaults()
                for name in columns:
                    columns[name].append(bound.arguments.get(name))
            fn = self.container._callable(self.method)
            result = await self.container._invoke(fn, tuple(columns.values()), {})
            if not isinstance(result, list) or len(result) != len(batch):
                got = len(result) if isinstance(result, list) else type(result).__name__
                raise ValueError(
                    f"A @modal.batched function must return a list with one output per input:"
                    f" got {got} for a batch of {len(batch)} inputs."
                )
            for fut, value in zip(futures, result, strict=True):
                if not fut.done():
                    fut.set_result(value)
        except BaseException as exc:
            failure = self.container._failure(exc)
            for fut in futures:
                if not fut.done():
                    fut.set_result(failure)
