"""The Queue server's storage layout, in-process over a temporary file (no Ray): a put's values
are stored together and taken whole or in part, item ids stay fixed for `peek` cursors, retried
and released gets keep exactly-once, and files of the first layout (one row per item) are
converted when opened.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

from modal_ray.storage import QueueServer
from modal_ray.storage.queue_server import CHUNK_BYTES


def _server(tmp_path: Path) -> QueueServer:
    s = QueueServer(tmp_path / "q.sqlite")
    s.open(True)
    return s


def _changes(s: QueueServer) -> int:
    """Rows inserted, updated or deleted through the server's connection so far."""
    return int(s.db.read(lambda db: db.total_changes))


def _peek_all(s: QueueServer, partition: str = "") -> list[tuple[int, bytes]]:
    return s.peek(False, partition, 0, 10_000)


def test_batched_put_and_get_write_rows_per_call_not_per_item(tmp_path: Path) -> None:
    s = _server(tmp_path)
    values = [f"v{i}".encode() for i in range(100)]
    before = _changes(s)
    assert s.put(False, "", values, 60.0, "p1")
    put_rows = _changes(s) - before
    before = _changes(s)
    assert s.get(False, "", 100, "g1") == values
    get_rows = _changes(s) - before
    # A few bookkeeping rows (partition, request), not one per item.
    assert put_rows <= 5, put_rows
    assert get_rows <= 5, get_rows


def test_partial_gets_keep_order_ids_and_retries(tmp_path: Path) -> None:
    s = _server(tmp_path)
    assert s.put(False, "", [b"a", b"b", b"c", b"d", b"e"], 60.0, "p1")
    assert s.put(False, "", [b"f", b"g"], 60.0, "p2")
    ids = {v: i for i, v in _peek_all(s)}
    assert list(ids) == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]
    assert sorted(ids.values()) == list(ids.values())  # ids increase in put order
    assert s.get(False, "", 2, "g1") == [b"a", b"b"]  # the front of a put
    assert s.get(False, "", 2, "g1") == [b"a", b"b"]  # retried: the same items
    assert s.get(False, "", 4, "g2") == [b"c", b"d", b"e", b"f"]  # across two puts
    assert s.get(False, "", 4, "g2") == [b"c", b"d", b"e", b"f"]
    assert s.len(False, "", False) == 1
    # Items keep their ids while others are taken: a cursor resumes where it was.
    assert _peek_all(s) == [(ids[b"g"], b"g")]
    # Released gets put their items back where they were, in any order of release.
    assert s.release(False, "g1") == 2
    assert [v for _, v in _peek_all(s)] == [b"a", b"b", b"g"]
    assert s.release(False, "g2") == 4
    assert _peek_all(s) == [(i, v) for v, i in ids.items()]  # each with its first id
    assert s.len(False, "", False) == 7
    assert s.peek(False, "", ids[b"c"], 2) == [(ids[b"d"], b"d"), (ids[b"e"], b"e")]
    assert s.get(False, "", 1, "g1") == []  # a released request takes nothing
    assert s.get(False, "", 10, "g3") == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]


def test_large_values_are_stored_apart(tmp_path: Path) -> None:
    s = _server(tmp_path)
    big = [bytes([i]) * (CHUNK_BYTES // 2 + 1) for i in range(5)]
    small = [b"x", b"y"]
    assert s.put(False, "", [*big, *small], 60.0, "p1")
    assert s.len(False, "", False) == 7
    assert [v for _, v in _peek_all(s)] == [*big, *small]
    assert s.get(False, "", 3, "g1") == big[:3]
    assert s.get(False, "", 3, "g1") == big[:3]
    assert s.release(False, "g1") == 3
    assert s.get(False, "", 6, "g2") == [*big, small[0]]
    assert s.get(False, "", 6, "g3") == [small[1]]


def test_queue_server_matches_a_model_under_random_operations(tmp_path: Path) -> None:
    """Random puts, gets (some retried), releases and peeks against a list model."""
    rng = random.Random(1234)
    s = _server(tmp_path)
    model: dict[str, list[tuple[int, bytes]]] = {"": [], "p": []}  # (put order, value)
    taken: dict[str, tuple[str, list[tuple[int, bytes]]]] = {}
    order = 0
    for step in range(400):
        partition = rng.choice(["", "p"])
        op = rng.random()
        if op < 0.35:
            n = rng.choice([1, 1, 2, 5, 30, 100])
            size = rng.choice([1, 10, 1000, CHUNK_BYTES // 3])
            values = [f"{step}-{i}-".encode() * (size // 8 + 1) for i in range(n)]
            if len(model[partition]) + n > 5000:
                continue
            assert s.put(False, partition, values, 600.0, f"put{step}")
            assert s.put(False, partition, values, 600.0, f"put{step}")  # retried: once
            for v in values:
                model[partition].append((order, v))
                order += 1
        elif op < 0.7:
            n = rng.choice([1, 2, 3, 7, 50, 200])
            got = s.get(False, partition, n, f"get{step}")
            expected = model[partition][:n]
            assert got == [v for _, v in expected], step
            del model[partition][:n]
            if expected:
                taken[f"get{step}"] = (partition, expected)
            assert s.get(False, partition, n, f"get{step}") == got  # retried: the same
        elif op < 0.85 and taken:
            rid = rng.choice(sorted(taken))
            p, items = taken.pop(rid)
            assert s.release(False, rid) == len(items)
            model[p] = sorted(model[p] + items)
        else:
            page = _peek_all(s, partition)
            assert [v for _, v in page] == [v for _, v in model[partition]], step
            ids = [i for i, _ in page]
            assert ids == sorted(set(ids))
            if len(page) > 2:  # a cursor resumes after the last id it saw
                cut = rng.randrange(len(page) - 1)
                assert s.peek(False, partition, page[cut][0], 10_000) == page[cut + 1 :]
        for p in model:
            assert s.len(False, p, False) == len(model[p])


# -- files of the first layout -------------------------------------------------------------------

FIRST_LAYOUT = """
CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE items(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partition TEXT NOT NULL,
    value BLOB NOT NULL,
    taken TEXT,
    taken_at REAL
);
CREATE INDEX items_live ON items(partition, id) WHERE taken IS NULL;
CREATE INDEX items_taken ON items(taken) WHERE taken IS NOT NULL;
CREATE TABLE partitions(
    partition TEXT PRIMARY KEY, expires_at REAL NOT NULL, n INTEGER NOT NULL
);
CREATE TABLE requests(rid TEXT PRIMARY KEY, result BLOB, ts REAL NOT NULL);
"""


def _write_first_layout(path: Path) -> None:
    """A Queue file as the first layout wrote it: partition "" holds 1, 2, 4, 5 (3 was taken
    by request g-old), partition "p" holds x, y; items of both were put interleaved."""
    t = time.time()
    db = sqlite3.connect(path)
    db.executescript("PRAGMA journal_mode=WAL;" + FIRST_LAYOUT)
    db.execute("INSERT INTO meta(k, v) VALUES ('created_at', ?), ('kind', 'Queue')", (repr(t),))
    rows = [("", b"1"), ("p", b"x"), ("", b"2"), ("", b"3"), ("p", b"y"), ("", b"4"), ("", b"5")]
    db.executemany("INSERT INTO items(partition, value) VALUES (?, ?)", rows)
    db.execute("UPDATE items SET taken = 'g-old', taken_at = ? WHERE value = ?", (t, b"3"))
    db.executemany(
        "INSERT INTO partitions(partition, expires_at, n) VALUES (?, ?, ?)",
        [("", t + 600, 4), ("p", t + 600, 2)],
    )
    db.execute("INSERT INTO requests(rid, result, ts) VALUES ('p-old', NULL, ?)", (t,))
    db.commit()
    db.close()


def test_a_file_of_the_first_layout_opens_and_keeps_its_items(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _write_first_layout(path)
    s = QueueServer(path)
    assert s.open(False) is True
    assert s.len(False, None, True) == 6
    assert [v for _, v in _peek_all(s)] == [b"1", b"2", b"4", b"5"]
    assert [v for _, v in _peek_all(s, "p")] == [b"x", b"y"]
    assert s.put(False, "", [b"6"], 60.0, "p-old") is True  # a retried put: added once
    assert s.put(False, "", [b"6", b"7"], 60.0, "p-new")
    ids = [i for i, _ in _peek_all(s)]
    assert ids == sorted(set(ids))  # new items come after the old ones
    assert s.get(False, "", 2, "g-old") == [b"3"]  # what the old get took, for its retry
    assert s.release(False, "g-old") == 1  # put back where it was
    assert s.get(False, "", 3, "g1") == [b"1", b"2", b"3"]
    assert s.get(False, "p", 5, "g2") == [b"x", b"y"]
    # A fresh server over the converted file (a restarted host) sees the same state.
    again = QueueServer(path)
    assert again.get(False, "", 10, "g3") == [b"4", b"5", b"6", b"7"]
    assert again.len(False, None, True) == 0
    db = sqlite3.connect(path)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()
    assert "items" not in tables


def test_ids_of_a_converted_file_are_never_given_again(tmp_path: Path) -> None:
    # The last items of the first layout were taken: a put after the conversion must not give
    # their ids to new items, so that a release puts them back in front without a clash.
    path = tmp_path / "old.sqlite"
    t = time.time()
    db = sqlite3.connect(path)
    db.executescript(FIRST_LAYOUT)
    db.executemany(
        "INSERT INTO items(partition, value, taken, taken_at) VALUES ('', ?, 'g-old', ?)",
        [(b"1", t), (b"2", t)],
    )
    db.execute("INSERT INTO partitions(partition, expires_at, n) VALUES ('', ?, 0)", (t + 600,))
    db.commit()
    db.close()
    s = QueueServer(path)
    assert s.len(False, "", False) == 0
    assert s.put(False, "", [b"new"], 60.0, "p1")
    assert s.release(False, "g-old") == 2
    assert s.get(False, "", 5, "g1") == [b"1", b"2", b"new"]
