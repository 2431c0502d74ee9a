"""`modal.Queue`: a named or ephemeral, partitioned, multi-producer multi-consumer FIFO.

Shares its plumbing (references, pickling by name, `objects`, ephemeral contexts) with
`modal_ray.dict`. Semantics kept from Modal, including its quirks:

- `get(block=False)` on an empty partition returns None (the reference's wording; the guide says
  it raises), and `get_many(block=False)` returns `[]`;
- a blocking `get` / `get_many` raises the stdlib's `queue.Empty` when `timeout` passes, and a
  blocking `put` / `put_many` on a full partition raises `queue.Full` (at once with
  `block=False`);
- limits: 5,000 items per partition, 1 MiB per (pickled) item (`RequestSizeError`), 100,000
  partitions, partition keys of 1..64 UTF-8 bytes; each partition is cleared `partition_ttl`
  seconds (default 24 h) after its last put.

Waiting happens inside the store, one round trip per call; a wait longer than `_LONG_POLL_S` is
re-issued, so a caller that vanished never leaves a waiter behind for long, and a caller that gives
up (cancelled, interrupted) has the store put back whatever its `get` took.
"""

from __future__ import annotations

import builtins
import queue
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modal_ray import warn
from modal_ray.exception import InvalidError, RequestSizeError

from .store_object import MIB, Op, _StoreManager, _StoreObject, dumps, loads, new_request_id, op
from .synchronizer import DualContext, dual, dual_class_context, dual_static

QUEUE_MAX_ITEM_BYTES = 1 * MIB
QUEUE_MAX_ITEMS = 5_000
DEFAULT_PARTITION_TTL = 24 * 3600
_LONG_POLL_S = 50.0
_ITERATE_PAGE = 100


@dataclass
class QueueInfo:
    """Information about a Queue (`Queue.info()`)."""

    name: str | None
    created_at: datetime | None
    created_by: str | None


QueueInfo.__module__ = (
    "modal.queue"  # set after @dataclass, which looks the module up while it runs
)


class _QueueManager(_StoreManager):
    """`modal.Queue.objects`."""


def _partition(partition: str | None) -> str:
    Queue.validate_partition_key(partition)
    return partition or ""


def _items(vs: builtins.list[Any], method: str) -> builtins.list[bytes]:
    out = []
    for v in vs:
        data = dumps(v, "the item")
        if len(data) > QUEUE_MAX_ITEM_BYTES:
            raise RequestSizeError(
                f"Queue.{method} request is too large: an item is {len(data) / MIB:.2f} MiB"
                " pickled, over the 1 MiB limit per item. Put large data in a Volume or a Dict"
                " and queue a reference to it."
            )
        out.append(data)
    return out


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise InvalidError("`timeout` must be a non-negative number of seconds, or None.")
    return time.monotonic() + timeout


def _next_wait(deadline: float | None) -> float:
    if deadline is None:
        return _LONG_POLL_S
    return max(0.0, min(_LONG_POLL_S, deadline - time.monotonic()))


class Queue(_StoreObject):
    """Distributed, FIFO queue for data flow in Modal apps (here: persisted on the Ray cluster).

    Items are anything cloudpickle handles, Modal objects included. Partitions are independent
    FIFOs in one Queue; the default partition is separate from all named ones.
    """

    __module__ = "modal.queue"
    _kind = "queue"
    _label = "Queue"
    _id_prefix = "qu"

    objects = _QueueManager()
    _gets_wait = False  # this reference's last blocking get had to wait (a hint, per process)

    @staticmethod
    def from_name(
        name: str,
        *,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        client: Any = None,
    ) -> Queue:
        """Reference a named Queue, creating it on first use if `create_if_missing=True`."""
        return Queue._from_name(name, environment_name, create_if_missing)

    @staticmethod
    def from_id(queue_id: str, client: Any = None) -> Queue:
        """A Queue from its `object_id`."""
        return Queue._from_object_id(queue_id)

    @staticmethod
    def validate_partition_key(partition: str | None) -> bytes:
        """The partition key as bytes; `InvalidError` unless it is 1..64 bytes (or None)."""
        if partition is None:
            return b""
        if not isinstance(partition, str):
            raise InvalidError(
                f"Queue partition key must be a string, not {type(partition).__name__}."
            )
        key = partition.encode("utf-8")
        if len(key) == 0 or len(key) > 64:
            raise InvalidError("Queue partition key must be between 1 and 64 bytes.")
        return key

    @dual_class_context
    def ephemeral(
        cls: type[Queue],
        client: Any = None,
        environment_name: str | None = None,
        _heartbeat_sleep: float = 300,
    ) -> DualContext[Queue]:
        """Create an anonymous Queue that exists for the duration of the context manager.

        `with modal.Queue.ephemeral() as q:` or `async with modal.Queue.ephemeral() as q:`; the
        Queue and its items are deleted when the block exits (or when the creating process ends).
        """
        return cls._ephemeral(environment_name)

    @dual_static
    async def delete(name: str, *, client: Any = None, environment_name: str | None = None) -> None:
        """Deprecated: use `modal.Queue.objects.delete`."""
        warn.deprecation(
            "Queue.delete",
            "`modal.Queue.delete` is deprecated; use `modal.Queue.objects.delete` instead.",
        )
        await Queue.objects.delete.aio(name, environment_name=environment_name)

    @dual_static
    async def lookup(
        name: str,
        namespace: Any = None,
        client: Any = None,
        environment_name: str | None = None,
        create_if_missing: bool = False,
    ) -> Queue:
        """Deprecated: use `modal.Queue.from_name` (and `.hydrate()`)."""
        warn.deprecation(
            "Queue.lookup",
            "`modal.Queue.lookup` is deprecated; use `modal.Queue.from_name(...)` instead (it is"
            " lazy: call `.hydrate()` to check that the Queue exists).",
        )
        q = Queue.from_name(
            name, environment_name=environment_name, create_if_missing=create_if_missing
        )
        await q.hydrate.aio()
        return q

    # -- operations -----------------------------------------------------------------------

    @op
    def info(self) -> Op[QueueInfo]:
        """Return information about the Queue object."""
        created_at = yield from self._created_at()
        return QueueInfo(name=self.name, created_at=created_at, created_by=None)

    @op
    def clear(self, *, partition: str | None = None, all: bool = False) -> Op[None]:
        """Clear the contents of a single partition or of all partitions."""
        if partition and all:
            raise InvalidError("Partition must be null when requesting to clear all.")
        yield ("clear", _partition(partition), all)

    @op
    def get(
        self, block: bool = True, timeout: float | None = None, *, partition: str | None = None
    ) -> Op[Any]:
        """Remove and return the next item.

        Blocking (the default): wait for an item, up to `timeout` seconds if given, then raise
        `queue.Empty`. With `block=False`: return None at once if the partition is empty.
        """
        values = yield from self._get(1, block, timeout, partition)
        return values[0] if values else None

    @op
    def get_many(
        self,
        n_values: int,
        block: bool = True,
        timeout: float | None = None,
        *,
        partition: str | None = None,
    ) -> Op[builtins.list[Any]]:
        """Remove and return up to `n_values` items (waiting for at least one when blocking).

        Raises `queue.Empty` when a blocking call's `timeout` passes; with `block=False` returns
        `[]` at once if the partition is empty.
        """
        if not isinstance(n_values, int) or n_values < 1:
            raise InvalidError(f"`n_values` must be a positive integer, not {n_values!r}.")
        return (yield from self._get(n_values, block, timeout, partition))

    def _get(
        self, n: int, block: bool, timeout: float | None, partition: str | None
    ) -> Op[builtins.list[Any]]:
        key = _partition(partition)
        rid = new_request_id()
        if not block:
            if timeout is not None:
                warnings.warn("Timeout is ignored for non-blocking get.", stacklevel=4)
            data = yield ("get", key, n, rid)
            return [loads(d) for d in data]
        deadline = _deadline(timeout)
        if not self._gets_wait:
            # While gets find items, a blocking get first tries the store's ordinary call path,
            # which is cheaper than its path for calls that may wait.
            data = yield ("get", key, n, rid)
            if data:
                return [loads(d) for d in data]
        while True:
            # The same request id across re-issued waits: a retry after an actor restart
            # returns the items the first attempt took.
            data, waited = yield ("get_wait", key, n, _next_wait(deadline), rid)
            if data:
                self._gets_wait = waited  # back to the cheaper path once items are waiting
                return [loads(d) for d in data]
            self._gets_wait = True
            if deadline is not None and time.monotonic() >= deadline:
                raise queue.Empty()

    @op
    def put(
        self,
        v: Any,
        block: bool = True,
        timeout: float | None = None,
        *,
        partition: str | None = None,
        partition_ttl: int = DEFAULT_PARTITION_TTL,
    ) -> Op[None]:
        """Add an item to the end of the partition.

        When the partition is full (5,000 items): wait for room, up to `timeout` seconds if
        given, then raise `queue.Full`; with `block=False` raise `queue.Full` at once.
        """
        yield from self._put([v], block, timeout, partition, partition_ttl, "put")

    @op
    def put_many(
        self,
        vs: builtins.list[Any],
        block: bool = True,
        timeout: float | None = None,
        *,
        partition: str | None = None,
        partition_ttl: int = DEFAULT_PARTITION_TTL,
    ) -> Op[None]:
        """Add several items to the end of the partition, atomically (all or none)."""
        yield from self._put(
            builtins.list(vs), block, timeout, partition, partition_ttl, "put_many"
        )

    def _put(
        self,
        vs: builtins.list[Any],
        block: bool,
        timeout: float | None,
        partition: str | None,
        partition_ttl: float,
        method: str,
    ) -> Op[None]:
        key = _partition(partition)
        if not isinstance(partition_ttl, (int, float)) or partition_ttl <= 0:
            raise InvalidError(
                f"`partition_ttl` must be a positive number of seconds, not {partition_ttl!r}."
            )
        if len(vs) > QUEUE_MAX_ITEMS:
            raise InvalidError(
                f"`Queue.{method}` of {len(vs):,} items can never fit: a partition holds at most"
                f" {QUEUE_MAX_ITEMS:,} items. Put them in smaller batches."
            )
        if not vs:
            return
        data = _items(vs, method)
        rid = new_request_id()
        ttl = float(partition_ttl)
        deadline = _deadline(timeout) if block else None
        if (yield ("put", key, data, ttl, rid)):
            return  # room at once: the common case, on the store's ordinary call path
        if not block:
            raise queue.Full()
        while True:
            if (yield ("put_wait", key, data, ttl, _next_wait(deadline), rid)):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise queue.Full()

    @op
    def len(self, *, partition: str | None = None, total: bool = False) -> Op[int]:
        """Number of items in the partition, or in all partitions with `total=True`."""
        if partition and total:
            raise InvalidError("Partition must be null when requesting total length.")
        return int((yield ("len", _partition(partition), total)))

    @dual
    async def iterate(
        self, *, partition: str | None = None, item_poll_timeout: float = 0.0
    ) -> AsyncIterator[Any]:
        """(Beta) Iterate through the items without removing them.

        Stops when no new item arrives within `item_poll_timeout` seconds.
        """
        key = _partition(partition)
        after = 0
        while True:
            if item_poll_timeout > 0:
                page = await self._call(
                    "peek_wait", key, after, _ITERATE_PAGE, float(item_poll_timeout)
                )
            else:
                page = await self._call("peek", key, after, _ITERATE_PAGE)
            if not page:
                return
            for item_id, data in page:
                yield loads(data)
                after = item_id


_QueueManager._cls = Queue
