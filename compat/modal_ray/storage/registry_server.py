"""The app registry of one environment: deployed apps, their versions, objects and code.

Role: the rules of deployed apps, in plain Python over one SQLite file
(`<state root>/registry/<environment>.sqlite`). A backend hosts one server per environment (the
Ray backend: a detached named actor on the head, `modal_ray.backends.ray.registry`); unit tests
run it in-process.

Tables:
- `apps`: one row per app name: its id (stable across redeploys; a name deployed again after
  `stop` gets a new app, as in Modal), state (`deployed` / `stopped`), current version, times.
- `versions`: one row per deploy of an app: number (1, 2, ...), tag, deployment id (the nonce
  its container pools are named with), time.
- `objects`: for each version, each Function / Cls: tag, kind, object id (stable per app and
  tag across versions, for `Function.from_id`) and the record (bytes pickled by the client; the
  server never unpickles them).
- `web_ports`: the gateway port of each deployed web endpoint (app id, label), so that its URL
  stays the same across redeploys.
- `schedules`: for each version, the schedule of each scheduled Function (tag, spec as JSON,
  `modal_ray.schedules.ScheduleSpec`); the environment's scheduler fires the current versions'
  (`active_schedules`).
- `packages` / `package_refs`: the code packages versions need (content-addressed URIs and their
  bytes), so that a package the engine dropped can be restored.

Invariants:
- `reserve(name)` gives the app id of `name`, creating the app row if needed (state `deploying`
  until its first deploy): records name their pools after that id, so they are compiled after
  `reserve` and registered with `deploy`.
- `deploy` is one transaction: the version number, its objects and packages appear together or
  not at all, so two concurrent deploys of one name yield versions n and n+1, each complete, and
  the later one is current.
- Lookups only see apps in state `deployed`, and only the current version's objects.
- `NotFoundError` messages name what was looked up (app, object, environment).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, ClassVar

from modal_ray import naming
from modal_ray.exception import InvalidError, NotFoundError
from modal_ray.ids import new_id

from .server import StoreServer

KINDS = ("function", "class", "server")
_ID_PREFIX = {"function": "fu", "class": "cs", "server": "sv"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS requests(rid TEXT PRIMARY KEY, result BLOB, ts REAL);
CREATE TABLE IF NOT EXISTS apps(
    name TEXT PRIMARY KEY,
    app_id TEXT UNIQUE NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions(
    app_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    tag TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    deployed_at REAL NOT NULL,
    PRIMARY KEY(app_id, version)
);
CREATE TABLE IF NOT EXISTS objects(
    app_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    tag TEXT NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY(app_id, version, tag)
);
CREATE INDEX IF NOT EXISTS objects_by_id ON objects(object_id);
CREATE TABLE IF NOT EXISTS packages(uri TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS web_ports(
    app_id TEXT NOT NULL,
    label TEXT NOT NULL,
    port INTEGER NOT NULL,
    PRIMARY KEY(app_id, label)
);
CREATE TABLE IF NOT EXISTS schedules(
    app_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    tag TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY(app_id, version, tag)
);
CREATE TABLE IF NOT EXISTS package_refs(
    app_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    uri TEXT NOT NULL,
    PRIMARY KEY(app_id, version, uri)
);
"""


def registry_path(root: str | Path, environment: str) -> Path:
    return Path(root) / "registry" / f"{environment}.sqlite"


def _kind_name(kind: str) -> str:
    return {"function": "Function", "server": "Server"}.get(kind, "Cls")


class RegistryServer(StoreServer):
    """The registry of one environment (see the module docstring)."""

    KIND: ClassVar[str] = "registry"
    SCHEMA: ClassVar[str] = SCHEMA
    OPERATIONS: ClassVar[frozenset[str]] = StoreServer.OPERATIONS | frozenset(
        {
            "reserve",
            "deploy",
            "lookup_app",
            "lookup",
            "lookup_id",
            "list_apps",
            "stop",
            "package",
            "is_deployed",
            "history",
            "rollback",
            "active_schedules",
            "app_objects",
            "web_ports",
            "set_web_ports",
        }
    )

    def __init__(self, path: str | Path, *, environment: str = "", sync: str = "") -> None:
        super().__init__(path, sync=sync)
        self.environment = environment

    # -- deploying -------------------------------------------------------------------------

    def reserve(self, create: bool, name: str) -> str:
        """The app id of `name` (made on first use; stable across redeploys)."""

        def op(db: sqlite3.Connection) -> str:
            row = db.execute("SELECT app_id, state FROM apps WHERE name = ?", (name,)).fetchone()
            if row is not None and row[1] != "stopped":
                return str(row[0])
            # A new app, or a new one under the name of a stopped app (as in Modal, a stopped
            # app is not restarted: its versions stay in the history under its own id).
            app_id = naming.new_app_id()
            now = time.time()
            db.execute(
                "INSERT OR REPLACE INTO apps(name, app_id, state, version, created_at,"
                " updated_at) VALUES (?, ?, 'deploying', 0, ?, ?)",
                (name, app_id, now, now),
            )
            return app_id

        return self.db.write(op, create=True)

    def deploy(
        self,
        create: bool,
        name: str,
        app_id: str,
        tag: str,
        deployment_id: str,
        objects: list[tuple[str, str, bytes]],
        packages: dict[str, bytes],
        schedules: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Register a new version of `name` (reserved as `app_id`) with `objects` (tag, kind,
        record bytes), the code `packages` it needs and its `schedules` (tag -> spec JSON); it
        becomes the current version."""
        for tag_, kind, _ in objects:
            if kind not in KINDS:
                raise InvalidError(f"Unknown object kind {kind!r} for {tag_!r}.")

        def op(db: sqlite3.Connection) -> dict[str, Any]:
            row = db.execute("SELECT app_id, version FROM apps WHERE name = ?", (name,)).fetchone()
            if row is None or row[0] != app_id:
                raise NotFoundError(
                    f"App {name!r} was removed while it was being deployed; deploy it again."
                )
            version = int(row[1]) + 1
            now = time.time()
            db.execute(
                "INSERT INTO versions(app_id, version, tag, deployment_id, deployed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (app_id, version, tag, deployment_id, now),
            )
            for obj_tag, kind, record in objects:
                known = db.execute(
                    "SELECT object_id FROM objects WHERE app_id = ? AND tag = ? AND kind = ?"
                    " LIMIT 1",
                    (app_id, obj_tag, kind),
                ).fetchone()
                object_id = known[0] if known else new_id(_ID_PREFIX[kind])
                db.execute(
                    "INSERT INTO objects(app_id, version, tag, kind, object_id, record)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (app_id, version, obj_tag, kind, object_id, record),
                )
            for uri, data in packages.items():
                db.execute("INSERT OR IGNORE INTO packages(uri, data) VALUES (?, ?)", (uri, data))
                db.execute(
                    "INSERT OR IGNORE INTO package_refs(app_id, version, uri) VALUES (?, ?, ?)",
                    (app_id, version, uri),
                )
            for sched_tag, spec in (schedules or {}).items():
                db.execute(
                    "INSERT INTO schedules(app_id, version, tag, spec) VALUES (?, ?, ?, ?)",
                    (app_id, version, sched_tag, spec),
                )
            db.execute(
                "UPDATE apps SET state = 'deployed', version = ?, updated_at = ? WHERE name = ?",
                (version, now, name),
            )
            n = len(schedules or {})
            return {"app_id": app_id, "version": version, "name": name, "schedules": n}

        return self.db.write(op, create=True)

    def stop(self, create: bool, name_or_id: str) -> dict[str, Any]:
        """Stop a deployed app: lookups no longer find it; returns its name and id."""

        def op(db: sqlite3.Connection) -> dict[str, Any]:
            row = db.execute(
                "SELECT name, app_id, state FROM apps WHERE name = ? OR app_id = ?",
                (name_or_id, name_or_id),
            ).fetchone()
            if row is None or row[2] == "stopped":
                raise NotFoundError(self._no_app(name_or_id))
            db.execute(
                "UPDATE apps SET state = 'stopped', updated_at = ? WHERE app_id = ?",
                (time.time(), row[1]),
            )
            return {"name": row[0], "app_id": row[1]}

        return self.db.write(op, create=True)

    def rollback(self, create: bool, name: str, version: int | None) -> dict[str, Any]:
        """Deploy again the objects of an earlier version (default: the one before the current)
        as a new version, as Modal records a rollback; its pools are that version's."""

        def op(db: sqlite3.Connection) -> dict[str, Any]:
            app_name, app_id, current, _, _ = self._app_row(db, name)
            target = current - 1 if version is None else version
            row = db.execute(
                "SELECT tag, deployment_id FROM versions WHERE app_id = ? AND version = ?",
                (app_id, target),
            ).fetchone()
            if row is None or target >= current or target < 1:
                raise NotFoundError(
                    f"App {app_name!r} has no earlier version {target} to roll back to (current:"
                    f" {current}); see `modal app history {app_name}`."
                )
            new = current + 1
            now = time.time()
            db.execute(
                "INSERT INTO versions(app_id, version, tag, deployment_id, deployed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (app_id, new, f"rollback to v{target}", row[1], now),
            )
            db.execute(
                "INSERT INTO objects(app_id, version, tag, kind, object_id, record)"
                " SELECT app_id, ?, tag, kind, object_id, record FROM objects"
                " WHERE app_id = ? AND version = ?",
                (new, app_id, target),
            )
            db.execute(
                "INSERT INTO package_refs(app_id, version, uri)"
                " SELECT app_id, ?, uri FROM package_refs WHERE app_id = ? AND version = ?",
                (new, app_id, target),
            )
            scheduled = db.execute(
                "INSERT INTO schedules(app_id, version, tag, spec)"
                " SELECT app_id, ?, tag, spec FROM schedules WHERE app_id = ? AND version = ?",
                (new, app_id, target),
            ).rowcount
            db.execute(
                "UPDATE apps SET version = ?, updated_at = ? WHERE app_id = ?", (new, now, app_id)
            )
            return {
                "name": app_name,
                "app_id": app_id,
                "version": new,
                "restored": target,
                "schedules": scheduled,
            }

        return self.db.write(op, create=True)

    def history(self, create: bool, name: str) -> list[dict[str, Any]]:
        """The versions of a deployed app, oldest first."""

        def op(db: sqlite3.Connection) -> list[dict[str, Any]]:
            _, app_id, _, _, _ = self._app_row(db, name)
            rows = db.execute(
                "SELECT version, tag, deployed_at FROM versions WHERE app_id = ? ORDER BY version",
                (app_id,),
            ).fetchall()
            return [{"version": v, "tag": t, "deployed_at": at} for v, t, at in rows]

        return self.db.read(op, create=True)

    # -- lookups ------------------------------------------------------------------------------

    def _no_app(self, name: str) -> str:
        return (
            f"App {name!r} not found in environment {self.environment!r}: deploy it with"
            " `modal deploy`, or check the name and the environment (`-e` / MODAL_ENVIRONMENT)."
        )

    def _app_row(self, db: sqlite3.Connection, name: str) -> tuple[str, str, int, float, float]:
        row = db.execute(
            "SELECT name, app_id, version, created_at, updated_at FROM apps"
            " WHERE (name = ? OR app_id = ?) AND state = 'deployed'",
            (name, name),
        ).fetchone()
        if row is None:
            raise NotFoundError(self._no_app(name))
        return row  # type: ignore[no-any-return]

    def lookup_app(self, create: bool, name: str) -> dict[str, Any]:
        def op(db: sqlite3.Connection) -> dict[str, Any]:
            app_name, app_id, version, created, updated = self._app_row(db, name)
            return {
                "name": app_name,
                "app_id": app_id,
                "version": version,
                "created_at": created,
                "updated_at": updated,
            }

        return self.db.read(op, create=True)

    def lookup(
        self, create: bool, app_name: str, tag: str, kind: str, version: int | None = None
    ) -> dict[str, Any]:
        """The record of `tag` in the current (or given) version of `app_name`: kind, object id,
        record bytes, app id and version. `NotFoundError` names what is missing, and says so
        when `tag` is of the other kind."""

        def op(db: sqlite3.Connection) -> dict[str, Any]:
            name, app_id, current, _, _ = self._app_row(db, app_name)
            wanted = current if version is None else version
            rows = db.execute(
                "SELECT tag, kind, object_id, record FROM objects WHERE app_id = ? AND version = ?",
                (app_id, wanted),
            ).fetchall()
            if not rows:
                raise NotFoundError(f"App {name!r} has no version {wanted}.")
            for obj_tag, obj_kind, object_id, record in rows:
                if obj_tag != tag:
                    continue
                if obj_kind != kind:
                    raise NotFoundError(
                        f"{tag!r} in app {name!r} is a {_kind_name(obj_kind)}, not a"
                        f" {_kind_name(kind)}: look it up with"
                        f" `modal.{_kind_name(obj_kind)}.from_name({name!r}, {tag!r})`."
                    )
                return {
                    "kind": obj_kind,
                    "object_id": object_id,
                    "record": record,
                    "app_id": app_id,
                    "version": wanted,
                }
            same = sorted(t for t, k, _, _ in rows if k == kind)
            listed = ", ".join(repr(t) for t in same) or "none"
            raise NotFoundError(
                f"{_kind_name(kind)} {tag!r} not found in app {name!r} (environment"
                f" {self.environment!r}); its {_kind_name(kind)}s: {listed}."
            )

        return self.db.read(op, create=True)

    def lookup_id(self, create: bool, object_id: str) -> dict[str, Any]:
        """The current record of the object with id `object_id` (any deployed app)."""

        def op(db: sqlite3.Connection) -> dict[str, Any]:
            row = db.execute(
                "SELECT o.kind, o.record, o.app_id, o.version, o.tag FROM objects o"
                " JOIN apps a ON a.app_id = o.app_id AND a.version = o.version"
                " WHERE o.object_id = ? AND a.state = 'deployed'",
                (object_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"No deployed object with id {object_id!r} in environment {self.environment!r}."
                )
            kind, record, app_id, version, tag = row
            return {
                "kind": kind,
                "object_id": object_id,
                "record": record,
                "app_id": app_id,
                "version": version,
                "tag": tag,
            }

        return self.db.read(op, create=True)

    def list_apps(self, create: bool) -> list[dict[str, Any]]:
        def op(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT a.name, a.app_id, a.state, a.version, a.created_at, a.updated_at,"
                " (SELECT COUNT(*) FROM objects o WHERE o.app_id = a.app_id"
                "  AND o.version = a.version)"
                " FROM apps a WHERE a.state != 'deploying' ORDER BY a.created_at"
            ).fetchall()
            return [
                {
                    "name": r[0],
                    "app_id": r[1],
                    "state": r[2],
                    "version": r[3],
                    "created_at": r[4],
                    "updated_at": r[5],
                    "objects": r[6],
                }
                for r in rows
            ]

        return self.db.read(op, create=True)

    def app_objects(self, create: bool, app_id: str) -> list[dict[str, Any]]:
        """Tag, kind and object id of each object of the app's current version (for the
        operations CLI; never the records, which carry resolved secrets)."""

        def op(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT o.tag, o.kind, o.object_id FROM objects o JOIN apps a"
                " ON a.app_id = o.app_id AND a.version = o.version WHERE a.app_id = ?"
                " ORDER BY o.tag",
                (app_id,),
            ).fetchall()
            return [{"tag": t, "kind": k, "object_id": i} for t, k, i in rows]

        return self.db.read(op, create=True)

    # -- web endpoints' ports: an app's URLs stay the same across its redeploys ----------------

    def web_ports(self, create: bool, app_id: str) -> dict[str, int]:
        """label -> port of the app's deployed web endpoints (their gateway origins)."""
        rows = self.db.read(
            lambda db: db.execute(
                "SELECT label, port FROM web_ports WHERE app_id = ?", (app_id,)
            ).fetchall(),
            create=True,
        )
        return {str(label): int(port) for label, port in rows}

    def set_web_ports(self, create: bool, app_id: str, ports: dict[str, int]) -> None:
        """Remember the ports the app's endpoints got (kept for endpoints not named here)."""

        def op(db: sqlite3.Connection) -> None:
            for label, port in ports.items():
                db.execute(
                    "INSERT OR REPLACE INTO web_ports(app_id, label, port) VALUES (?, ?, ?)",
                    (app_id, label, int(port)),
                )

        self.db.write(op, create=True)

    def active_schedules(self, create: bool) -> list[dict[str, Any]]:
        """The schedules of the current versions of deployed apps: app name, id, version, when
        that version was deployed, function tag and spec (JSON)."""

        def op(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT a.name, a.app_id, a.version, v.deployed_at, s.tag, s.spec FROM apps a"
                " JOIN versions v ON v.app_id = a.app_id AND v.version = a.version"
                " JOIN schedules s ON s.app_id = a.app_id AND s.version = a.version"
                " WHERE a.state = 'deployed' ORDER BY a.name, s.tag"
            ).fetchall()
            keys = ("app_name", "app_id", "version", "deployed_at", "tag", "spec")
            return [dict(zip(keys, r, strict=True)) for r in rows]

        return self.db.read(op, create=True)

    def package(self, create: bool, uri: str) -> bytes | None:
        """The bytes of a code package a deployed version needs, or None."""
        row = self.db.read(
            lambda db: db.execute("SELECT data FROM packages WHERE uri = ?", (uri,)).fetchone(),
            create=True,
        )
        return bytes(row[0]) if row else None

    def is_deployed(self, create: bool, app_id: str) -> bool:
        """Is `app_id` a deployment (deployed or being deployed), whose pools no janitor may
        remove?"""
        row = self.db.read(
            lambda db: db.execute("SELECT state FROM apps WHERE app_id = ?", (app_id,)).fetchone(),
            create=True,
        )
        return row is not None and row[0] != "stopped"


__all__ = ["KINDS", "SCHEMA", "RegistryServer", "registry_path"]
