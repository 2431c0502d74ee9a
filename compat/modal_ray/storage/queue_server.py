"""The server of one `modal.Queue`: partitioned FIFOs in one SQLite file.

Role: the rules of a Queue's storage, engine-neutral (see `server.py` for hosting). Items arrive
as opaque pickled bytes.

Invariants:
- FIFO per partition: items take increasing ids when put (a `put_many` is one transaction, so its
  items are contiguous and all-or-nothing), and a get takes the lowest ids first.
- Limits (Modal's): `QUEUE_MAX_ITEMS` per partition (a put that does not fit is "full": False at
  once, or a wait), `QUEUE_MAX_PARTITIONS` per Queue (`InvalidError`). A partition expires
  `ttl_s` after its last put, with its items.
- `partitions.n` counts the partition's untaken items; it changes in the same transaction as the
  items.
- A get does not delete what it takes: it marks the items taken by its request id and keeps them
  `TAKEN_RETENTION_S`, so a retried get returns the same items, and `release(rid)` (a caller that
  gave up) puts them back at the front of their partition, in order. A put records its request
  id, so a retried put adds nothing twice. `release` also marks the id, so a waiting get or put
  that starts or wakes after it does nothing.
- `get_wait`, `put_wait` and `peek_wait` block up to `timeout`; they are the `WAITING`
  operations a host must run apart. A wait wakes on the commit of a put (getters and peekers of
  that partition) or of a get or clear (putters), and re-checks every `RECHECK_S` otherwise.
  `get_wait` also says whether it had to wait: a client's hint for which path its next get takes.
"""

from __future__ import annotations

import sqlite3
from typing import Any, ClassVar

from modal_ray.exception import InvalidError

from .server import REQUEST_RETENTION_S, StoreServer, now

QUEUE_MAX_ITEMS = 5_000  # per partition
QUEUE_MAX_PARTITIONS = 100_000
TAKEN_RETENTION_S = 30.0  # how long a consumed item is kept for a retried `get`
RELEASED = b"released"  # request-table result of a request its caller gave up


class QueueServer(StoreServer):
    KIND: ClassVar[str] = "Queue"
    SCHEMA: ClassVar[str] = """
    CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
    CREATE TABLE IF NOT EXISTS items(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        partition TEXT NOT NULL,
        value BLOB NOT NULL,
        taken TEXT,
        taken_at REAL
    );
    CREATE INDEX IF NOT EXISTS items_live ON items(partition, id) WHERE taken IS NULL;
    CREATE INDEX IF NOT EXISTS items_taken ON items(taken) WHERE taken IS NOT NULL;
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
        db.execute("DELETE FROM items WHERE partition = ? AND taken IS NULL", (partition,))
        db.execute("DELETE FROM partitions WHERE partition = ?", (partition,))

    def _live_count(self, db: sqlite3.Connection, partition: str, t: float) -> int | None:
        """Items in `partition`; None if it does not exist. Expires it if due (a write)."""
        row = db.execute(
            "SELECT n, expires_at FROM partitions WHERE partition = ?", (partition,)
        ).fetchone()
        if row is None:
            return None
        if row[1] <= t:
            self._drop_partition(db, partition)
            return None
        return int(row[0])

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
            db.execute(
                "DELETE FROM items WHERE taken IS NOT NULL AND taken_at < ?",
                (t - TAKEN_RETENTION_S,),
            )
            db.execute("DELETE FROM requests WHERE ts < ?", (t - REQUEST_RETENTION_S,))
            return bool(expired)

        if self.db.write(sweep):
            self.waiters.notify_all()

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
            seen, result = self._seen(db, rid)
            if seen:
                return result != RELEASED
            t = now()
            n = self._live_count(db, partition, t)
            if n is None:
                (count,) = db.execute("SELECT COUNT(*) FROM partitions").fetchone()
                if count >= QUEUE_MAX_PARTITIONS:
                    raise InvalidError(
                        f"This Queue already has {QUEUE_MAX_PARTITIONS:,} partitions, the"
                        " limit; clear some or wait for them to expire."
                    )
                n = 0
            if n + len(values) > QUEUE_MAX_ITEMS:
                return None
            db.executemany(
                "INSERT INTO items(partition, value) VALUES (?, ?)",
                [(partition, v) for v in values],
            )
            db.execute(
                "INSERT OR REPLACE INTO partitions(partition, expires_at, n) VALUES (?, ?, ?)",
                (partition, t + ttl_s, n + len(values)),
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
            again = db.execute(
                "SELECT value FROM items WHERE taken = ? ORDER BY id", (rid,)
            ).fetchall()
            if again:
                return [r[0] for r in again]
            if self._seen(db, rid)[1] == RELEASED:
                return []
            t = now()
            if self._live_count(db, partition, t) is None:
                return None
            rows = db.execute(
                "SELECT id, value FROM items WHERE partition = ? AND taken IS NULL"
                " ORDER BY id LIMIT ?",
                (partition, n_values),
            ).fetchall()
            if not rows:
                return None
            db.execute(
                "UPDATE items SET taken = ?, taken_at = ?"
                " WHERE partition = ? AND taken IS NULL AND id <= ?",
                (rid, t, partition, rows[-1][0]),
            )
            db.execute(
                "UPDATE partitions SET n = n - ? WHERE partition = ?", (len(rows), partition)
            )
            return [r[1] for r in rows]

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
            db.execute(
                "SELECT 1 FROM items WHERE partition = ? AND taken IS NULL LIMIT 1", (partition,)
            ).fetchone()
            is not None
            or self._seen(db, rid)[1] == RELEASED
        )

    def release(self, create: bool, rid: str) -> int:
        """The caller of request `rid` gave up: put back what it took (at the front of its
        partition, in order), and make a wait that has not finished yet do nothing. Returns
        the number of items put back."""

        def apply(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT partition, COUNT(*) FROM items WHERE taken = ? GROUP BY partition",
                (rid,),
            ).fetchall()
            back = []
            for partition, k in rows:
                live = db.execute(
                    "SELECT 1 FROM partitions WHERE partition = ?", (partition,)
                ).fetchone()
                if live is None:  # cleared or expired since: its items go with it
                    db.execute(
                        "DELETE FROM items WHERE taken = ? AND partition = ?", (rid, partition)
                    )
                    continue
                db.execute(
                    "UPDATE items SET taken = NULL, taken_at = NULL"
                    " WHERE taken = ? AND partition = ?",
                    (rid, partition),
                )
                db.execute("UPDATE partitions SET n = n + ? WHERE partition = ?", (k, partition))
                back.extend([partition] * k)
            db.execute(
                "INSERT OR REPLACE INTO requests(rid, result, ts) VALUES (?, ?, ?)",
                (rid, RELEASED, now()),
            )
            return back

        back = self.db.write(apply, create=create)
        self.waiters.notify_all()  # items are back, and a wait for `rid` must end
        return len(back)

    # -- reading without taking ---------------------------------------------------------------

    def peek(self, create: bool, partition: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` items after id `after`, without taking them."""

        def look(db: sqlite3.Connection) -> list[Any]:
            row = db.execute(
                "SELECT expires_at FROM partitions WHERE partition = ?", (partition,)
            ).fetchone()
            if row is None or row[0] <= now():
                return []
            return db.execute(
                "SELECT id, value FROM items WHERE partition = ? AND taken IS NULL AND id > ?"
                " ORDER BY id LIMIT ?",
                (partition, after, limit),
            ).fetchall()

        return [(int(r[0]), r[1]) for r in self.db.read(look, create=create)]

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
                db.execute("DELETE FROM items WHERE taken IS NULL")
                db.execute("DELETE FROM partitions")
            else:
                self._drop_partition(db, partition or "")

        self.db.write(apply, create=create)
        self.waiters.notify_all()
