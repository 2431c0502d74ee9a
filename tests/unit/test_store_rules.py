"""Dict/Queue rules that need no Ray: names, partition keys, size limits, references, and the
storage servers themselves (`modal_ray.storage`, run in-process over a temporary file, as the
CLI's direct mode does): TTLs, FIFO, partitions, limits, retries, releases, blocking waits and
group commit.
"""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import modal
from modal.exception import InvalidError, NotFoundError, RequestSizeError
from modal_ray.storage import QUEUE_MAX_ITEMS, Database, DictServer, QueueServer, server

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


# -- the storage servers, in-process -----------------------------------------------------------


def test_storage_rules_import_no_engine() -> None:
    # The servers are engine-neutral: the backend only hosts them.
    code = (
        "import sys, modal_ray.storage, modal_ray.storage.local;"
        " assert 'ray' not in sys.modules, 'modal_ray.storage imported ray'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


class _Thread(threading.Thread):
    """Runs `fn` and keeps its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> Any:
        self.join(10)  # a guard against a hang, not a timing check
        assert not self.is_alive(), "the call did not return"
        if self.error is not None:
            raise self.error
        return self.result


def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def _count_waits(s: QueueServer) -> list[object]:
    """Observe the server's waits: the list grows by the key of each wait as it starts."""
    waiting: list[object] = []
    wait = s.waiters.wait

    def counted(key: Any, version: tuple[int, int], timeout: float) -> None:
        waiting.append(key)
        wait(key, version, timeout)

    s.waiters.wait = counted  # type: ignore[method-assign]
    return waiting


def test_dict_server_persists_and_expires(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    s = DictServer(path, ttl_s=3600)
    with pytest.raises(NotFoundError):
        s.get(False, b"k")
    assert s.open(True) is False
    assert s.open(False) is True
    assert s.put(False, b"k", b"v", False, "") is True
    assert s.put(False, b"k", b"w", True, "r2") is False
    assert s.put(False, b"k", b"w", True, "r2") is False  # retried: same answer
    assert s.put(False, b"new", b"1", True, "r3") is True
    assert s.pop(False, b"new", "r4") == b"1"
    s.update(False, [(b"a", b"1"), (b"b", b"2")])
    assert s.pop(False, b"a", "r5") == b"1"
    assert s.pop(False, b"a", "r5") == b"1"  # a retried pop returns the first answer
    assert s.pop(False, b"a", "r6") is None
    assert s.len(False) == 2
    assert s.contains(False, b"k")
    assert not s.contains(False, b"a")

    again = DictServer(path, ttl_s=3600)  # a fresh server over the same file: a restarted host
    assert again.get(False, b"k") == b"v"
    assert sorted((k, v) for _, k, v in again.scan(False, 0, 10)) == [(b"b", b"2"), (b"k", b"v")]
    short = DictServer(path, ttl_s=0.2)  # the same file seen with a short TTL
    time.sleep(0.3)
    assert short.get(False, b"k") is None
    assert not short.contains(False, b"b")
    assert short.len(False) == 0
    assert short.scan(False, 0, 10) == []


def test_dict_server_unknown_operation_and_deleted_file(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    s = DictServer(path)
    s.open(True)
    with pytest.raises(InvalidError, match="no operation"):
        s.call("_conn", False, ())
    s.call("put", False, (b"k", b"v", False, ""))
    # Deleted by another process (the CLI in direct mode): noticed on the next operation.
    path.unlink()
    with pytest.raises(NotFoundError):
        s.call("get", False, (b"k",))
    assert s.call("get", True, (b"k",)) is None  # create_if_missing: a fresh, empty file
    assert s.call("destroy", False, ()) is True
    assert not path.exists()
    with pytest.raises(NotFoundError):
        s.call("get", True, (b"k",))


def test_queue_server_fifo_limits_partitions_and_retries(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    s = QueueServer(path)
    s.open(True)
    assert s.put(False, "", [b"1", b"2", b"3"], 60.0, "p1")
    assert s.put(False, "", [b"1", b"2", b"3"], 60.0, "p1")  # retried: added once
    assert s.put(False, "other", [b"x"], 60.0, "p2")
    assert s.len(False, "", False) == 3
    assert s.len(False, None, True) == 4
    assert s.get(False, "", 2, "g1") == [b"1", b"2"]
    # A retried get (same request id) returns the same items, and takes nothing more.
    assert s.get(False, "", 2, "g1") == [b"1", b"2"]
    assert s.len(False, "", False) == 1
    assert [v for _, v in s.peek(False, "", 0, 10)] == [b"3"]
    assert s.get(False, "", 5, "g2") == [b"3"]
    assert s.get(False, "", 5, "g3") == []
    assert s.get(False, "other", 5, "g4") == [b"x"]
    assert s.get(False, "missing", 5, "g5") == []
    # Full partition: refused without blocking, and still full after a wait.
    with pytest.raises(InvalidError, match="at most"):
        s.put(False, "full", [b"i"] * (QUEUE_MAX_ITEMS + 1), 60.0, "p3")
    assert s.put(False, "full", [b"i"] * QUEUE_MAX_ITEMS, 60.0, "p3")
    assert not s.put(False, "full", [b"more"], 60.0, "p4")
    t0 = time.monotonic()
    assert not s.put_wait(False, "full", [b"more"], 60.0, 0.3, "p5")
    assert time.monotonic() - t0 >= 0.3  # it waited for its timeout, not less
    # A blocked put proceeds once a get makes room.
    waiter = _Thread(lambda: s.put_wait(False, "full", [b"more"], 60.0, 30.0, "p6"))
    waiter.start()
    s.get(False, "full", 1, "g6")
    assert waiter.outcome() is True
    assert s.len(False, "full", False) == QUEUE_MAX_ITEMS
    s.clear(False, None, True)
    assert s.len(False, None, True) == 0
    # Partition TTL: cleared after its last put.
    s.put(False, "short", [b"a"], 0.2, "p7")
    time.sleep(0.3)
    assert s.len(False, "short", False) == 0
    assert s.get(False, "short", 1, "g7") == []
    assert s.destroy(False) is True
    assert not path.exists()


def test_queue_server_partition_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modal_ray.storage import queue_server

    monkeypatch.setattr(queue_server, "QUEUE_MAX_PARTITIONS", 3)
    s = QueueServer(tmp_path / "q.sqlite")
    s.open(True)
    for p in ("a", "b", "c"):
        assert s.put(False, p, [b"1"], 60.0, f"put-{p}")
    with pytest.raises(InvalidError, match="partitions"):
        s.put(False, "d", [b"1"], 60.0, "put-d")
    assert s.put(False, "a", [b"2"], 60.0, "put-a2")  # an existing partition still takes items
    assert s.len(False, None, True) == 4  # the refused put changed nothing


def test_queue_server_blocking_get_wakes_on_put(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No periodic re-check during the test: a waiter that returns was woken by the put.
    monkeypatch.setattr(server, "RECHECK_S", 3600.0)
    s = QueueServer(tmp_path / "q.sqlite")
    s.open(True)
    getter = _Thread(lambda: s.get_wait(False, "", 1, 600.0, "g1"))
    peeker = _Thread(lambda: s.peek_wait(False, "p", 0, 10, 600.0))
    other = _Thread(lambda: s.get_wait(False, "elsewhere", 1, 0.5, "g2"))
    waiting = _count_waits(s)
    for t in (getter, peeker, other):
        t.start()
    _until(lambda: len(waiting) >= 3)  # all three are waiting: the put below must wake them
    s.put(False, "", [b"hello"], 60.0, "p1")
    s.put(False, "p", [b"look"], 60.0, "p1b")
    assert getter.outcome() == ([b"hello"], True)  # it had to wait
    assert [v for _, v in peeker.outcome()] == [b"look"]
    assert other.outcome() == ([], True)  # its own partition stayed empty: its timeout ended it
    t0 = time.monotonic()
    assert s.get_wait(False, "", 1, 0.3, "g3") == ([], True)
    assert time.monotonic() - t0 >= 0.3
    s.put(False, "", [b"ready"], 60.0, "p2")
    assert s.get_wait(False, "", 1, 600.0, "g4") == ([b"ready"], False)  # no wait needed


def test_queue_server_release_puts_items_back_in_order(tmp_path: Path) -> None:
    s = QueueServer(tmp_path / "q.sqlite")
    s.open(True)
    s.put(False, "", [b"1", b"2", b"3"], 60.0, "p1")
    assert s.get(False, "", 2, "g1") == [b"1", b"2"]
    assert s.release(False, "g1") == 2  # the caller gave up: nothing it took is lost
    assert s.len(False, "", False) == 3
    assert s.get(False, "", 2, "g1") == []  # a released request takes nothing, even retried
    assert s.get(False, "", 5, "g2") == [b"1", b"2", b"3"]  # FIFO order kept
    # A released get that starts (or wakes) later takes nothing either.
    s.put(False, "", [b"4"], 60.0, "p2")
    s.release(False, "late")
    assert s.get_wait(False, "", 1, 5.0, "late") == ([], False)
    assert s.len(False, "", False) == 1
    # Items of a partition cleared meanwhile are not brought back.
    assert s.get(False, "", 1, "g3") == [b"4"]
    s.clear(False, "", False)
    assert s.release(False, "g3") == 0
    assert s.len(False, None, True) == 0


def test_queue_server_release_ends_a_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "RECHECK_S", 3600.0)
    s = QueueServer(tmp_path / "q.sqlite")
    s.open(True)
    waiting = _count_waits(s)
    getter = _Thread(lambda: s.get_wait(False, "", 1, 600.0, "g1"))
    getter.start()
    s.put(False, "full", [b"x"] * QUEUE_MAX_ITEMS, 60.0, "p1")
    putter = _Thread(lambda: s.put_wait(False, "full", [b"late"], 60.0, 600.0, "p2"))
    putter.start()
    _until(lambda: len(waiting) >= 2)
    s.release(False, "g1")
    s.release(False, "p2")
    assert getter.outcome() == ([], True)
    assert putter.outcome() is False
    s.get(False, "full", 1, "g2")  # room now: the released put must not land
    assert s.len(False, "full", False) == QUEUE_MAX_ITEMS - 1


def test_queue_server_idle_rechecks_do_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "RECHECK_S", 0.02)
    s = QueueServer(tmp_path / "q.sqlite")
    s.open(True)
    before = s.db.commits
    assert s.get_wait(False, "", 1, 0.3, "g1") == ([], True)
    assert s.db.commits - before <= 1  # the first attempt only; re-checks are reads


# -- group commit ------------------------------------------------------------------------------


class _GatedDatabase(Database):
    """A Database whose commits wait for the test to let them through."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "CREATE TABLE IF NOT EXISTS meta(k, v); CREATE TABLE t(x);", "T")
        self.gates: list[threading.Event] = []
        self.entered: list[threading.Event] = []
        self.fail_commit = 0  # this commit (1-based) raises
        self.gated = True

    def _commit_now(self, db: sqlite3.Connection) -> None:
        if not self.gated:
            return super()._commit_now(db)
        n = len(self.entered)
        entered, gate = threading.Event(), threading.Event()
        self.entered.append(entered)
        self.gates.append(gate)
        entered.set()
        gate.wait(30)
        if n + 1 == self.fail_commit:
            raise sqlite3.OperationalError("disk I/O error (injected)")
        super()._commit_now(db)


def _rows(path: Path) -> list[int]:
    # An independent connection sees only what is committed.
    db = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in db.execute("SELECT x FROM t"))
    finally:
        db.close()


def _insert(value: int, fail: bool = False) -> Callable[[sqlite3.Connection], int]:
    def fn(db: sqlite3.Connection) -> int:
        db.execute("INSERT INTO t(x) VALUES (?)", (value,))
        if fail:
            raise ValueError(f"operation {value} failed")
        return value

    return fn


def test_group_commit_covers_operations_that_arrive_during_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    db = _GatedDatabase(path)
    db.read(lambda c: None, create=True)
    a = _Thread(lambda: db.write(_insert(1)))
    a.start()
    _until(lambda: len(db.entered) == 1)  # a's commit is in progress
    b = _Thread(lambda: db.write(_insert(2, fail=True)))
    c = _Thread(lambda: db.write(_insert(3)))
    d = _Thread(lambda: db.write(_insert(4)))
    for t in (b, c, d):
        t.start()
    _until(lambda: db._writers == 3)  # all three arrived while a's commit runs
    assert a.is_alive()  # nothing is acknowledged before its commit
    assert _rows(path) == []
    db.gates[0].set()
    assert a.outcome() == 1
    _until(lambda: len(db.entered) == 2)  # one commit for b, c and d
    assert c.is_alive()
    assert d.is_alive()
    assert _rows(path) == [1]
    db.gates[1].set()
    assert c.outcome() == 3
    assert d.outcome() == 4
    with pytest.raises(ValueError, match="operation 2"):
        b.outcome()  # a failed operation rolls back its own changes only
    assert db.commits == 2
    assert _rows(path) == [1, 3, 4]


def test_a_failed_group_commit_fails_every_operation_in_it(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    db = _GatedDatabase(path)
    db.fail_commit = 2
    db.read(lambda c: None, create=True)
    a = _Thread(lambda: db.write(_insert(1)))
    a.start()
    _until(lambda: len(db.entered) == 1)
    b = _Thread(lambda: db.write(_insert(2)))
    c = _Thread(lambda: db.write(_insert(3)))
    reader = _Thread(lambda: db.read(lambda conn: conn.execute("SELECT 1").fetchone()))
    for t in (b, c):
        t.start()
    _until(lambda: db._writers == 2)
    db.gates[0].set()
    assert a.outcome() == 1
    _until(lambda: len(db.entered) == 2)
    reader.start()  # arrives during the failing commit: waits, reads committed data only
    db.gates[1].set()
    for t in (b, c):
        with pytest.raises(sqlite3.OperationalError, match="injected"):
            t.outcome()
    assert reader.outcome() == (1,)
    assert _rows(path) == [1]
    db.gated = False
    assert db.write(_insert(5)) == 5  # the file is usable again
    assert _rows(path) == [1, 5]


def test_checkpoints_run_apart_from_operations(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    db = Database(path, "CREATE TABLE IF NOT EXISTS meta(k, v); CREATE TABLE t(x);", "T")
    db.read(lambda c: None, create=True)
    # SQLite's own checkpoint (which fsyncs) would run inside a commit: it is off.
    assert db.read(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()) == (0,)
    for i in range(3):
        db.write(_insert(i))
    db.checkpoint()  # what the background thread runs
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(path.read_bytes())  # the database file alone, without its WAL
    assert _rows(copy) == [0, 1, 2]
    assert db.destroy() is True
    db.checkpoint()  # after destroy: nothing to do, and no file comes back
    assert not path.exists()
