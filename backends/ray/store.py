"""Dict and Queue storage: one SQLite file per object, served by one named async actor.

Layout under the state root (`MODAL_RAY_STATE`):

    dicts/<env>/<name>.sqlite                       a named Dict (plus SQLite's -wal/-shm files)
    queues/<env>/<name>.sqlite                      a named Queue
    ephemeral/<env>/<cluster>/<kind>-<id>.sqlite    an ephemeral object of a running cluster

Invariants:
- The file is the truth. Every acknowledged write is committed (WAL) before the actor replies, and
  the actor keeps nothing in memory that matters, so `ray.kill` of the actor, a crash, or a full
  cluster restart loses no acknowledged item: the next call re-creates the actor over the file.
- Values and keys arrive as opaque bytes (cloudpickled by the client); the actor never imports
  user types.
- Non-idempotent operations carry a request id. A retried request (Ray's own retry after an actor
  restart, or ours after re-creating a killed actor) returns the first attempt's result: queue gets
  mark items as taken by the request (kept `TAKEN_RETENTION_S`) instead of deleting them at once,
  and puts / pops record the request. A crash between commit and reply neither loses nor
  duplicates an item.
- Blocking `get` / full-queue `put` wait inside the actor on asyncio events (max_concurrency
  1000), so waiting callers never block writers and a caller makes one round trip per call. The
  waiters also re-read the file every `RECHECK_S`, which only matters when another process (the
  CLI, or a second cluster sharing the state root) writes the same file.
- Named actors are detached and pinned to the head node so the file lives on one machine's disk;
  ephemeral actors are owned by their creator and die with it.
- "Direct" mode (the CLI with no cluster configured) runs the same server class in-process over
  the same file instead of starting an embedded Ray for a one-shot read.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import ray
import ray.exceptions as rex

# The errors claim `modal.exception` as their home; cloudpickle pickles a class by reference only
# if that module is imported, so the actor imports it to send Modal errors back as themselves.
import modal.exception  # noqa: F401
from modal_ray import config
from modal_ray.exception import Error, InvalidError, NotFoundError

from . import runtime
from .errors import translate

if TYPE_CHECKING:
    from modal_ray.dict import StoreRef

T = TypeVar("T")

QUEUE_MAX_ITEMS = 5_000  # per partition
QUEUE_MAX_PARTITIONS = 100_000
DICT_LEN_CAP = 100_000
DICT_TTL_S = 7 * 24 * 3600.0  # entries expire after 7 days without reads or writes
TAKEN_RETENTION_S = 30.0  # how long a consumed item is kept for a retried `get`
REQUEST_RETENTION_S = 300.0
MAINTENANCE_S = 5.0
RECHECK_S = 0.5
EPHEMERAL_IDLE_S = 24 * 3600.0  # leftovers of other (dead) clusters are swept after this
CALL_ATTEMPTS = 12  # ~10 s of retries while an actor is re-created or restarts

_HEAD = {"node:__internal_head__": 0.001}
_ACTOR_OPTIONS: dict[str, Any] = {
    "num_cpus": 0,
    "max_concurrency": 1000,
    "max_restarts": -1,
    "max_task_retries": -1,
    "resources": _HEAD,
}


def _now() -> float:
    return time.time()


def _sync_mode() -> str:
    """SQLite's `synchronous` for new servers, from `MODAL_RAY_STORE_SYNC` where the object's
    actor is created: NORMAL (default; a commit survives a crash of the actor, of Ray or of the
    process, but not of the machine's power) or FULL (an fsync per commit)."""
    mode = os.environ.get("MODAL_RAY_STORE_SYNC", "normal").strip().upper()
    return mode if mode in ("OFF", "NORMAL", "FULL", "EXTRA") else "NORMAL"


def _remove_files(path: Path) -> bool:
    existed = path.exists()
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
    return existed


class _Server:
    """One object's SQLite file and the waiters on it. Runs as an actor or in-process."""

    SCHEMA = ""
    KIND = ""

    def __init__(
        self, path: str, ttl_s: float | None = None, actor_name: str = "", sync: str = ""
    ) -> None:
        self._path = Path(path)
        self._sync = sync or _sync_mode()
        self._ttl = ttl_s or DICT_TTL_S
        self._actor_name = actor_name
        self._db: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._destroyed = False
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self._maintenance: asyncio.Task[None] | None = None

    # -- the file ---------------------------------------------------------------------------

    def _conn(self, create: bool) -> sqlite3.Connection:
        """The open connection; (re)opens it, noticing a file deleted by another process."""
        if self._destroyed:
            raise NotFoundError(f"{self.KIND} was deleted")
        if self._db is not None:
            try:
                st = os.stat(self._path)
            except FileNotFoundError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == self._inode:
                return self._db
            self._close()
        existed = self._path.exists()
        if not existed and not create:
            raise NotFoundError(f"{self.KIND} not found")
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not existed:
            fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        db = sqlite3.connect(
            str(self._path), isolation_level=None, timeout=10.0, check_same_thread=False
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._sync}")
        db.executescript(self.SCHEMA)
        db.execute(
            "INSERT OR IGNORE INTO meta(k, v) VALUES ('created_at', ?), ('kind', ?)",
            (repr(_now()), self.KIND),
        )
        st = os.stat(self._path)
        self._db, self._inode = db, (st.st_dev, st.st_ino)
        self._start_maintenance()
        return db

    def _close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db, self._inode = None, None

    @contextmanager
    def _write(self, db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _start_maintenance(self) -> None:
        if self._maintenance is not None and not self._maintenance.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._maintenance = loop.create_task(self._maintain_forever())

    async def _maintain_forever(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_S)
            if self._db is None:
                continue
            try:
                self._maintain(self._db)
            except sqlite3.Error:
                pass

    def _maintain(self, db: sqlite3.Connection) -> None:
        with self._write(db):
            db.execute("DELETE FROM requests WHERE ts < ?", (_now() - REQUEST_RETENTION_S,))

    def _seen(self, db: sqlite3.Connection, rid: str) -> tuple[bool, bytes | None]:
        row = db.execute("SELECT result FROM requests WHERE rid = ?", (rid,)).fetchone()
        return (False, None) if row is None else (True, row[0])

    def _record(self, db: sqlite3.Connection, rid: str, result: bytes | None = None) -> None:
        db.execute("INSERT INTO requests(rid, result, ts) VALUES (?, ?, ?)", (rid, result, _now()))

    # -- waiting ----------------------------------------------------------------------------

    def _event(self, key: tuple[str, str]) -> asyncio.Event:
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = asyncio.Event()
        return ev

    def _wake(self, key: tuple[str, str]) -> None:
        ev = self._events.pop(key, None)
        if ev is not None:
            ev.set()

    def _wake_all(self, kind: str) -> None:
        for key in [k for k in self._events if k[0] == kind]:
            self._wake(key)

    async def _until(
        self,
        key: tuple[str, str],
        attempt: Callable[[], T | None],
        block: bool,
        timeout: float | None,
    ) -> T | None:
        """`attempt()` until it returns non-None; wait for `key`'s event in between."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            # The event is taken before the attempt: a wake between the two is not missed.
            ev = self._event(key)
            result = attempt()
            if result is not None or not block:
                return result
            wait = RECHECK_S
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                wait = min(wait, remaining)
            try:
                await asyncio.wait_for(ev.wait(), wait)
            except asyncio.TimeoutError:
                pass

    # -- common operations --------------------------------------------------------------------

    async def open(self, create: bool) -> bool:
        """Make sure the file exists (creating it if `create`); True if it existed before."""
        existed = self._path.exists()
        self._conn(create)
        if "-eph." in self._actor_name and not existed:
            _sweep_ephemeral(self._path)
        return existed

    async def info(self, create: bool) -> float:
        db = self._conn(create)
        row = db.execute("SELECT v FROM meta WHERE k = 'created_at'").fetchone()
        return float(row[0]) if row else 0.0

    async def destroy(self, create: bool) -> bool:
        """Delete the file; the caller kills the actor next."""
        if self._maintenance is not None:
            self._maintenance.cancel()
        self._close()
        self._destroyed = True
        existed = _remove_files(self._path)
        self._wake_all("i")
        self._wake_all("s")
        return existed

    async def ping(self) -> bool:
        return True


class DictServer(_Server):
    KIND = "Dict"
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
    CREATE TABLE IF NOT EXISTS entries(
        key BLOB PRIMARY KEY, value BLOB NOT NULL, atime REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS entries_atime ON entries(atime);
    CREATE TABLE IF NOT EXISTS requests(rid TEXT PRIMARY KEY, result BLOB, ts REAL NOT NULL);
    """

    def _touch_after(self) -> float:
        # Refresh an entry's access time at most this often: a read is not a write every time.
        return min(3600.0, self._ttl / 10)

    def _maintain(self, db: sqlite3.Connection) -> None:
        now = _now()
        with self._write(db):
            db.execute("DELETE FROM entries WHERE atime < ?", (now - self._ttl,))
            db.execute("DELETE FROM requests WHERE ts < ?", (now - REQUEST_RETENTION_S,))

    async def get(self, create: bool, key: bytes) -> bytes | None:
        db = self._conn(create)
        row = db.execute("SELECT value, atime FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        now = _now()
        if row[1] < now - self._ttl:
            with self._write(db):
                db.execute(
                    "DELETE FROM entries WHERE key = ? AND atime < ?", (key, now - self._ttl)
                )
            return None
        if now - row[1] > self._touch_after():
            with self._write(db):
                db.execute("UPDATE entries SET atime = ? WHERE key = ?", (now, key))
        value: bytes = row[0]
        return value

    async def contains(self, create: bool, key: bytes) -> bool:
        db = self._conn(create)
        row = db.execute(
            "SELECT 1 FROM entries WHERE key = ? AND atime >= ?", (key, _now() - self._ttl)
        ).fetchone()
        return row is not None

    async def put(
        self, create: bool, key: bytes, value: bytes, skip_if_exists: bool, rid: str
    ) -> bool:
        db = self._conn(create)
        now = _now()
        with self._write(db):
            seen, result = self._seen(db, rid)
            if seen:
                return result == b"1"
            if skip_if_exists:
                row = db.execute(
                    "SELECT 1 FROM entries WHERE key = ? AND atime >= ?", (key, now - self._ttl)
                ).fetchone()
                if row is not None:
                    self._record(db, rid, b"0")
                    return False
            db.execute(
                "INSERT OR REPLACE INTO entries(key, value, atime) VALUES (?, ?, ?)",
                (key, value, now),
            )
            if skip_if_exists:
                self._record(db, rid, b"1")
        return True

    async def update(self, create: bool, pairs: list[tuple[bytes, bytes]]) -> None:
        db = self._conn(create)
        now = _now()
        with self._write(db):
            db.executemany(
                "INSERT OR REPLACE INTO entries(key, value, atime) VALUES (?, ?, ?)",
                [(k, v, now) for k, v in pairs],
            )

    async def pop(self, create: bool, key: bytes, rid: str) -> bytes | None:
        db = self._conn(create)
        now = _now()
        with self._write(db):
            seen, result = self._seen(db, rid)
            if seen:
                return result
            row = db.execute(
                "DELETE FROM entries WHERE key = ? RETURNING value, atime", (key,)
            ).fetchone()
            value = row[0] if row is not None and row[1] >= now - self._ttl else None
            self._record(db, rid, value)
        return value

    async def clear(self, create: bool) -> None:
        db = self._conn(create)
        with self._write(db):
            db.execute("DELETE FROM entries")

    async def len(self, create: bool) -> int:
        db = self._conn(create)
        row = db.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM entries WHERE atime >= ? LIMIT ?)",
            (_now() - self._ttl, DICT_LEN_CAP),
        ).fetchone()
        return int(row[0])

    async def scan(self, create: bool, after: int, limit: int) -> list[tuple[int, bytes, bytes]]:
        """Entries after rowid `after`, in rowid order (one page of `keys/values/items`)."""
        db = self._conn(create)
        rows = db.execute(
            "SELECT rowid, key, value FROM entries WHERE rowid > ? AND atime >= ?"
            " ORDER BY rowid LIMIT ?",
            (after, _now() - self._ttl, limit),
        ).fetchall()
        return [(int(r[0]), r[1], r[2]) for r in rows]


class QueueServer(_Server):
    KIND = "Queue"
    SCHEMA = """
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

    def _drop_partition(self, db: sqlite3.Connection, partition: str) -> None:
        db.execute("DELETE FROM items WHERE partition = ? AND taken IS NULL", (partition,))
        db.execute("DELETE FROM partitions WHERE partition = ?", (partition,))

    def _live_count(self, db: sqlite3.Connection, partition: str, now: float) -> int | None:
        """Items in `partition`; None if it does not exist. Expires it if due (needs a write)."""
        row = db.execute(
            "SELECT n, expires_at FROM partitions WHERE partition = ?", (partition,)
        ).fetchone()
        if row is None:
            return None
        if row[1] <= now:
            self._drop_partition(db, partition)
            return None
        return int(row[0])

    def _maintain(self, db: sqlite3.Connection) -> None:
        now = _now()
        with self._write(db):
            expired = [
                r[0]
                for r in db.execute(
                    "SELECT partition FROM partitions WHERE expires_at <= ?", (now,)
                ).fetchall()
            ]
            for p in expired:
                self._drop_partition(db, p)
            db.execute(
                "DELETE FROM items WHERE taken IS NOT NULL AND taken_at < ?",
                (now - TAKEN_RETENTION_S,),
            )
            db.execute("DELETE FROM requests WHERE ts < ?", (now - REQUEST_RETENTION_S,))
        if expired:
            self._wake_all("s")

    async def put(
        self,
        create: bool,
        partition: str,
        values: list[bytes],
        ttl_s: float,
        block: bool,
        timeout: float | None,
        rid: str,
    ) -> bool:
        """Append `values` to `partition` atomically; False if still full after `timeout`."""
        if len(values) > QUEUE_MAX_ITEMS:
            raise InvalidError(
                f"Cannot put {len(values):,} items at once: a Queue partition holds at most"
                f" {QUEUE_MAX_ITEMS:,} items."
            )
        db = self._conn(create)

        def attempt() -> bool | None:
            now = _now()
            with self._write(db):
                if self._seen(db, rid)[0]:
                    return True
                n = self._live_count(db, partition, now)
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
                    (partition, now + ttl_s, n + len(values)),
                )
                self._record(db, rid)
            self._wake(("i", partition))
            return True

        done = await self._until(("s", partition), attempt, block, timeout)
        return bool(done)

    async def get(
        self,
        create: bool,
        partition: str,
        n_values: int,
        block: bool,
        timeout: float | None,
        rid: str,
    ) -> list[bytes] | None:
        """Take up to `n_values` items (at least one when blocking); None after `timeout`."""
        db = self._conn(create)
        again = db.execute("SELECT value FROM items WHERE taken = ? ORDER BY id", (rid,)).fetchall()
        if again:
            return [r[0] for r in again]

        def attempt() -> list[bytes] | None:
            now = _now()
            with self._write(db):
                if self._live_count(db, partition, now) is None:
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
                    (rid, now, partition, rows[-1][0]),
                )
                db.execute(
                    "UPDATE partitions SET n = n - ? WHERE partition = ?", (len(rows), partition)
                )
            self._wake(("s", partition))
            return [r[1] for r in rows]

        items = await self._until(("i", partition), attempt, block, timeout)
        if items is None and not block:
            return []
        return items

    async def peek(
        self, create: bool, partition: str, after: int, limit: int, timeout: float
    ) -> list[tuple[int, bytes]]:
        """Items after id `after` without taking them, waiting up to `timeout` for one."""
        db = self._conn(create)

        def attempt() -> list[tuple[int, bytes]] | None:
            row = db.execute(
                "SELECT expires_at FROM partitions WHERE partition = ?", (partition,)
            ).fetchone()
            if row is None or row[0] <= _now():
                return None
            rows = db.execute(
                "SELECT id, value FROM items WHERE partition = ? AND taken IS NULL AND id > ?"
                " ORDER BY id LIMIT ?",
                (partition, after, limit),
            ).fetchall()
            return [(int(r[0]), r[1]) for r in rows] or None

        items = await self._until(("i", partition), attempt, timeout > 0, timeout)
        return items or []

    async def len(self, create: bool, partition: str | None, total: bool) -> int:
        db = self._conn(create)
        now = _now()
        if total:
            row = db.execute(
                "SELECT COALESCE(SUM(n), 0) FROM partitions WHERE expires_at > ?", (now,)
            ).fetchone()
        else:
            row = db.execute(
                "SELECT n FROM partitions WHERE partition = ? AND expires_at > ?",
                (partition or "", now),
            ).fetchone()
        return int(row[0]) if row else 0

    async def clear(self, create: bool, partition: str | None, all: bool) -> None:
        db = self._conn(create)
        with self._write(db):
            if all:
                db.execute("DELETE FROM items WHERE taken IS NULL")
                db.execute("DELETE FROM partitions")
            else:
                self._drop_partition(db, partition or "")
        self._wake_all("s")


def _sweep_ephemeral(path: Path) -> None:
    """Remove files of ephemeral objects whose actor is gone (their creator died without exiting
    the context), and whole folders of other clusters idle for `EPHEMERAL_IDLE_S`."""
    own = path.parent
    namespace = ray.get_runtime_context().namespace
    for f in own.glob("*.sqlite"):
        if f == path:
            continue
        kind, _, oid = f.stem.partition("-")
        try:
            ray.get_actor(f"modal-{kind}-eph.{oid}", namespace=namespace)
        except ValueError:
            _remove_files(f)
    now = _now()
    for other in own.parent.iterdir():
        if other == own or not other.is_dir():
            continue
        try:
            newest = max((p.stat().st_mtime for p in other.iterdir()), default=0.0)
        except OSError:
            continue
        if now - newest > EPHEMERAL_IDLE_S:
            shutil.rmtree(other, ignore_errors=True)


_DictActor = ray.remote(**_ACTOR_OPTIONS)(DictServer)
_QueueActor = ray.remote(**_ACTOR_OPTIONS)(QueueServer)

# -- client side ------------------------------------------------------------------------------

_handles: dict[tuple[str, str], Any] = {}
_direct_servers: dict[str, _Server] = {}
_direct_allowed = False


def allow_direct(enabled: bool = True) -> None:
    """Let one-shot tools (the CLI) read and write the files in-process when no cluster is
    configured and Ray is not running here, instead of starting an embedded Ray."""
    global _direct_allowed
    _direct_allowed = enabled


def _dir_for(kind: str) -> str:
    return "dicts" if kind == "dict" else "queues"


def path_of(ref: StoreRef) -> Path:
    root = Path(ref.root)
    if ref.ephemeral_id is not None:
        gcs: str = ray.get_runtime_context().gcs_address
        cluster = gcs.replace(":", "-").replace("/", "-")
        return (
            root / "ephemeral" / ref.environment / cluster / f"{ref.kind}-{ref.ephemeral_id}.sqlite"
        )
    return root / _dir_for(ref.kind) / ref.environment / f"{ref.name}.sqlite"


def actor_name(ref: StoreRef) -> str:
    if ref.ephemeral_id is not None:
        return f"modal-{ref.kind}-eph.{ref.ephemeral_id}"
    return f"modal-{ref.kind}.{ref.name}"


def _key(ref: StoreRef) -> tuple[str, str]:
    return (config.namespace_for(ref.environment), actor_name(ref))


def _is_direct(ref: StoreRef) -> bool:
    return (
        _direct_allowed
        and ref.ephemeral_id is None
        and not ray.is_initialized()
        and config.ray_address() is None
    )


def _dict_ttl() -> float:
    raw = os.environ.get("MODAL_RAY_DICT_TTL")
    return float(raw) if raw else DICT_TTL_S


def _direct_server(ref: StoreRef) -> _Server:
    path = str(path_of(ref))
    server = _direct_servers.get(path)
    if server is None or server._destroyed:
        cls = DictServer if ref.kind == "dict" else QueueServer
        server = _direct_servers[path] = cls(path, _dict_ttl())
    return server


def _live(ref: StoreRef) -> Any | None:
    """The object's actor if it is running (cached per process), else None."""
    key = _key(ref)
    handle = _handles.get(key)
    if handle is None:
        runtime.connect(ref.environment)
        try:
            handle = _handles[key] = ray.get_actor(key[1], namespace=key[0])
        except ValueError:
            return None
    return handle


def _handle(ref: StoreRef, create: bool) -> Any:
    """The object's actor, started over its file if it is not running (named objects only)."""
    handle = _live(ref)
    if handle is not None:
        return handle
    if ref.ephemeral_id is not None:
        raise NotFoundError("gone")
    path = str(path_of(ref))
    # Starting an actor costs a process: check first that there is something to serve. Once per
    # object and process, so a blocking task round trip is fine here.
    if not create and not ray.get(_remote(_exists).remote(path)):
        raise NotFoundError("not found")
    namespace, name = _key(ref)
    cls = _DictActor if ref.kind == "dict" else _QueueActor
    handle = cls.options(
        name=name, namespace=namespace, lifetime="detached", get_if_exists=True
    ).remote(path, _dict_ttl(), name, _sync_mode())
    _handles[(namespace, name)] = handle
    return handle


def _forget(ref: StoreRef, kill: bool = False) -> None:
    handle = _handles.pop(_key(ref), None)
    if kill:
        if handle is None:
            try:
                handle = ray.get_actor(actor_name(ref), namespace=_key(ref)[0])
            except ValueError:
                return
        try:
            ray.kill(handle, no_restart=True)
        except Exception:  # already gone
            pass


def _failed(ref: StoreRef, method: str, exc: BaseException, attempt: int) -> float:
    """Handle a failed call: raise the error to report, or return the delay before a retry."""
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause
        if isinstance(cause, NotFoundError):
            # The object was deleted: do not leave an idle actor behind for the name.
            _forget(ref, kill=ref.ephemeral_id is None)
            raise NotFoundError(str(cause)) from None
        if isinstance(cause, Error):
            raise cause from None
        raise translate(exc, f"{ref.kind} {method}") from exc
    if isinstance(exc, rex.ActorDiedError | rex.ActorUnavailableError):
        if isinstance(exc, rex.ActorDiedError):
            _forget(ref)  # killed or crashed for good: the next attempt re-creates it
            if ref.ephemeral_id is not None:
                raise NotFoundError("gone") from None
        if attempt < CALL_ATTEMPTS - 1:
            return float(min(0.05 * 2.0**attempt, 1.0))
    raise translate(exc, f"{ref.kind} {method}") from exc


async def call(ref: StoreRef, method: str, args: tuple[Any, ...], *, create: bool = False) -> Any:
    """Run `method(create, *args)` on the object's server: one actor round trip.

    Raises NotFoundError (bare message; the caller words it) when the object does not exist.
    """
    if _is_direct(ref):
        return await getattr(_direct_server(ref), method)(create, *args)
    for attempt in range(CALL_ATTEMPTS):
        oref = getattr(_handle(ref, create), method).remote(create, *args)
        try:
            return await oref
        except asyncio.CancelledError:
            # A caller that gives up must not leave a waiter behind that would take an item.
            ray.cancel(oref)
            raise
        except rex.RayError as exc:
            delay = _failed(ref, method, exc, attempt)
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def call_sync(ref: StoreRef, method: str, args: tuple[Any, ...], *, create: bool = False) -> Any:
    """`call` for a blocking caller: `ray.get` in the caller's thread, which saves the hop
    through modal-ray's event-loop thread (about a quarter of a small operation's latency)."""
    if _is_direct(ref):
        from modal_ray.synchronizer import run_sync

        return run_sync(call(ref, method, args, create=create), method)
    for attempt in range(CALL_ATTEMPTS):
        oref = getattr(_handle(ref, create), method).remote(create, *args)
        try:
            return ray.get(oref)
        except KeyboardInterrupt:
            ray.cancel(oref)
            raise
        except rex.RayError as exc:
            delay = _failed(ref, method, exc, attempt)
        time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


async def create(ref: StoreRef) -> bool:
    """Create the object if needed; True if it already existed."""
    if ref.ephemeral_id is None:
        return bool(await call(ref, "open", (), create=True))
    runtime.connect(ref.environment)
    namespace, name = _key(ref)
    cls = _DictActor if ref.kind == "dict" else _QueueActor
    # Not detached: owned by this process, so Ray kills it when its creator exits.
    handle: Any = cls.options(name=name, namespace=namespace).remote(
        str(path_of(ref)), None, name, _sync_mode()
    )
    _handles[(namespace, name)] = handle
    try:
        existed: bool = await handle.open.remote(True)
    except rex.RayError as exc:
        raise translate(exc, f"creating an ephemeral {ref.kind}") from exc
    return existed


async def delete(ref: StoreRef) -> bool:
    """Delete the object's file and stop its actor; True if it existed."""
    if _is_direct(ref):
        server = _direct_servers.pop(str(path_of(ref)), None)
        if server is not None:
            return await server.destroy(False)
        return _remove_files(path_of(ref))
    if _live(ref) is None:
        if ref.ephemeral_id is not None:
            return False
        return bool(await _on_head(_remove_path, str(path_of(ref))))
    try:
        existed = bool(await call(ref, "destroy", ()))
    except NotFoundError:
        return False
    _forget(ref, kill=True)
    return existed


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _remove_path(path: str) -> bool:
    return _remove_files(Path(path))


def _scan(root: str, kind: str, environment: str) -> list[dict[str, Any]]:
    """The named objects of `kind` in `environment`: name, created_at and, for queues, the live
    partitions and items (read from the files, without starting their actors)."""
    folder = Path(root) / _dir_for(kind) / environment
    out: list[dict[str, Any]] = []
    if not folder.is_dir():
        return out
    now = _now()
    for f in folder.glob("*.sqlite"):
        record: dict[str, Any] = {"name": f.stem, "created_at": f.stat().st_mtime}
        try:
            db = sqlite3.connect(f"file:{f}?mode=ro", uri=True, timeout=5.0)
            try:
                row = db.execute("SELECT v FROM meta WHERE k = 'created_at'").fetchone()
                if row:
                    record["created_at"] = float(row[0])
                if kind == "queue":
                    parts, items = db.execute(
                        "SELECT COUNT(*), COALESCE(SUM(n), 0) FROM partitions WHERE expires_at > ?",
                        (now,),
                    ).fetchone()
                    record.update(partitions=int(parts), items=int(items))
            finally:
                db.close()
        except sqlite3.Error:
            pass
        out.append(record)
    return out


_HEAD_TASK = ray.remote(num_cpus=0, resources=_HEAD, max_retries=3)
_remote_fns: dict[Callable[..., Any], Any] = {}


def _remote(fn: Callable[..., Any]) -> Any:
    """`fn` as a small task that runs where the store's files are (the head node)."""
    remote = _remote_fns.get(fn)
    if remote is None:
        remote = _remote_fns[fn] = _HEAD_TASK(fn)
    return remote


async def _on_head(fn: Callable[..., T], *args: Any) -> T:
    try:
        result: T = await _remote(fn).remote(*args)
    except rex.RayError as exc:
        raise translate(exc, f"the state store operation {fn.__name__}") from exc
    return result


async def list_names(root: str, kind: str, environment: str) -> list[dict[str, Any]]:
    if _direct_allowed and not ray.is_initialized() and config.ray_address() is None:
        return _scan(root, kind, environment)
    runtime.connect(environment)
    return await _on_head(_scan, root, kind, environment)
