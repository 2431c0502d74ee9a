"""Durable function calls of one environment: what was spawned, by whom, and how it ended.

Role: the rules of spawned calls on a long-lived cluster, in plain Python over one SQLite file
(`<state root>/calls/<environment>.sqlite`). A backend hosts one server per environment inside
its call keeper (the Ray backend: a detached actor on the head that runs the calls,
`modal_ray.backends.ray.call_keeper`); unit tests run it in-process.

Tables:
- `targets`: what a call runs, pickled by the client (a record, plus the method and parameters
  of a class method), keyed by its digest, so that thousands of calls of one function store it
  once. The server never unpickles it.
- `calls`: one row per spawned call: its parent call (a spawn from inside a running function),
  the app id it belongs to, the function's name, the target, the driver job it is bound to (an
  ephemeral run that is not detached: the call stops with it), its state, its arguments (pickled,
  kept until it ends, so a restarted keeper runs it again) and its outcome (pickled, opaque).

States: `pending` until it ends, then `success`, `failure`, `timeout` or `terminated`
(cancelled). `RETENTION_S` (7 days, as Modal documents) after a call ended its outcome is dropped
and its state becomes `expired`; `TOMBSTONE_S` later the row goes, and the id is unknown.

Invariants:
- `submit` is idempotent per call id (a retried request adds nothing), and a call's outcome is
  written once: `finish` of a call that is no longer pending changes nothing, so a cancel wins
  over a late result and a late result never revives a cancelled call.
- A target stays while a pending call needs it, and `RETENTION_S` after its last use.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, ClassVar

from modal_ray.exception import NotFoundError

from .server import StoreServer

RETENTION_S = 7 * 24 * 3600.0  # results are kept this long after the call ended (Modal: 7 days)
TOMBSTONE_S = 30 * 24 * 3600.0  # then the id answers "expired" this long, then "not found"
OPEN = "pending"
ENDED = ("success", "failure", "timeout", "terminated")
EXPIRED = "expired"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS requests(rid TEXT PRIMARY KEY, result BLOB, ts REAL);
CREATE TABLE IF NOT EXISTS targets(
    digest TEXT PRIMARY KEY,
    blob BLOB NOT NULL,
    used_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calls(
    call_id TEXT PRIMARY KEY,
    parent TEXT,
    app_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    module_name TEXT NOT NULL,
    target TEXT NOT NULL,
    owner_job TEXT,
    state TEXT NOT NULL,
    args BLOB,
    result BLOB,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS calls_by_parent ON calls(parent);
CREATE INDEX IF NOT EXISTS calls_by_state ON calls(state, app_id);
CREATE INDEX IF NOT EXISTS calls_by_end ON calls(finished_at);
"""


def calls_path(root: str | Path, environment: str) -> Path:
    return Path(root) / "calls" / f"{environment}.sqlite"


def expired_message(call_id: str, retention_s: float = RETENTION_S) -> str:
    days = retention_s / 86400
    return (
        f"The result of {call_id} has expired: results of spawned calls are kept for"
        f" {days:g} days after the call ended. Spawn the call again."
    )


class CallsServer(StoreServer):
    """The spawned calls of one environment (see the module docstring)."""

    KIND: ClassVar[str] = "calls"
    SCHEMA: ClassVar[str] = SCHEMA
    OPERATIONS: ClassVar[frozenset[str]] = StoreServer.OPERATIONS | frozenset(
        {
            "submit",
            "target",
            "finish",
            "outcome",
            "cancel",
            "cancel_app",
            "open_calls",
            "graph",
            "busy",
            "owned",
            "expire",
        }
    )

    def __init__(
        self,
        path: str | Path,
        *,
        sync: str = "",
        retention_s: float = RETENTION_S,
        tombstone_s: float = TOMBSTONE_S,
    ) -> None:
        super().__init__(path, sync=sync)
        self.retention_s = retention_s
        self.tombstone_s = tombstone_s

    # -- spawning ----------------------------------------------------------------------------

    def submit(
        self,
        create: bool,
        digest: str,
        target: bytes | None,
        meta: dict[str, Any],
        calls: list[tuple[str, bytes]],
    ) -> list[str]:
        """Record new pending calls of `digest` (its blob is needed once); returns the ids that
        were new. `NotFoundError` if the target is unknown and not given."""
        now = time.time()

        def op(db: sqlite3.Connection) -> list[str]:
            if target is not None:
                db.execute(
                    "INSERT OR REPLACE INTO targets(digest, blob, used_at) VALUES (?, ?, ?)",
                    (digest, target, now),
                )
            else:
                updated = db.execute(
                    "UPDATE targets SET used_at = ? WHERE digest = ?", (now, digest)
                ).rowcount
                if not updated:
                    raise NotFoundError(f"unknown call target {digest}")
            new = []
            for call_id, args in calls:
                cur = db.execute(
                    "INSERT OR IGNORE INTO calls(call_id, parent, app_id, function_name,"
                    " module_name, target, owner_job, state, args, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        call_id,
                        meta.get("parent"),
                        meta.get("app_id") or "",
                        meta.get("function_name") or "",
                        meta.get("module_name") or "",
                        digest,
                        meta.get("owner_job"),
                        OPEN,
                        args,
                        now,
                    ),
                )
                if cur.rowcount:
                    new.append(call_id)
            return new

        return self.db.write(op, create=True)

    def target(self, create: bool, digest: str) -> bytes:
        row = self.db.read(
            lambda db: db.execute(
                "SELECT blob FROM targets WHERE digest = ?", (digest,)
            ).fetchone(),
            create=True,
        )
        if row is None:
            raise NotFoundError(f"unknown call target {digest}")
        return bytes(row[0])

    def finish(self, create: bool, call_id: str, state: str, result: bytes | None) -> bool:
        """Record how a pending call ended; False (nothing changes) if it already had."""
        if state not in ENDED:
            raise ValueError(f"not a final state: {state!r}")

        def op(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE calls SET state = ?, result = ?, args = NULL, finished_at = ?"
                " WHERE call_id = ? AND state = ?",
                (state, result, time.time(), call_id, OPEN),
            )
            return bool(cur.rowcount)

        return self.db.write(op, create=True)

    def cancel(self, create: bool, call_ids: list[str]) -> list[str]:
        """Mark pending calls, and every pending call below them, terminated; the ids marked."""

        def op(db: sqlite3.Connection) -> list[str]:
            marked: list[str] = []
            todo = list(call_ids)
            seen: set[str] = set()
            while todo:
                call_id = todo.pop()
                if call_id in seen:
                    continue
                seen.add(call_id)
                cur = db.execute(
                    "UPDATE calls SET state = 'terminated', args = NULL, finished_at = ?"
                    " WHERE call_id = ? AND state = ?",
                    (time.time(), call_id, OPEN),
                )
                if cur.rowcount:
                    marked.append(call_id)
                todo += [
                    r[0]
                    for r in db.execute(
                        "SELECT call_id FROM calls WHERE parent = ? AND state = ?",
                        (call_id, OPEN),
                    )
                ]
            return marked

        return self.db.write(op, create=True)

    def cancel_app(self, create: bool, app_id: str) -> list[str]:
        """Terminate every pending call of an app run (its client stopped it)."""
        ids = self.db.read(
            lambda db: [
                r[0]
                for r in db.execute(
                    "SELECT call_id FROM calls WHERE state = ? AND app_id = ?", (OPEN, app_id)
                )
            ],
            create=True,
        )
        return self.cancel(create, ids) if ids else []

    # -- reading -------------------------------------------------------------------------------

    def outcome(self, create: bool, call_id: str) -> tuple[str, bytes | None, str]:
        """(state, pickled outcome or None, function name); `NotFoundError` for an unknown id."""
        row = self.db.read(
            lambda db: db.execute(
                "SELECT state, result, function_name, finished_at FROM calls WHERE call_id = ?",
                (call_id,),
            ).fetchone(),
            create=True,
        )
        if row is None:
            raise NotFoundError(
                f"No FunctionCall {call_id!r}: unknown id, or it ended more than"
                f" {(self.retention_s + self.tombstone_s) / 86400:g} days ago."
            )
        state, result, name, finished_at = row
        if state in ENDED and finished_at is not None and self._expired(finished_at):
            return EXPIRED, None, str(name)
        return str(state), (bytes(result) if result is not None else None), str(name)

    def open_calls(self, create: bool) -> list[tuple[str, str, bytes]]:
        """(call id, target digest, arguments) of every pending call, oldest first."""
        return self.db.read(
            lambda db: [
                (str(r[0]), str(r[1]), bytes(r[2] or b""))
                for r in db.execute(
                    "SELECT call_id, target, args FROM calls WHERE state = ? ORDER BY created_at",
                    (OPEN,),
                )
            ],
            create=True,
        )

    def graph(self, create: bool, call_id: str) -> list[dict[str, Any]]:
        """The call and every call spawned below it: dicts of call_id, parent, state,
        function_name and module_name (the root first)."""

        def op(db: sqlite3.Connection) -> list[dict[str, Any]]:
            cols = "call_id, parent, state, function_name, module_name, finished_at"
            root = db.execute(f"SELECT {cols} FROM calls WHERE call_id = ?", (call_id,)).fetchone()
            if root is None:
                raise NotFoundError(f"No FunctionCall {call_id!r}.")
            out, frontier = [root], [call_id]
            while frontier:
                marks = ",".join("?" * len(frontier))
                rows = db.execute(
                    f"SELECT {cols} FROM calls WHERE parent IN ({marks}) ORDER BY created_at",
                    frontier,
                ).fetchall()
                out += rows
                frontier = [r[0] for r in rows]
            return [
                {
                    "call_id": r[0],
                    "parent": r[1],
                    "state": EXPIRED
                    if r[2] in ENDED and r[5] is not None and self._expired(r[5])
                    else r[2],
                    "function_name": r[3],
                    "module_name": r[4],
                }
                for r in out
            ]

        return self.db.read(op, create=True)

    def busy(self, create: bool, app_id: str) -> int:
        """How many calls of an app run are still pending."""
        row = self.db.read(
            lambda db: db.execute(
                "SELECT COUNT(*) FROM calls WHERE state = ? AND app_id = ?", (OPEN, app_id)
            ).fetchone(),
            create=True,
        )
        return int(row[0])

    def owned(self, create: bool) -> list[tuple[str, str]]:
        """(driver job, app id) of the pending calls bound to a driver."""
        return self.db.read(
            lambda db: [
                (str(r[0]), str(r[1]))
                for r in db.execute(
                    "SELECT DISTINCT owner_job, app_id FROM calls"
                    " WHERE state = ? AND owner_job IS NOT NULL",
                    (OPEN,),
                )
            ],
            create=True,
        )

    # -- retention -------------------------------------------------------------------------------

    def _expired(self, finished_at: float) -> bool:
        return time.time() - float(finished_at) > self.retention_s

    def expire(self, create: bool) -> int:
        """Drop the outcomes older than the retention, the rows older than the tombstone time,
        and targets no pending call needs; the number of outcomes dropped."""
        now = time.time()

        def op(db: sqlite3.Connection) -> int:
            dropped = db.execute(
                "UPDATE calls SET result = NULL, state = ? WHERE state != ? AND state != ?"
                " AND finished_at < ?",
                (EXPIRED, EXPIRED, OPEN, now - self.retention_s),
            ).rowcount
            db.execute(
                "DELETE FROM calls WHERE state = ? AND finished_at < ?",
                (EXPIRED, now - self.retention_s - self.tombstone_s),
            )
            db.execute(
                "DELETE FROM targets WHERE used_at < ? AND digest NOT IN"
                " (SELECT target FROM calls WHERE state = ?)",
                (now - self.retention_s, OPEN),
            )
            return int(dropped)

        return self.db.write(op, create=True)

    def upkeep(self) -> None:
        super().upkeep()
        self.expire(True)


__all__ = ["RETENTION_S", "CallsServer", "calls_path", "expired_message"]
