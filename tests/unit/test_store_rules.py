"""Dict/Queue rules that need no Ray: names, partition keys, size limits, references, and the
SQLite servers themselves (run in-process over a temporary file, as the CLI's direct mode does).
"""

from __future__ import annotations

import asyncio
import pickle
import time
from pathlib import Path

import cloudpickle
import pytest

import modal
from modal.exception import InvalidError, NotFoundError, RequestSizeError
from modal_ray.backends.ray.store import QUEUE_MAX_ITEMS, DictServer, QueueServer

MIB = 1024 * 1024


# -- names, keys, limits (checked before anything is sent) -------------------------------------


@pytest.mark.parametrize("name", ["", "a" * 65, "has space", "slash/name", "-leading", "ünï"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidError):
        modal.Dict.from_name(name)
    with pytest.raises(InvalidError):
        modal.Queue.from_name(name)


@pytest.mark.parametrize("name", ["a", "a" * 64, "my-dict_1.v2", "0start"])
def test_valid_names(name: str) -> None:
    assert modal.Dict.from_name(name).name == name
    assert modal.Queue.from_name(name).name == name


def test_partition_key_rules() -> None:
    assert modal.Queue.validate_partition_key(None) == b""
    assert modal.Queue.validate_partition_key("p") == b"p"
    assert modal.Queue.validate_partition_key("x" * 64) == b"x" * 64
    assert modal.Queue.validate_partition_key("é" * 32) == "é".encode() * 32  # 64 bytes
    for bad in ("", "x" * 65, "é" * 33):
        with pytest.raises(InvalidError, match="between 1 and 64 bytes"):
            modal.Queue.validate_partition_key(bad)
    q = modal.Queue.from_name("never-created")
    with pytest.raises(InvalidError):
        q.put(1, partition="")
    with pytest.raises(InvalidError):
        q.get(partition="x" * 65)


def test_queue_item_size_limit_is_checked_before_sending() -> None:
    q = modal.Queue.from_name("never-created")
    with pytest.raises(RequestSizeError, match="1 MiB"):
        q.put(b"x" * (MIB + 1))
    with pytest.raises(RequestSizeError, match="put_many"):
        q.put_many([1, b"x" * (2 * MIB)])
    with pytest.raises(InvalidError, match="5,000"):
        q.put_many(list(range(QUEUE_MAX_ITEMS + 1)))


def test_argument_rules() -> None:
    q = modal.Queue.from_name("never-created")
    with pytest.raises(InvalidError, match="total length"):
        q.len(partition="a", total=True)
    with pytest.raises(InvalidError, match="clear all"):
        q.clear(partition="a", all=True)
    with pytest.raises(InvalidError, match="n_values"):
        q.get_many(0)
    with pytest.raises(InvalidError, match="partition_ttl"):
        q.put(1, partition_ttl=0)
    d = modal.Dict.from_name("never-created")
    with pytest.raises(InvalidError, match="10,000"):
        d.update({i: i for i in range(10_001)})


def test_dict_value_size_limit() -> None:
    d = modal.Dict.from_name("never-created")
    with pytest.raises(RequestSizeError, match="100 MiB"):
        d.put("big", b"x" * (100 * MIB + 1))


# -- references ------------------------------------------------------------------------------


def test_objects_pickle_to_references() -> None:
    d = modal.Dict.from_name("shared", environment_name="staging", create_if_missing=True)
    q = modal.Queue.from_name("work")
    d2 = cloudpickle.loads(cloudpickle.dumps(d))
    assert type(d2) is modal.Dict
    assert (d2.name, d2._ref, d2._create_if_missing) == ("shared", d._ref, True)
    assert pickle.loads(pickle.dumps(q))._ref == q._ref
    # Deterministic bytes: a Dict can be a key of a Dict.
    assert cloudpickle.dumps(d) == cloudpickle.dumps(
        modal.Dict.from_name("shared", environment_name="staging", create_if_missing=True)
    )
    assert len(cloudpickle.dumps(d)) < 400  # a reference, not contents


def test_object_ids_round_trip() -> None:
    d = modal.Dict.from_name("some-dict", environment_name="dev")
    assert d.object_id.startswith("di-")
    again = modal.Dict.from_id(d.object_id)
    assert (again.name, again._ref.environment) == ("some-dict", "dev")
    q = modal.Queue.from_name("some-queue")
    assert q.object_id.startswith("qu-")
    assert modal.Queue.from_id(q.object_id).name == "some-queue"
    with pytest.raises(InvalidError):
        modal.Queue.from_id(d.object_id)


def test_public_homes_and_signatures() -> None:
    assert modal.Dict.__module__ == "modal.dict"
    assert modal.Queue.__module__ == "modal.queue"
    from modal.dict import Dict
    from modal.queue import Queue

    assert Dict is modal.Dict
    assert Queue is modal.Queue
    assert repr(modal.Dict.from_name("x")) == "Dict.from_name('x')"
    for method in ("get", "put", "pop", "keys", "items", "len", "update", "clear", "info"):
        assert hasattr(getattr(modal.Dict.from_name("x"), method), "aio"), method
    for method in ("get", "get_many", "put", "put_many", "len", "clear", "iterate", "info"):
        assert hasattr(getattr(modal.Queue.from_name("x"), method), "aio"), method
    assert hasattr(modal.Dict.ephemeral, "aio")
    assert hasattr(modal.Queue.ephemeral, "aio")
    assert hasattr(modal.Dict.objects.list, "aio")


# -- the SQLite servers, in-process ----------------------------------------------------------


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_dict_server_persists_and_expires(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sqlite")

    async def write() -> None:
        s = DictServer(path, ttl_s=3600)
        with pytest.raises(NotFoundError):
            await s.get(False, b"k")
        assert await s.open(True) is False
        assert await s.put(False, b"k", b"v", False, "r1") is True
        assert await s.put(False, b"k", b"w", True, "r2") is False
        assert await s.put(False, b"k", b"w", True, "r2") is False  # retried: same answer
        await s.update(False, [(b"a", b"1"), (b"b", b"2")])
        assert await s.pop(False, b"a", "r3") == b"1"
        assert await s.pop(False, b"a", "r3") == b"1"  # a retried pop returns the first answer
        assert await s.pop(False, b"a", "r4") is None
        assert await s.len(False) == 2

    async def read() -> None:
        s = DictServer(path, ttl_s=3600)
        assert await s.get(False, b"k") == b"v"
        assert sorted((k, v) for _, k, v in await s.scan(False, 0, 10)) == [
            (b"b", b"2"),
            (b"k", b"v"),
        ]
        short = DictServer(path, ttl_s=0.2)  # the same file seen with a short TTL
        await asyncio.sleep(0.3)
        assert await short.get(False, b"k") is None
        assert await short.len(False) == 0

    run(write())
    run(read())  # a fresh server over the same file: what a restarted actor sees


def test_queue_server_fifo_limits_partitions_and_retries(tmp_path: Path) -> None:
    path = str(tmp_path / "q.sqlite")

    async def main() -> None:
        s = QueueServer(path)
        await s.open(True)
        assert await s.put(False, "", [b"1", b"2", b"3"], 60.0, False, None, "p1")
        assert await s.put(False, "", [b"1", b"2", b"3"], 60.0, False, None, "p1")  # retried
        assert await s.put(False, "other", [b"x"], 60.0, False, None, "p2")
        assert await s.len(False, "", False) == 3
        assert await s.len(False, None, True) == 4
        assert await s.get(False, "", 2, False, None, "g1") == [b"1", b"2"]
        # A retried get (same request id) returns the same items, and takes nothing more.
        assert await s.get(False, "", 2, False, None, "g1") == [b"1", b"2"]
        assert await s.len(False, "", False) == 1
        assert await s.peek(False, "", 0, 10, 0.0) != []
        assert await s.get(False, "", 5, False, None, "g2") == [b"3"]
        assert await s.get(False, "", 5, False, None, "g3") == []
        assert await s.get(False, "other", 5, False, None, "g4") == [b"x"]
        # Full partition: refused without blocking, then times out when blocking.
        big = [b"i"] * QUEUE_MAX_ITEMS
        assert await s.put(False, "full", big, 60.0, False, None, "p3")
        assert not await s.put(False, "full", [b"more"], 60.0, False, None, "p4")
        t0 = time.monotonic()
        assert not await s.put(False, "full", [b"more"], 60.0, True, 0.3, "p5")
        assert 0.25 <= time.monotonic() - t0 < 2
        # A blocked put proceeds as soon as a get makes room.
        waiter = asyncio.ensure_future(s.put(False, "full", [b"more"], 60.0, True, 5.0, "p6"))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await s.get(False, "full", 1, False, None, "g5")
        assert await asyncio.wait_for(waiter, 2) is True
        await s.clear(False, None, True)
        assert await s.len(False, None, True) == 0
        # Partition TTL: cleared after its last put.
        await s.put(False, "short", [b"a"], 0.2, False, None, "p7")
        await asyncio.sleep(0.3)
        assert await s.len(False, "short", False) == 0
        assert await s.get(False, "short", 1, False, None, "g6") == []
        await s.destroy(False)

    run(main())
    assert not Path(path).exists()


def test_queue_server_blocking_get_wakes_on_put(tmp_path: Path) -> None:
    async def main() -> None:
        s = QueueServer(str(tmp_path / "q.sqlite"))
        await s.open(True)
        getter = asyncio.ensure_future(s.get(False, "", 1, True, 5.0, "g1"))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        await s.put(False, "", [b"hello"], 60.0, False, None, "p1")
        assert await asyncio.wait_for(getter, 2) == [b"hello"]
        assert time.monotonic() - t0 < 0.2  # woken by the put, not by the periodic re-check
        t0 = time.monotonic()
        assert await s.get(False, "", 1, True, 0.3, "g2") is None
        assert 0.25 <= time.monotonic() - t0 < 2

    run(main())
