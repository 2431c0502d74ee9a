"""The `.map` engine: lazy input pulling, automatic chunking, bounded in-flight work, retries.

Inputs are pulled from the caller's iterator only as capacity frees up, so a 1,000,000-input
generator streams in constant memory. Small inputs are grouped into one engine task per chunk: the
chunk size starts at 1 and adapts so each task runs about `TARGET_TASK_SECONDS` of work (measured
by the worker), capped by payload size and by how many inputs remain when that is known. A failed
input is retried on its own, after Modal's backoff delay, without holding up the others.

How many engine tasks may be in flight comes from the caller (`max_tasks`): for a task-backed
function the cluster's worker slots; for a container pool its capacity, containers times the
inputs one container takes at once (`container_slots`), so a map keeps every `@modal.concurrent`
slot busy and every `@modal.batched` batcher full, as Modal does. A chunk sent to a container runs
its inputs concurrently there (up to `max_inputs`, or into the batcher), never one after another
unless the container runs one input at a time.

Results come back in batches (lists of outcomes) so the synchronous iterator crosses the
event-loop thread once per batch, not once per input. Ordered output keeps finished chunks as
blocks keyed by their first index and releases them when every earlier input is done.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import RemoteFailure
from .exception import Error
from .specs import RetryPolicy

if TYPE_CHECKING:
    from modal_ray.backends import Backend, Prepared

TARGET_TASK_SECONDS = 0.05
MAX_CHUNK = 2000
MAX_CHUNK_BYTES = 16 * 1024 * 1024
MAX_INFLIGHT_INPUTS = 100_000


def container_slots(max_inputs: int | None, batch_max_size: int | None) -> int:
    """How many inputs of a map one container should hold at once.

    A `@modal.concurrent(max_inputs=N)` container runs N inputs at once. A `@modal.batched`
    container runs up to `max_inputs` batches at once and fills the next batch meanwhile, so it
    holds one batch more than it runs (otherwise it would idle between batches).
    """
    concurrent = max(1, max_inputs or 1)
    if batch_max_size:
        return batch_max_size * (concurrent + 1)
    return concurrent


@dataclass(slots=True)
class Failed:
    """An input whose final outcome is an exception (local or remote)."""

    error: BaseException | RemoteFailure


def _payload_size(args: tuple[Any, ...]) -> int:
    return sum(sys.getsizeof(a) for a in args)


class MapEngine:
    def __init__(
        self,
        prepared: Prepared,
        backend: Backend,
        inputs: Iterator[tuple[Any, ...]] | AsyncIterator[tuple[Any, ...]],
        kwargs: dict[str, Any],
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
        self.is_async = hasattr(inputs, "__anext__")
        self.kwargs = kwargs
        self.call_id = call_id
        self.ordered = ordered
        self.retries = retries
        self.max_tasks = max(1, max_tasks)
        self.length_hint = length_hint
        self.per_item_s: float | None = None
        self.item_bytes: int | None = None
        # pending -> (first index, args of each input)
        self.inflight: dict[Any, tuple[int, list[tuple[Any, ...]]]] = {}
        self.inflight_inputs = 0
        self.attempts: dict[int, int] = {}
        self.retry_heap: list[tuple[float, int, tuple[Any, ...]]] = []
        self.pulled = 0
        self.exhausted = False
        self.blocks: dict[int, list[Any]] = {}  # ordered mode: first index -> outcomes
        self.buffered = 0  # outcomes held in `blocks`
        self.next_out = 0

    # -- sizing -------------------------------------------------------------------------

    def _next_chunk_size(self) -> int:
        if self.per_item_s is None:
            return 1
        size = int(TARGET_TASK_SECONDS / max(self.per_item_s, 1e-7))
        if self.item_bytes:
            size = min(size, MAX_CHUNK_BYTES // max(self.item_bytes, 1))
        if self.length_hint is not None:
            remaining = self.length_hint - self.pulled
            # Keep every task slot busy for the inputs that are left.
            size = min(size, -(-remaining // self.max_tasks))
        return max(1, min(size, MAX_CHUNK))

    def _record_timing(self, n: int, elapsed: float) -> None:
        per_item = elapsed / max(n, 1)
        self.per_item_s = (
            per_item if self.per_item_s is None else 0.5 * self.per_item_s + 0.5 * per_item
        )

    # -- submission ---------------------------------------------------------------------

    async def _pull(self, n: int) -> list[tuple[Any, ...]]:
        if self.is_async:
            items: list[tuple[Any, ...]] = []
            while len(items) < n:
                try:
                    items.append(await self.inputs.__anext__())  # type: ignore[union-attr]
                except StopAsyncIteration:
                    self.exhausted = True
                    break
        else:
            items = list(itertools.islice(self.inputs, n))  # type: ignore[arg-type]
            if len(items) < n:
                self.exhausted = True
        if items and self.item_bytes is None:
            self.item_bytes = _payload_size(items[0])
        return items

    def _submit(self, first: int, args_list: list[tuple[Any, ...]]) -> None:
        pending = self.prepared.submit_chunk(args_list, self.kwargs, self.call_id, first)
        self.inflight[pending] = (first, args_list)
        self.inflight_inputs += len(args_list)

    async def _fill(self) -> None:
        now = time.monotonic()
        while (
            self.retry_heap and self.retry_heap[0][0] <= now and len(self.inflight) < self.max_tasks
        ):
            _, index, args = heapq.heappop(self.retry_heap)
            self._submit(index, [args])
        # Inputs pulled but not yet handed to the caller: in flight, or finished out of order.
        while (
            not self.exhausted
            and len(self.inflight) < self.max_tasks
            and self.inflight_inputs + self.buffered < MAX_INFLIGHT_INPUTS
        ):
            items = await self._pull(self._next_chunk_size())
            if not items:
                break
            self._submit(self.pulled, items)
            self.pulled += len(items)

    # -- results ------------------------------------------------------------------------

    def _retry_later(self, index: int, args: tuple[Any, ...], outcome: Failed) -> bool:
        if self.retries is None:
            return False
        err = outcome.error
        if isinstance(err, RemoteFailure) and not err.retryable:
            return False
        attempt = self.attempts.get(index, 0)
        if attempt >= self.retries.max_retries:
            self.attempts.pop(index, None)
            return False
        self.attempts[index] = attempt + 1
        due = time.monotonic() + self.retries.delay_for(attempt + 1)
        heapq.heappush(self.retry_heap, (due, index, args))
        return True

    def _settle(self, first: int, outcomes: list[Any], out: list[Any]) -> None:
        """Release a run of consecutive finished inputs starting at `first`."""
        if not outcomes:
            return
        if not self.ordered:
            out.extend(outcomes)
            return
        self.blocks[first] = outcomes
        self.buffered += len(outcomes)
        while self.next_out in self.blocks:
            block = self.blocks.pop(self.next_out)
            self.buffered -= len(block)
            out.extend(block)
            self.next_out += len(block)

    async def _collect(self, pending: Any, out: list[Any]) -> None:
        first, args_list = self.inflight.pop(pending)
        self.inflight_inputs -= len(args_list)
        try:
            results, elapsed = await pending.result_async()
        except Error as exc:  # the task itself failed (worker died for good, lost result, ...)
            results = [Failed(exc)] * len(args_list)
        else:
            self._record_timing(len(args_list), elapsed)
            if not any(type(r) is RemoteFailure for r in results):
                self._settle(first, results, out)
                return
            results = [Failed(r) if type(r) is RemoteFailure else r for r in results]
        # Some inputs failed: inputs being retried leave a gap that their retry fills later.
        run_start = first
        run: list[Any] = []
        for offset, (outcome, args) in enumerate(zip(results, args_list, strict=True)):
            index = first + offset
            if isinstance(outcome, Failed) and self._retry_later(index, args, outcome):
                self._settle(run_start, run, out)
                run_start, run = index + 1, []
                continue
            run.append(outcome)
        self._settle(run_start, run, out)

    async def run(self) -> AsyncIterator[list[Any]]:
        """Yield batches of outcomes (values or `Failed`), in input order if `ordered`."""
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
                out: list[Any] = []
                for pending in done:
                    await self._collect(pending, out)
                if out:
                    yield out
        finally:
            for pending in self.inflight:
                pending.cancel(force=False)
            self.inflight.clear()
