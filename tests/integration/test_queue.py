"""`modal.Queue` on a real local Ray: many producers and consumers, blocking semantics and
timeouts, partitions, limits, durability when the actor is killed, and ephemeral queues handed to
spawned functions."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import ray

import modal
from modal.exception import InvalidError, NotFoundError, RequestSizeError

app = modal.App("test-queue")

N_PRODUCERS = 4
N_CONSUMERS = 4
PER_PRODUCER = 5_000  # 20,000 items in all: more than one partition holds (5,000)
BATCH = 100


@app.function(cpu=0.25)
def producer(q: modal.Queue, pid: int) -> int:
    sent = 0
    for start in range(0, PER_PRODUCER, BATCH):
        # Blocks (inside the queue's actor) whenever the partition is full.
        q.put_many([(pid, i) for i in range(start, start + BATCH)], timeout=60)
        sent += BATCH
    return sent


@app.function(cpu=0.25)
def consumer(q: modal.Queue, flags: modal.Dict) -> list[tuple[int, int]]:
    got: list[tuple[int, int]] = []
    while True:
        # Read the flag before the get: if producers were done before an empty get, the queue
        # is empty for good.
        done = "done" in flags
        try:
            got.extend(q.get_many(BATCH, timeout=0.5))
        except queue.Empty:
            if done:
                return got


@app.function(cpu=0.25)
def report_back(q: modal.Queue, value: str) -> None:
    q.put(f"hello from {value}")


@pytest.fixture(scope="module")
def running() -> Iterator[modal.App]:
    with app.run():
        yield app


@pytest.fixture(scope="module")
def shared_queue() -> Iterator[modal.Queue]:
    # One Queue (one actor) for the module; each test starts from it cleared. Hydrated up front,
    # so timings below measure waits, not the actor's start.
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield modal.Queue.from_name(name, create_if_missing=True).hydrate()
    modal.Queue.objects.delete(name, allow_missing=True)


@pytest.fixture
def q(shared_queue: modal.Queue) -> modal.Queue:
    shared_queue.clear(all=True)
    return shared_queue


def test_many_producers_and_consumers_lose_and_duplicate_nothing(
    running: modal.App, q: modal.Queue
) -> None:
    with modal.Dict.ephemeral() as flags:
        consumers = [consumer.spawn(q, flags) for _ in range(N_CONSUMERS)]
        producers = [producer.spawn(q, p) for p in range(N_PRODUCERS)]
        assert [p.get(timeout=120) for p in producers] == [PER_PRODUCER] * N_PRODUCERS
        flags["done"] = True
        results = [c.get(timeout=120) for c in consumers]
    received = [tuple(item) for batch in results for item in batch]
    counts = Counter(received)
    expected = {(p, i) for p in range(N_PRODUCERS) for i in range(PER_PRODUCER)}
    assert len(received) == N_PRODUCERS * PER_PRODUCER
    assert set(counts) == expected  # none lost
    assert max(counts.values()) == 1  # none duplicated
    assert sum(1 for r in results if r) >= 2  # the work was shared
    # FIFO per producer: each consumer sees one producer's items in order.
    for batch in results:
        for p in range(N_PRODUCERS):
            seq = [i for (pp, i) in map(tuple, batch) if pp == p]
            assert seq == sorted(seq)
    assert q.len(total=True) == 0


def test_blocking_get_times_out_or_wakes(q: modal.Queue) -> None:
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=1)
    assert time.monotonic() - t0 >= 1  # it waited its timeout, not less
    with pytest.raises(queue.Empty):
        q.get_many(10, timeout=0.5)
    assert q.get(block=False) is None
    assert q.get_many(3, block=False) == []
    with pytest.warns(UserWarning, match="ignored"):
        assert q.get(block=False, timeout=1) is None

    timer = threading.Timer(0.5, lambda: modal.Queue.from_name(q.name).put("late"))
    timer.start()
    assert q.get(timeout=60) == "late"  # woken by the put (a timeout would raise queue.Empty)
    timer.join()


def test_full_partition_blocks_puts(q: modal.Queue) -> None:
    q.put_many(list(range(5_000)), partition="full")
    with pytest.raises(queue.Full):
        q.put("one more", partition="full", block=False)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put("one more", partition="full", timeout=0.5)
    assert time.monotonic() - t0 >= 0.5  # it waited its timeout, not less
    threading.Timer(0.5, lambda: q.get(partition="full")).start()
    q.put("made room", partition="full", timeout=10)
    assert q.len(partition="full") == 5_000
    q.put("other partitions are not full", partition="free", block=False)


def test_partitions_are_independent(q: modal.Queue) -> None:
    q.put(0)
    q.put(1, partition="foo")
    q.put(2, partition="bar")
    assert q.get(partition="bar") == 2
    assert q.len() == 1
    assert q.len(partition="foo") == 1
    assert q.len(total=True) == 2
    assert q.get(partition="bar", block=False) is None
    q.put(1)
    assert list(q.iterate()) == [0, 1]  # non-destructive
    assert q.len() == 2
    q.clear(partition="foo")
    assert q.len(partition="foo") == 0
    assert q.len() == 2
    q.clear()
    assert q.len() == 0
    q.put_many(["a", "b"], partition="x")
    q.put("c", partition="y")
    q.clear(all=True)
    assert q.len(total=True) == 0


def test_partition_ttl_expires(q: modal.Queue) -> None:
    # A partition expires `partition_ttl` after its last put, with all its items. The first put's
    # long TTL keeps the check that it was stored independent of how fast the machine is.
    q.put("first", partition="ttl", partition_ttl=600)
    q.put("long", partition="keep")
    assert q.len(partition="ttl") == 1
    q.put("last", partition="ttl", partition_ttl=1)
    time.sleep(1.5)
    assert q.len(partition="ttl") == 0
    assert q.get(partition="ttl", block=False) is None
    assert q.get(partition="keep") == "long"


def test_oversized_item_is_refused_and_disturbs_nothing(q: modal.Queue) -> None:
    q.put_many(["first", "second"])
    with pytest.raises(RequestSizeError, match="1 MiB"):
        q.put(b"x" * (1024 * 1024 + 1))
    with pytest.raises(RequestSizeError):
        q.put_many(["ok", b"x" * (2 * 1024 * 1024)])  # all or nothing
    assert q.len() == 2
    assert q.get_many(10) == ["first", "second"]
    q.put(b"x" * (1024 * 1024 - 100))  # just under the limit (with pickle overhead)
    assert len(q.get()) == 1024 * 1024 - 100


def test_iterate_waits_for_new_items(q: modal.Queue) -> None:
    q.put("a")
    threading.Timer(0.3, lambda: q.put("b")).start()
    assert list(q.iterate(item_poll_timeout=1.0)) == ["a", "b"]
    assert q.len() == 2


def test_queue_aio(q: modal.Queue) -> None:
    async def main() -> None:
        await q.put.aio(1)
        await q.put_many.aio([2, 3], partition="p")
        assert await q.len.aio(total=True) == 3
        assert await q.get.aio() == 1
        assert await q.get_many.aio(5, partition="p") == [2, 3]
        with pytest.raises(queue.Empty):
            await q.get.aio(timeout=0.2)
        # Other coroutines run while a get waits.
        getter = asyncio.ensure_future(q.get.aio(timeout=10))
        await asyncio.sleep(0.2)
        assert not getter.done()
        await q.put.aio("woke")
        assert await getter == "woke"
        assert [x async for x in q.iterate.aio()] == []
        await q.clear.aio(all=True)
        assert (await q.info.aio()).name == q.name

    asyncio.run(main())


def test_a_get_given_up_takes_nothing(q: modal.Queue) -> None:
    async def main() -> None:
        # The get waits inside the Queue's actor; its caller gives up meanwhile.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.get.aio(timeout=60), 0.5)
        await q.put.aio("after")
        items = [await q.get.aio(timeout=10)]
        # ... and a caller interrupted after its get took items gets them put back.
        await q.put_many.aio(["x", "y"])
        getter = asyncio.ensure_future(q.get_many.aio(2, timeout=60))
        await asyncio.sleep(0)
        getter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await getter
        items += await q.get_many.aio(2, timeout=10)
        assert items == ["after", "x", "y"]

    asyncio.run(main())
    assert q.len() == 0


def test_values_include_modal_objects(q: modal.Queue) -> None:
    q.put(modal)
    q.put(q)
    q.put(lambda x: x + 1)
    assert q.get().Queue is modal.Queue
    same = q.get()
    assert isinstance(same, modal.Queue)
    assert same.name == q.name
    assert q.get()(1) == 2


def test_items_survive_actor_kill(q: modal.Queue) -> None:
    q.put_many(list(range(50)))
    q.put("p", partition="part")
    ray.kill(ray.get_actor(f"modal-queue.{q.name}", namespace="modal-main"))
    assert q.len(total=True) == 51
    assert q.get_many(100) == list(range(50))
    assert q.get(partition="part") == "p"


def test_ephemeral_queue_returns_value_from_spawned_function(running: modal.App) -> None:
    with modal.Queue.ephemeral() as eq:
        call = report_back.spawn(eq, "a worker")
        assert eq.get(timeout=60) == "hello from a worker"
        call.get(timeout=60)
    with pytest.raises(NotFoundError, match="ephemeral"):
        eq.put(1)

    async def main() -> None:
        async with modal.Queue.ephemeral() as aq:
            await aq.put.aio("x")
            assert await aq.get.aio() == "x"

    asyncio.run(main())


def test_lifecycle_and_errors() -> None:
    name = f"life-{uuid.uuid4().hex[:8]}"
    with pytest.raises(NotFoundError):
        modal.Queue.from_name(name).put(1)
    modal.Queue.objects.create(name)
    q = modal.Queue.from_name(name)
    q.put(1)
    assert name in [x.name for x in modal.Queue.objects.list()]
    assert modal.Queue.from_id(q.object_id).get() == 1
    with pytest.raises(InvalidError):
        q.len(partition="a", total=True)
    modal.Queue.objects.delete(name)
    with pytest.raises(NotFoundError):
        q.get(block=False)
