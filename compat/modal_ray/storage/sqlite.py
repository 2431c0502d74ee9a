"""One SQLite file shared by the threads of one storage server, with group commit.

Role: the file layer under `DictServer` and `QueueServer`. It opens (and re-opens) the file,
sets its pragmas, and runs every operation inside a transaction that commits before the
operation returns.

Invariants:
- The file is the truth, and no operation is acknowledged before its commit: `write()` returns
  (or raises) only after the transaction holding its changes has committed (or failed, in which
  case every operation of that transaction gets the error). `read()` never returns data that is
  not committed: a read that lands inside a transaction with pending writes waits for its commit.
- Group commit: operations that arrive while a commit is in progress wait for it, then apply
  their changes into one new transaction, which the last of them commits for all. One commit
  (one WAL append, or one fsync with `synchronous=FULL`) then covers every operation that was
  in flight. An operation alone commits at once: nothing waits for a batch to fill.
- One connection, used by one thread at a time (`_lock`); COMMIT runs outside the lock so that
  the operations arriving meanwhile can register, and nothing touches the connection while
  `_committing` is set.
- A failed operation inside a shared transaction rolls back to its own savepoint only.
- Checkpoints (copying the WAL into the database file, with an fsync) never run inside an
  operation: a background thread runs them on its own connection at most every
  `CHECKPOINT_S` after a commit (SQLite's automatic checkpoint is off). A commit is durable once
  in the WAL; a checkpoint only bounds the WAL's size.
- Opening runs the schema (`CREATE ... IF NOT EXISTS`), then `migrate(connection)` if given: it
  converts a file written by an earlier layout, in its own transaction.
- The file may be deleted by another process (`modal dict delete` in direct mode): every
  operation notices a changed inode and re-opens, or raises `NotFoundError` unless `create`.
- Engine-neutral: no engine import; the caller's threads are the only concurrency.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from modal_ray.exception import NotFoundError

T = TypeVar("T")

SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_S = 10.0  # another process (the CLI in direct mode) holding the write lock
CHECKPOINT_S = 1.0
_FAILED_KEPT = 64  # failed transactions remembered for the operations still waiting on them


def sync_mode(raw: str | None) -> str:
    """SQLite's `synchronous` setting from a user value (`MODAL_RAY_STORE_SYNC`): NORMAL (the
    default; a commit survives a crash of the process or of Ray, not a power loss) or FULL (an
    fsync per commit)."""
    mode = (raw or "normal").strip().upper()
    return mode if mode in SYNC_MODES else "NORMAL"


def remove_files(path: Path) -> bool:
    """Delete a database and its WAL/journal files; True if the database existed."""
    existed = path.exists()
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
    return existed


class Database:
    """One SQLite file: `read(fn)` / `write(fn)` run `fn(connection)` under group commit."""

    def __init__(
        self,
        path: Path,
        schema: str,
        kind: str,
        sync: str = "NORMAL",
        migrate: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = path
        self._schema = schema
        self._migrate = migrate
        self._kind = kind
        self._sync = sync_mode(sync)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._db: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._destroyed = False
        self._txn = 0  # number of the open transaction, or of the last one opened
        self._done = 0  # every transaction up to this number has committed or failed
        self._failed: dict[int, BaseException] = {}
        self._committing = False
        self._writers = 0  # write() calls registered but not yet applied
        self.commits = 0  # transactions committed (a count for tests and benchmarks)
        self._checkpoint_due = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_lock = threading.Lock()  # held while a checkpoint runs

    # -- the file -------------------------------------------------------------------------

    def exists(self) -> bool:
        return not self._destroyed and self.path.exists()

    def _conn(self, create: bool) -> sqlite3.Connection:
        """The open connection; (re)opens it, noticing a file deleted by another process.
        Called with `_lock` held and no transaction open."""
        if self._destroyed:
            raise NotFoundError(f"{self._kind} was deleted")
        if self._db is not None:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == self._inode:
                return self._db
            self._close()
        existed = self.path.exists()
        if not existed and not create:
            raise NotFoundError(f"{self._kind} not found")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not existed:
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        db = sqlite3.connect(
            str(self.path), isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._sync}")
        db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
        db.executescript(self._schema)
        if self._migrate is not None:
            try:
                self._migrate(db)
            except BaseException:
                db.close()
                raise
        db.execute(
            "INSERT OR IGNORE INTO meta(k, v) VALUES ('created_at', ?), ('kind', ?)",
            (repr(time.time()), self._kind),
        )
        st = os.stat(self.path)
        self._db, self._inode = db, (st.st_dev, st.st_ino)
        return db

    def _close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db, self._inode = None, None

    def destroy(self) -> bool:
        """Delete the file; every later operation raises `NotFoundError`."""
        with self._cond:
            self._idle()
            self._close()
            self._destroyed = True
            self._checkpoint_due.set()  # the checkpointer sees `_destroyed` and ends
            with self._checkpoint_lock:
                return remove_files(self.path)

    # -- checkpoints ------------------------------------------------------------------------

    def _checkpoint_later(self) -> None:
        self._checkpoint_due.set()
        if self._checkpointer is None or not self._checkpointer.is_alive():
            self._checkpointer = threading.Thread(
                target=self._checkpoint_forever, name=f"{self._kind}-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_forever(self) -> None:
        while not self._destroyed:
            self._checkpoint_due.wait()
            time.sleep(CHECKPOINT_S)  # commits meanwhile share this checkpoint
            self._checkpoint_due.clear()
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy committed WAL frames into the database file without blocking operations."""
        with self._checkpoint_lock:
            if self._destroyed or not self.path.exists():
                return
            try:
                db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S)
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    db.close()
            except sqlite3.Error:
                pass  # the next checkpoint retries; the WAL keeps every commit meanwhile

    def _idle(self) -> None:
        """Wait (lock held) until no transaction is open or committing."""
        while self._committing or (self._db is not None and self._db.in_transaction):
            self._cond.wait()

    # -- operations -----------------------------------------------------------------------

    def read(self, fn: Callable[[sqlite3.Connection], T], *, create: bool = False) -> T:
        """`fn(db)` without writing; it may see other operations' pending changes, so it
        returns only once they are committed."""
        with self._cond:
            while self._committing:
                self._cond.wait()
            db = self._db if self._db is not None and self._db.in_transaction else None
            if db is None:  # no batch open: the connection may be (re)opened
                db = self._conn(create)
            result = fn(db)
            if db.in_transaction:
                self._await_commit(self._txn)
        return result

    def write(self, fn: Callable[[sqlite3.Connection], T], *, create: bool = False) -> T:
        """`fn(db)` inside the current transaction; returns after that transaction commits."""
        with self._cond:
            self._writers += 1
            txn = 0
            try:
                while self._committing:
                    self._cond.wait()
                db = self._db if self._db is not None and self._db.in_transaction else None
                joined = db is not None
                if db is None:
                    db = self._conn(create)
                    db.execute("BEGIN IMMEDIATE")
                    self._txn += 1
                else:
                    db.execute("SAVEPOINT op")
                txn = self._txn
                try:
                    result = fn(db)
                except BaseException:
                    if joined:
                        db.execute("ROLLBACK TO op")
                        db.execute("RELEASE op")
                    elif db.in_transaction:
                        db.execute("ROLLBACK")  # only this operation's changes were in it
                        self._finish(txn, None)
                    raise
                if joined:
                    db.execute("RELEASE op")
            finally:
                self._writers -= 1
                # The last operation of the batch commits it, whether or not it failed itself.
                if self._writers == 0 and self._db is not None and self._db.in_transaction:
                    self._commit()
            self._await_commit(txn)
        return result

    def _commit(self) -> None:
        """Commit the open transaction for every operation in it (`_lock` held on entry and
        on exit, released meanwhile)."""
        assert self._db is not None
        db, txn = self._db, self._txn
        self._committing = True
        self._lock.release()
        error: BaseException | None = None
        try:
            self._commit_now(db)
        except BaseException as exc:
            error = exc
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        finally:
            self._lock.acquire()
            self._committing = False
            self._finish(txn, error)

    def _commit_now(self, db: sqlite3.Connection) -> None:
        db.execute("COMMIT")
        self.commits += 1
        self._checkpoint_later()

    def _finish(self, txn: int, error: BaseException | None) -> None:
        if error is not None:
            self._failed[txn] = error
            for old in [t for t in self._failed if t <= txn - _FAILED_KEPT]:
                del self._failed[old]
        self._done = max(self._done, txn)
        self._cond.notify_all()

    def _await_commit(self, txn: int) -> None:
        while self._done < txn:
            self._cond.wait()
        error = self._failed.get(txn)
        if error is not None:
            raise error
