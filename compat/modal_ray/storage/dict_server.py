"""The server of one `modal.Dict`: its entries in one SQLite table.

Role: the rules of a Dict's storage, engine-neutral (see `server.py` for hosting). Keys and values
arrive as opaque pickled bytes; equal keys pickle to equal bytes, so the key column is the key.

Invariants:
- An entry expires `ttl_s` (default 7 days, Modal's) after its last read or write: reads treat
  an expired row as absent at once, and the row is deleted by the read that finds it or by the
  periodic upkeep. A read refreshes the access time at most every `ttl_s / 10` (capped at an
  hour), so most reads write nothing.
- `put(skip_if_exists=True)` and `pop` are not idempotent: they record their request id with
  their answer, and a retried request gets the first answer. A plain `put` and `update` are
  idempotent and record nothing.
- `len` counts at most `DICT_LEN_CAP` entries, as Modal's does.
- `scan` pages through entries in rowid order, which is stable while entries are added.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, ClassVar

from .server import REQUEST_RETENTION_S, StoreServer, now

DICT_LEN_CAP = 100_000
DICT_TTL_S = 7 * 24 * 3600.0  # entries expire after 7 days without reads or writes


class DictServer(StoreServer):
    KIND: ClassVar[str] = "Dict"
    SCHEMA: ClassVar[str] = """
    CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
    CREATE TABLE IF NOT EXISTS entries(
        key BLOB PRIMARY KEY, value BLOB NOT NULL, atime REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS entries_atime ON entries(atime);
    CREATE TABLE IF NOT EXISTS requests(rid TEXT PRIMARY KEY, result BLOB, ts REAL NOT NULL);
    """
    OPERATIONS: ClassVar[frozenset[str]] = StoreServer.OPERATIONS | {
        "get",
        "contains",
        "put",
        "update",
        "pop",
        "clear",
        "len",
        "scan",
    }

    def __init__(self, path: str | Path, *, ttl_s: float | None = None, sync: str = "") -> None:
        super().__init__(path, ttl_s=ttl_s, sync=sync)
        self.ttl = ttl_s or DICT_TTL_S

    def _touch_after(self) -> float:
        return min(3600.0, self.ttl / 10)

    def upkeep(self) -> None:
        def sweep(db: sqlite3.Connection) -> None:
            t = now()
            db.execute("DELETE FROM entries WHERE atime < ?", (t - self.ttl,))
            db.execute("DELETE FROM requests WHERE ts < ?", (t - REQUEST_RETENTION_S,))

        self.db.write(sweep)

    # -- operations -------------------------------------------------------------------------

    def get(self, create: bool, key: bytes) -> bytes | None:
        row = self.db.read(
            lambda db: db.execute(
                "SELECT value, atime FROM entries WHERE key = ?", (key,)
            ).fetchone(),
            create=create,
        )
        if row is None:
            return None
        t = now()
        if row[1] < t - self.ttl:
            self.db.write(
                lambda db: db.execute(
                    "DELETE FROM entries WHERE key = ? AND atime < ?", (key, t - self.ttl)
                )
            )
            return None
        if t - row[1] > self._touch_after():
            self.db.write(
                lambda db: db.execute(
                    "UPDATE entries SET atime = ? WHERE key = ? AND atime < ?", (t, key, t)
                )
            )
        value: bytes = row[0]
        return value

    def contains(self, create: bool, key: bytes) -> bool:
        row = self.db.read(
            lambda db: db.execute(
                "SELECT 1 FROM entries WHERE key = ? AND atime >= ?", (key, now() - self.ttl)
            ).fetchone(),
            create=create,
        )
        return row is not None

    def put(self, create: bool, key: bytes, value: bytes, skip_if_exists: bool, rid: str) -> bool:
        """Set `key`; with `skip_if_exists`, only if absent (False if it was there)."""

        def apply(db: sqlite3.Connection) -> bool:
            t = now()
            if skip_if_exists:
                seen, result = self._seen(db, rid)
                if seen:
                    return result == b"1"
                row = db.execute(
                    "SELECT 1 FROM entries WHERE key = ? AND atime >= ?", (key, t - self.ttl)
                ).fetchone()
                if row is not None:
                    self._record(db, rid, b"0")
                    return False
            db.execute(
                "INSERT OR REPLACE INTO entries(key, value, atime) VALUES (?, ?, ?)",
                (key, value, t),
            )
            if skip_if_exists:
                self._record(db, rid, b"1")
            return True

        return self.db.write(apply, create=create)

    def update(self, create: bool, pairs: list[tuple[bytes, bytes]]) -> None:
        def apply(db: sqlite3.Connection) -> None:
            t = now()
            db.executemany(
                "INSERT OR REPLACE INTO entries(key, value, atime) VALUES (?, ?, ?)",
                [(k, v, t) for k, v in pairs],
            )

        self.db.write(apply, create=create)

    def pop(self, create: bool, key: bytes, rid: str) -> bytes | None:
        """Remove `key`; its value, or None if it was absent."""

        def apply(db: sqlite3.Connection) -> bytes | None:
            seen, result = self._seen(db, rid)
            if seen:
                return result
            row = db.execute(
                "DELETE FROM entries WHERE key = ? RETURNING value, atime", (key,)
            ).fetchone()
            value: bytes | None = row[0] if row is not None and row[1] >= now() - self.ttl else None
            self._record(db, rid, value)
            return value

        return self.db.write(apply, create=create)

    def clear(self, create: bool) -> None:
        self.db.write(lambda db: db.execute("DELETE FROM entries"), create=create)

    def len(self, create: bool) -> int:
        row = self.db.read(
            lambda db: db.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM entries WHERE atime >= ? LIMIT ?)",
                (now() - self.ttl, DICT_LEN_CAP),
            ).fetchone(),
            create=create,
        )
        return int(row[0])

    def scan(self, create: bool, after: int, limit: int) -> list[tuple[int, bytes, bytes]]:
        """Entries after rowid `after`, in rowid order (one page of `keys/values/items`)."""
        rows: list[Any] = self.db.read(
            lambda db: db.execute(
                "SELECT rowid, key, value FROM entries WHERE rowid > ? AND atime >= ?"
                " ORDER BY rowid LIMIT ?",
                (after, now() - self.ttl, limit),
            ).fetchall(),
            create=create,
        )
        return [(int(r[0]), r[1], r[2]) for r in rows]
