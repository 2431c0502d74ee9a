"""The `.map` engine: lazy input pulling, automatic chunking, bounded in-flight work, retries.

Inputs are pulled from the caller's iterator only as capacity frees up, so a 1,000,000-input
generator streams in constant memory. Small inputs are grouped into one engine task per chunk: the
chunk size starts at 1 and adapts so each task runs about `TARGET_TASK_SECONDS` of work (measured
by the worker), capped by payload size and by how many inputs remain when that is known. A failed
input is retried on its own, after Modal's backoff delay, without holding up the others.

Results come back in batches (lists of `(index, outcome)`) so the synchronous iterator crosses the
event-loop thread once per batch, not once per input.
"""

from __future__ import annotations

import asyncio
import heapq
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from modal_ray.exception import Error

from .errors import RemoteFailure
from .specs import RetryPolicy

TARGET_TASK_SECONDS = 0.05
MAX_CHUNK = 2000
MAX_CHUNK_BYTES = 16 * 1024 * 1024
MAX_INFLIGHT_INPUTS = 100_000


@dataclass(slots=True)
class Failed:
    """An input whose final outcome is an exception (local or remote)."""

    error: BaseException | RemoteFailure


Item = tuple[int, tuple[Any, ...], dict[str, Any]]


def _payload_size(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    return sum(sys.getsizeof(a) for a in args) + sum(sys.getsizeof(v) for v in kwargs.values())


class MapEngine:
    def __init__(
        self,
        prepared: Any,
        backend: Any,
        inputs: AsyncIterator[tuple[tuple[Any, ...], dict[str, Any]]],
        *,
        call_id: str,
        ordered: bool,
        retries: RetryPolicy | None,
        max_tasks: int,
        length_hint: int | None = None,
    ) -> None:
        self.prepared = prepared
        self.backend = backend
        self.inputs = inputs
        self.call_id = call_id
        self.ordered = ordered
        self.retries = retries
        self.max_tasks = max(1, max_tasks)
        self.length_hint = length_hint
        self.chunk_size = 1
        self.per_item_s: float | None = None
        self.item_bytes: int | None = None
        self.inflight: dict[Any, list[Item]] = {}
        self.inflight_inputs = 0
        self.attempts: dict[int, int] = {}
        self.retry_heap: list[tuple[float, int, Item]] = []
        self.pulled = 0
        self.exhausted = False
        self.buffer: dict[int, Any] = {}
        self.next_out = 0
        self.completed = 0

    # -- sizing -------------------------------------------------------------------------

    def _next_chunk_size(self) -> int:
        size = self.chunk_size
        if self.per_item_s is not None:
            size = int(TARGET_TASK_SECONDS / max(self.per_item_s, 1e-6))
        if self.item_bytes:
            size = min(size, MAX_CHUNK_BYTES // max(self.item_bytes, 1))
        if self.length_hint is not None:
            remaining = self.length_hint - self.pulled
            # Keep every task slot busy for the inputs that are left.
            size = min(size, -(-remaining // self.max_tasks))
        return max(1, min(size, MAX_CHUNK))

    def _record_timing(self, n: int, elapsed: float) -> None:
        per_item = elapsed / max(n, 1)
        self.per_item_s = per_item if self.per_item_s is None else 0.5 * self.per_item_s + 0.5 * per_item

    # -- submission ---------------------------------------------------------------------

    async def _pull(self, n: int) -> list[Item]:
        items: list[Item] = []
        while len(items) < n and not self.exhausted:
            try:
                args, kwargs = await self.inputs.__anext__()
            except StopAsyncIteration:
                self.exhausted = True
                break
            if self.item_bytes is None:
                self.item_bytes = _payload_size(args, kwargs)
            items.append((self.pulled, args, kwargs))
            self.pulled += 1
        return items

    def _submit(self, items: list[Item]) -> None:
        first = items[0][0]
        pending = self.prepared.submit_chunk([(a, k) for _, a, k in items], self.call_id, first)
        self.inflight[pending] = items
        self.inflight_inputs += len(items)

    async def _fill(self) -> None:
        now = time.monotonic()
        while self.retry_heap and self.retry_heap[0][0] <= now and len(self.inflight) < self.max_tasks:
            _, _, item = heapq.heappop(self.retry_heap)
            self._submit([item])
        while (
            not self.exhausted
            and len(self.inflight) < self.max_tasks
            and self.inflight_inputs < MAX_INFLIGHT_INPUTS
        ):
            items = await self._pull(self._next_chunk_size())
            if not items:
                break
            self._submit(items)

    # -- results ------------------------------------------------------------------------

    def _settle(self, index: int, outcome: Any, item: Item, out: list[tuple[int, Any]]) -> None:
        failed = isinstance(outcome, Failed)
        if failed and self.retries is not None:
            attempt = self.attempts.get(index, 0)
            retryable = not isinstance(outcome.error, RemoteFailure) or outcome.error.retryable
            if retryable and attempt < self.retries.max_retries:
                self.attempts[index] = attempt + 1
                due = time.monotonic() + self.retries.delay_for(attempt + 1)
                heapq.heappush(self.retry_heap, (due, index, item))
                return
        self.attempts.pop(index, None)
        self.completed += 1
        if self.ordered:
            self.buffer[index] = outcome
            while self.next_out in self.buffer:
                out.append((self.next_out, self.buffer.pop(self.next_out)))
                self.next_out += 1
        else:
            out.append((index, outcome))

    async def _collect(self, pending: Any, out: list[tuple[int, Any]]) -> None:
        items = self.inflight.pop(pending)
        self.inflight_inputs -= len(items)
        try:
            results, elapsed = await pending.result_async()
        except Error as exc:  # the task itself failed (worker died for good, lost result, ...)
            for item in items:
                self._settle(item[0], Failed(exc), item, out)
            return
        self._record_timing(len(items), elapsed)
        for item, value in zip(items, results, strict=True):
            self._settle(item[0], Failed(value) if type(value) is RemoteFailure else value, item, out)

    async def run(self) -> AsyncIterator[list[tuple[int, Any]]]:
        try:
            while True:
                await self._fill()
                if not self.inflight:
                    if self.retry_heap:
                        await asyncio.sleep(max(0.0, self.retry_heap[0][0] - time.monotonic()))
                        continue
                    return
                timeout = None
                if self.retry_heap:
                    timeout = max(0.0, self.retry_heap[0][0] - time.monotonic())
                done = await self.backend.wait_any(list(self.inflight), timeout)
                out: list[tuple[int, Any]] = []
                for pending in done:
                    await self._collect(pending, out)
                if out:
                    yield out
        finally:
            for pending in self.inflight:
                pending.cancel(force=False)
            self.inflight.clear()
