"""The server of one `modal.Queue`: partitioned FIFOs in one SQLite file.

Role: the rules of a Queue's storage, engine-neutral (see `server.py` for hosting). Items arrive
as opaque pickled bytes.

Layout: a put stores its values as one row of `chunks` (several when they add up to more than
`CHUNK_BYTES`): the values packed into one blob, so a `put_many` of 100 is one INSERT and a
`get_many` of 100 one DELETE. A get that needs only the front of a chunk writes the rest back as
a shorter chunk. An item's id is fixed when it is put: the chunk's sequence number shifted left
by `SLOT_BITS`, plus the item's index in that chunk (a chunk's `pos` is the id of its first
item), so ids increase in put order and a `peek` cursor (`after`) stays valid while items are
taken or put back.

Invariants:
- FIFO per partition: items take increasing ids when put (a `put_many` is one transaction, so its
  items are contiguous and all-or-nothing), and a get takes the lowest ids first.
- Limits (Modal's): `QUEUE_MAX_ITEMS` per partition (a put that does not fit is "full": False at
  once, or a wait), `QUEUE_MAX_PARTITIONS` per Queue (`InvalidError`). A partition expires
  `ttl_s` after its last put, with its items.
- `partitions.n` counts the partition's untaken items; it changes in the same transaction as the
  chunks.
- A get records what it took in `taken` under its request id (the pieces of chunks, with their
  ids) and keeps it `TAKEN_RETENTION_S`, so a retried get returns the same items, and
  `release(rid)` (a caller that gave up) puts them back where they were, at the front of their
  partition, in order. A put records its request id, so a retried put adds nothing twice.
  `release` also marks the id, so a waiting get or put that starts or wakes after it does
  nothing.
- `get_wait`, `put_wait` and `peek_wait` block up to `timeout`; they are the `WAITING`
  operations a host must run apart. A wait wakes on the commit of a put (getters and peekers of
  that partition) or of a get or clear (putters), and re-checks every `RECHECK_S` otherwise.
  `get_wait` also says whether it had to wait: a client's hint for which path its next get takes.
- Files written by the first layout (one `items` row per item) are converted when opened
  (`migrate`), in one transaction: an item keeps its order, its partition and, if taken, the
  request id that took it.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence
from itertools import accumulate, pairwise
from typing import ClassVar

from modal_ray.exception import InvalidError

from .server import REQUEST_RETENTION_S, StoreServer, now

QUEUE_MAX_ITEMS = 5_000  # per partition
QUEUE_MAX_PARTITIONS = 100_000
TAKEN_RETENTION_S = 30.0  # how long a consumed item is kept for a retried `get`
RELEASED = b"released"  # request-table result of a request its caller gave up
CHUNK_BYTES = 64 * 1024  # a put's values go in rows of about this size (bounds a partial get)
SLOT_BITS = 13  # an item id is (chunk sequence number << SLOT_BITS) + index in the chunk
assert QUEUE_MAX_ITEMS < 1 << SLOT_BITS


# -- packing: n values as one blob (n little-endian uint32 lengths, then the values) ----------


def pack(values: Sequence[bytes]) -> bytes:
    return struct.pack(f"<{len(values)}I", *map(len, values)) + b"".join(values)


def unpack(data: bytes, n: int) -> list[bytes]:
    ends = list(accumulate(struct.unpack_from(f"<{n}I", data), initial=4 * n))
    return [data[start:end] for start, end in pairwise(ends)]


def _split(data: bytes, n: int, k: int) -> tuple[bytes, bytes]:
    """A packed chunk of `n` values as two: its first `k` values and the others."""
    lengths = struct.unpack_from(f"<{n}I", data)
    cut = 4 * n + sum(lengths[:k])
    return (
        struct.pack(f"<{k}I", *lengths[:k]) + data[4 * n : cut],
        struct.pack(f"<{n - k}I", *lengths[k:]) + data[cut:],
    )


def _chunked(values: list[bytes]) -> list[list[bytes]]:
    """`values` in runs of at most `CHUNK_BYTES` (a larger value alone), in order."""
    if not values:
        return []
    if sum(map(len, values)) <= CHUNK_BYTES:
        return [values]
    runs: list[list[bytes]] = [[]]
    size = 0
    for v in values:
        if runs[-1] and size + len(v) > CHUNK_BYTES:
            runs.append([])
            size = 0
        runs[-1].append(v)
        size += len(v)
    return runs


# A new chunk at the start of the next block of ids: the highest id ever given (kept by
# AUTOINCREMENT in sqlite_sequence, so ids are never reused), rounded up to a block.
_INSERT_NEXT = (
    "INSERT INTO chunks(pos, partition, n, data) VALUES (((COALESCE((SELECT seq FROM"
    f" sqlite_sequence WHERE name = 'chunks'), 0) >> {SLOT_BITS}) + 1) << {SLOT_BITS}, ?, ?, ?)"
)


def _pack_segments(segments: Sequence[tuple[int, int]]) -> bytes:
    return struct.pack(f"<{2 * len(segments)}q", *[x for seg in segments for x in seg])


def _unpack_segments(data: bytes) -> list[tuple[int, int]]:
    flat = struct.unpack(f"<{len(data) // 8}q", data)
    return list(zip(flat[0::2], flat[1::2], strict=True))


def _taken_pieces(segments: bytes, data: bytes) -> list[tuple[int, int, bytes]]:
    """A `taken` row as its pieces of chunks: (pos, n, packed values)."""
    segs = _unpack_segments(segments)
    return [(pos, n, blob) for (pos, n), blob in zip(segs, unpack(data, len(segs)), strict=True)]


def _values(pieces: Sequence[tuple[int, int, bytes]]) -> list[bytes]:
    if len(pieces) == 1:
        return unpack(pieces[0][2], pieces[0][1])
    return [v for _, n, blob in pieces for v in unpack(blob, n)]


class QueueServer(StoreServer):
    KIND: ClassVar[str] = "Queue"
    SCHEMA: ClassVar[str] = """
    CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
    CREATE TABLE IF NOT EXISTS chunks(
        pos INTEGER PRIMARY KEY AUTOINCREMENT,
        partition TEXT NOT NULL,
        n INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS chunks_partition ON chunks(partition, pos);
    CREATE TABLE IF NOT EXISTS taken(
        rid TEXT PRIMARY KEY,
        partition TEXT NOT NULL,
        segments BLOB NOT NULL,
        data BLOB NOT NULL,
        ts REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS partitions(
        partition TEXT PRIMARY KEY, expires_at REAL NOT NULL, n INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS requests(rid TEXT PRIMARY KEY, result BLOB, ts REAL NOT NULL);
    """
    OPERATIONS: ClassVar[frozenset[str]] = StoreServer.OPERATIONS | {
        "put",
        "put_wait",
        "get",
        "get_wait",
        "peek",
        "peek_wait",
        "len",
        "clear",
        "release",
    }
    WAITING: ClassVar[frozenset[str]] = frozenset({"put_wait", "get_wait", "peek_wait"})

    # -- rows ---------------------------------------------------------------------------------

    @staticmethod
    def _drop_partition(db: sqlite3.Connection, partition: str) -> None:
        db.execute("DELETE FROM chunks WHERE partition = ?", (partition,))
        db.execute("DELETE FROM partitions WHERE partition = ?", (partition,))

    def _lookup(
        self, db: sqlite3.Connection, rid: str, partition: str, t: float
    ) -> tuple[bool, bytes | None, tuple[bytes, bytes] | None, int | None]:
        """One query for what a put or get checks first: whether `rid` was seen and its
        result, what it took (its `taken` row), and the items in `partition` (None if it does
        not exist; an expired partition is dropped, a write)."""
        seen, result, segments, data, n, expires_at = db.execute(
            "SELECT r.rid IS NOT NULL, r.result, t.segments, t.data, p.n, p.expires_at"
            " FROM (SELECT 1) LEFT JOIN requests r ON r.rid = ?1 LEFT JOIN taken t ON t.rid = ?1"
            " LEFT JOIN partitions p ON p.partition = ?2",
            (rid, partition),
        ).fetchone()
        if n is not None and expires_at <= t:
            self._drop_partition(db, partition)
            n = None
        return bool(seen), result, None if segments is None else (segments, data), n

    def upkeep(self) -> None:
        def sweep(db: sqlite3.Connection) -> bool:
            t = now()
            expired = [
                r[0]
                for r in db.execute(
                    "SELECT partition FROM partitions WHERE expires_at <= ?", (t,)
                ).fetchall()
            ]
            for p in expired:
                self._drop_partition(db, p)
            db.execute("DELETE FROM taken WHERE ts < ?", (t - TAKEN_RETENTION_S,))
            db.execute("DELETE FROM requests WHERE ts < ?", (t - REQUEST_RETENTION_S,))
            return bool(expired)

        if self.db.write(sweep):
            self.waiters.notify_all()

    def migrate(self, db: sqlite3.Connection) -> None:
        """Convert a file of the first layout (`items`: one row per item, taken items marked
        with their request id) to chunks of one item each, keeping every id's order."""
        find = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'items'"
        if db.execute(find).fetchone() is None:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute(find).fetchone() is not None:  # not converted meanwhile
                # Row by row inside SQLite: a full queue need not fit in memory.
                db.create_function("pack1", 1, lambda value: pack([value]), deterministic=True)
                db.execute(
                    f"INSERT INTO chunks(pos, partition, n, data) SELECT id << {SLOT_BITS},"
                    " partition, 1, pack1(value) FROM items WHERE taken IS NULL ORDER BY id"
                )
                taken: dict[str, tuple[str, list[tuple[int, int]], list[bytes], float]] = {}
                for item_id, partition, value, rid, ts in db.execute(
                    "SELECT id, partition, value, taken, taken_at FROM items"
                    " WHERE taken IS NOT NULL ORDER BY id"
                ).fetchall():
                    entry = taken.setdefault(rid, (partition, [], [], float(ts or 0.0)))
                    entry[1].append((item_id << SLOT_BITS, 1))
                    entry[2].append(pack([value]))
                db.executemany(
                    "INSERT INTO taken(rid, partition, segments, data, ts) VALUES (?, ?, ?, ?, ?)",
                    (
                        (rid, partition, _pack_segments(segs), pack(blobs), ts)
                        for rid, (partition, segs, blobs, ts) in taken.items()
                    ),
                )
                # New ids come after every old one, taken ones included (a release puts those
                # back with their ids).
                (top,) = db.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'items'"
                ).fetchone()
                db.execute("DROP TABLE items")
                counter = (int(top) << SLOT_BITS, "chunks")
                if not db.execute(
                    "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", counter
                ).rowcount:
                    db.execute("INSERT INTO sqlite_sequence(seq, name) VALUES (?, ?)", counter)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- put ----------------------------------------------------------------------------------

    def _try_put(
        self, create: bool, partition: str, values: list[bytes], ttl_s: float, rid: str
    ) -> bool | None:
        """Append `values` atomically: True; None if they do not fit now; False if `rid` was
        released."""
        if len(values) > QUEUE_MAX_ITEMS:
            raise InvalidError(
                f"Cannot put {len(values):,} items at once: a Queue partition holds at most"
                f" {QUEUE_MAX_ITEMS:,} items."
            )

        def apply(db: sqlite3.Connection) -> bool | None:
            t = now()
            seen, result, _, n = self._lookup(db, rid, partition, t)
            if seen:
                return result != RELEASED
            if n is None:
                (count,) = db.execute("SELECT COUNT(*) FROM partitions").fetchone()
                if count >= QUEUE_MAX_PARTITIONS:
                    raise InvalidError(
                        f"This Queue already has {QUEUE_MAX_PARTITIONS:,} partitions, the"
                        " limit; clear some or wait for them to expire."
                    )
            elif n + len(values) > QUEUE_MAX_ITEMS:
                return None
            runs = _chunked(values)
            if len(runs) == 1:
                db.execute(_INSERT_NEXT, (partition, len(values), pack(values)))
            elif runs:
                db.executemany(_INSERT_NEXT, [(partition, len(run), pack(run)) for run in runs])
            if n is None:
                db.execute(
                    "INSERT INTO partitions(partition, expires_at, n) VALUES (?, ?, ?)",
                    (partition, t + ttl_s, len(values)),
                )
            else:
                db.execute(
                    "UPDATE partitions SET expires_at = ?, n = ? WHERE partition = ?",
                    (t + ttl_s, n + len(values), partition),
                )
            self._record(db, rid)
            return True

        done = self.db.write(apply, create=create)
        if done:
            self.waiters.notify(("i", partition))
        return done

    def put(
        self, create: bool, partition: str, values: list[bytes], ttl_s: float, rid: str
    ) -> bool:
        """Append `values` to `partition` atomically; False if the partition is full."""
        return bool(self._try_put(create, partition, values, ttl_s, rid))

    def put_wait(
        self,
        create: bool,
        partition: str,
        values: list[bytes],
        ttl_s: float,
        timeout: float,
        rid: str,
    ) -> bool:
        """`put`, waiting up to `timeout` seconds for room; False if still full."""
        done = self._until(
            ("s", partition),
            lambda: self._try_put(create, partition, values, ttl_s, rid),
            timeout,
        )
        return bool(done)

    # -- get ----------------------------------------------------------------------------------

    def _try_get(self, create: bool, partition: str, n_values: int, rid: str) -> list[bytes] | None:
        """Take up to `n_values` items; None if there are none; [] if `rid` was released."""

        def apply(db: sqlite3.Connection) -> list[bytes] | None:
            t = now()
            _, result, again, live = self._lookup(db, rid, partition, t)
            if again is not None:
                return _values(_taken_pieces(*again))
            if result == RELEASED:
                return []
            if live is None:
                return None
            pieces: list[tuple[int, int, bytes]] = []  # (pos, n, packed values) taken
            whole = None  # pos of the last chunk taken whole
            rest = None  # (old pos, new pos, n, packed values) of a chunk taken in part
            want = n_values
            cursor = db.execute(
                "SELECT pos, n, data FROM chunks WHERE partition = ? ORDER BY pos LIMIT ?",
                (partition, n_values),
            )
            for pos, count, data in cursor:
                if count <= want:
                    pieces.append((pos, count, data))
                    whole = pos
                    want -= count
                else:
                    head, tail = _split(data, count, want)
                    pieces.append((pos, want, head))
                    rest = (pos, pos + want, count - want, tail)
                    want = 0
                if want == 0:
                    break
            cursor.close()
            if not pieces:
                return None
            if whole is not None:
                db.execute(
                    "DELETE FROM chunks WHERE partition = ? AND pos <= ?", (partition, whole)
                )
            if rest is not None:
                db.execute(
                    "UPDATE chunks SET pos = ?, n = ?, data = ? WHERE pos = ?",
                    (rest[1], rest[2], rest[3], rest[0]),
                )
            db.execute(
                "UPDATE partitions SET n = n - ? WHERE partition = ?",
                (n_values - want, partition),
            )
            db.execute(
                "INSERT INTO taken(rid, partition, segments, data, ts) VALUES (?, ?, ?, ?, ?)",
                (
                    rid,
                    partition,
                    _pack_segments([(pos, count) for pos, count, _ in pieces]),
                    pack([blob for _, _, blob in pieces]),
                    t,
                ),
            )
            return _values(pieces)

        items = self.db.write(apply, create=create)
        if items:
            self.waiters.notify(("s", partition))
        return items

    def get(self, create: bool, partition: str, n_values: int, rid: str) -> list[bytes]:
        """Take up to `n_values` items from the front of `partition`; [] if it is empty."""
        return self._try_get(create, partition, n_values, rid) or []

    def get_wait(
        self, create: bool, partition: str, n_values: int, timeout: float, rid: str
    ) -> tuple[list[bytes], bool]:
        """`get`, waiting up to `timeout` seconds for at least one item: (items, whether it had
        to wait); no items if none came."""
        attempts = 0

        def attempt() -> list[bytes] | None:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and not self.db.read(lambda db: self._worth_a_try(db, partition, rid)):
                return None  # a re-check that would only open an empty write transaction
            return self._try_get(create, partition, n_values, rid)

        items = self._until(("i", partition), attempt, timeout) or []
        return items, attempts > 1

    def _worth_a_try(self, db: sqlite3.Connection, partition: str, rid: str) -> bool:
        return (
            db.execute("SELECT 1 FROM chunks WHERE partition = ? LIMIT 1", (partition,)).fetchone()
            is not None
            or self._seen(db, rid)[1] == RELEASED
        )

    def release(self, create: bool, rid: str) -> int:
        """The caller of request `rid` gave up: put back what it took (at the front of its
        partition, in order), and make a wait that has not finished yet do nothing. Returns
        the number of items put back."""

        def apply(db: sqlite3.Connection) -> int:
            back = 0
            row = db.execute(
                "SELECT partition, segments, data FROM taken WHERE rid = ?", (rid,)
            ).fetchone()
            if row is not None:
                partition, segments, data = row
                db.execute("DELETE FROM taken WHERE rid = ?", (rid,))
                live = db.execute(
                    "SELECT 1 FROM partitions WHERE partition = ?", (partition,)
                ).fetchone()
                if live is not None:  # else cleared or expired since: its items go with it
                    pieces = _taken_pieces(segments, data)
                    db.executemany(  # where they were: each item keeps its id
                        "INSERT INTO chunks(pos, partition, n, data) VALUES (?, ?, ?, ?)",
                        [(pos, partition, n, blob) for pos, n, blob in pieces],
                    )
                    back = sum(n for _, n, _ in pieces)
                    db.execute(
                        "UPDATE partitions SET n = n + ? WHERE partition = ?", (back, partition)
                    )
            db.execute(
                "INSERT OR REPLACE INTO requests(rid, result, ts) VALUES (?, ?, ?)",
                (rid, RELEASED, now()),
            )
            return back

        back = self.db.write(apply, create=create)
        self.waiters.notify_all()  # items are back, and a wait for `rid` must end
        return back

    # -- reading without taking ---------------------------------------------------------------

    def peek(self, create: bool, partition: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` items with an id above `after`, without taking them."""

        def look(db: sqlite3.Connection) -> list[tuple[int, bytes]]:
            row = db.execute(
                "SELECT expires_at FROM partitions WHERE partition = ?", (partition,)
            ).fetchone()
            if row is None or row[0] <= now() or limit <= 0:
                return []
            found: list[tuple[int, bytes]] = []
            # The chunk holding id `after` starts in the same block of ids.
            first = max(0, after) >> SLOT_BITS << SLOT_BITS
            cursor = db.execute(
                "SELECT pos, n, data FROM chunks WHERE partition = ? AND pos >= ? ORDER BY pos",
                (partition, first),
            )
            for pos, n, data in cursor:
                if pos + n - 1 <= after:
                    continue
                skip = max(0, after + 1 - pos)
                for i, value in enumerate(unpack(data, n)[skip:], start=pos + skip):
                    found.append((i, value))
                    if len(found) >= limit:
                        break
                if len(found) >= limit:
                    break
            cursor.close()
            return found

        return self.db.read(look, create=create)

    def peek_wait(
        self, create: bool, partition: str, after: int, limit: int, timeout: float
    ) -> list[tuple[int, bytes]]:
        """`peek`, waiting up to `timeout` seconds for an item."""
        items = self._until(
            ("i", partition), lambda: self.peek(create, partition, after, limit) or None, timeout
        )
        return items or []

    def len(self, create: bool, partition: str | None, total: bool) -> int:
        t = now()
        if total:
            row = self.db.read(
                lambda db: db.execute(
                    "SELECT COALESCE(SUM(n), 0) FROM partitions WHERE expires_at > ?", (t,)
                ).fetchone(),
                create=create,
            )
        else:
            row = self.db.read(
                lambda db: db.execute(
                    "SELECT n FROM partitions WHERE partition = ? AND expires_at > ?",
                    (partition or "", t),
                ).fetchone(),
                create=create,
            )
        return int(row[0]) if row else 0

    def clear(self, create: bool, partition: str | None, all: bool) -> None:
        def apply(db: sqlite3.Connection) -> None:
            if all:
                db.execute("DELETE FROM chunks")
                db.execute("DELETE FROM partitions")
            else:
                self._drop_partition(db, partition or "")

        self.db.write(apply, create=create)
        self.waiters.notify_all()
