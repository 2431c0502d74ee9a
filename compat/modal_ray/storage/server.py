"""What the Dict and Queue servers share: dispatch, request ids, blocking waits, upkeep.

Role: a server owns one object's SQLite file (`Database`) and answers operations on it. It is
plain Python, so a backend can host it however it likes (the Ray backend: as a named actor) and
tests and one-shot tools can run it in-process. Operations are synchronous and thread-safe; a
host may run them from several threads at once, which is what lets `Database` group commits.

Invariants:
- `call(method, create, args)` is the only entry point a host exposes; `method` must be one of
  `OPERATIONS`. Operations in `WAITING` may block up to their `timeout` argument, and the host
  must run them apart from the others (a waiting call must never hold up a `put` that would end
  its wait). Each has a non-waiting twin (`get_wait` / `get`) that clients try first.
- Arguments and results are plain values (bytes for keys and values, which the client pickles);
  a server never unpickles user data, so it never imports user types.
- Non-idempotent operations carry a request id: a retried request (the engine's own retry after
  a host restart, or the client's) returns the first attempt's result, recorded in the file in
  the same transaction as the change.
- Blocking waits use one condition per server and a version per wait key: the key's version is
  read before each attempt, so a change committed between the attempt and the wait is never
  missed. Waiters also re-try every `RECHECK_S`, which only matters when another process writes
  the same file.
- Upkeep (expired entries, partitions, old request ids, consumed items) runs inside ordinary
  operations at most every `MAINTENANCE_S`: an idle server does nothing, and reads filter
  expired rows themselves, so a late sweep changes no answer.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from modal_ray.exception import Error, InternalError, InvalidError

from .sqlite import Database

T = TypeVar("T")

REQUEST_RETENTION_S = 300.0  # how long a request id is remembered for a retry
MAINTENANCE_S = 5.0
RECHECK_S = 0.5


def now() -> float:
    return time.time()


class Waiters:
    """Keyed wake-ups for blocking operations: `version(key)` before an attempt, then
    `wait(key, version, timeout)` returns once `notify(key)` (or `notify_all()`) ran since."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[Hashable, int] = {}
        self._epoch = 0

    def version(self, key: Hashable) -> tuple[int, int]:
        with self._cond:
            return (self._epoch, self._versions.get(key, 0))

    def notify(self, key: Hashable) -> None:
        with self._cond:
            self._versions[key] = self._versions.get(key, 0) + 1
            self._cond.notify_all()

    def notify_all(self) -> None:
        with self._cond:
            self._epoch += 1
            self._versions.clear()
            self._cond.notify_all()

    def wait(self, key: Hashable, version: tuple[int, int], timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: (self._epoch, self._versions.get(key, 0)) != version, timeout
            )


class StoreServer:
    """Base of the Dict and Queue servers: one object's file and its waiters."""

    KIND: ClassVar[str] = ""
    SCHEMA: ClassVar[str] = ""
    OPERATIONS: ClassVar[frozenset[str]] = frozenset({"open", "info", "destroy", "ping"})
    WAITING: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, path: str | Path, *, ttl_s: float | None = None, sync: str = "") -> None:
        self.db = Database(Path(path), self.SCHEMA, self.KIND, sync, self.migrate)
        self.waiters = Waiters()
        self._next_upkeep = time.monotonic() + MAINTENANCE_S

    @property
    def path(self) -> Path:
        return self.db.path

    # -- dispatch ---------------------------------------------------------------------------

    def call(self, method: str, create: bool, args: tuple[Any, ...]) -> Any:
        """Run one operation; modal-ray errors pass through, storage failures become
        `InternalError`."""
        if method not in self.OPERATIONS:
            raise InvalidError(f"{self.KIND} storage has no operation {method!r}.")
        try:
            result = getattr(self, method)(create, *args)
            if time.monotonic() >= self._next_upkeep:
                self._next_upkeep = time.monotonic() + MAINTENANCE_S
                if self.db.exists():
                    self.upkeep()
        except Error:
            raise
        except sqlite3.Error as exc:
            raise InternalError(
                f"The {self.KIND}'s storage file {self.path} failed: {exc}. Check the disk and"
                " the permissions of the state store (MODAL_RAY_STATE)."
            ) from None
        return result

    # -- helpers for subclasses ---------------------------------------------------------------

    def migrate(self, db: sqlite3.Connection) -> None:
        """Convert a file written by an earlier layout to `SCHEMA`'s; run on each (re)open, after
        the schema, in autocommit mode (it opens its own transaction if it changes anything).
        Here: nothing to convert."""

    def upkeep(self) -> None:
        """Drop what has expired (here: old request ids)."""
        self.db.write(self._forget_requests)

    @staticmethod
    def _forget_requests(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM requests WHERE ts < ?", (now() - REQUEST_RETENTION_S,))

    @staticmethod
    def _seen(db: sqlite3.Connection, rid: str) -> tuple[bool, bytes | None]:
        row = db.execute("SELECT result FROM requests WHERE rid = ?", (rid,)).fetchone()
        return (False, None) if row is None else (True, row[0])

    @staticmethod
    def _record(db: sqlite3.Connection, rid: str, result: bytes | None = None) -> None:
        db.execute("INSERT INTO requests(rid, result, ts) VALUES (?, ?, ?)", (rid, result, now()))

    def _until(self, key: Hashable, attempt: Callable[[], T | None], timeout: float) -> T | None:
        """`attempt()` until it returns non-None or `timeout` seconds pass (then None)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            version = self.waiters.version(key)  # before the attempt: no wake-up is missed
            result = attempt()
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.waiters.wait(key, version, min(RECHECK_S, remaining))

    # -- operations common to both kinds --------------------------------------------------------

    def open(self, create: bool) -> bool:
        """Make sure the file exists (creating it if `create`); True if it existed before."""
        existed = self.db.exists()
        self.db.read(lambda db: None, create=create)
        return existed

    def info(self, create: bool) -> float:
        """When the object was created (epoch seconds)."""
        row = self.db.read(
            lambda db: db.execute("SELECT v FROM meta WHERE k = 'created_at'").fetchone(),
            create=create,
        )
        return float(row[0]) if row else 0.0

    def destroy(self, create: bool) -> bool:
        """Delete the file and end every wait; True if it existed."""
        existed = self.db.destroy()
        self.waiters.notify_all()
        return existed

    def ping(self, create: bool) -> bool:
        return True
