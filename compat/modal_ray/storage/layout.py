"""Where Dict and Queue files live under the state root, and what can be read from them
without a server.

Layout under the state root (`MODAL_RAY_STATE`):

    dicts/<env>/<name>.sqlite                       a named Dict (plus SQLite's -wal/-shm files)
    queues/<env>/<name>.sqlite                      a named Queue
    ephemeral/<env>/<cluster>/<kind>-<id>.sqlite    an ephemeral object of a running cluster

Invariants:
- A named object's path depends only on (root, kind, environment, name), so every process of
  every cluster sharing the root finds the same file.
- An ephemeral object's file sits in a folder of its own cluster; files whose object is gone (its
  creator died without exiting the context) are swept by the next ephemeral object of that
  cluster, and folders of other clusters idle for `EPHEMERAL_IDLE_S` are removed.
- Listing opens files read-only and never starts a server.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .sqlite import remove_files

EPHEMERAL_IDLE_S = 24 * 3600.0  # leftovers of other (dead) clusters are swept after this


def folder_of(kind: str) -> str:
    return "dicts" if kind == "dict" else "queues"


def named_path(root: str | Path, kind: str, environment: str, name: str) -> Path:
    return Path(root) / folder_of(kind) / environment / f"{name}.sqlite"


def ephemeral_path(
    root: str | Path, environment: str, cluster: str, kind: str, object_id: str
) -> Path:
    return Path(root) / "ephemeral" / environment / cluster / f"{kind}-{object_id}.sqlite"


def list_objects(root: str | Path, kind: str, environment: str) -> list[dict[str, Any]]:
    """The named objects of `kind` in `environment`: name, created_at and, for queues, the live
    partitions and items."""
    folder = Path(root) / folder_of(kind) / environment
    out: list[dict[str, Any]] = []
    if not folder.is_dir():
        return out
    now = time.time()
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


def sweep_ephemeral(path: Path, alive: Callable[[str, str], bool]) -> None:
    """Next to the new ephemeral object at `path`: remove the files of objects that are gone
    (`alive(kind, object_id)` is False) and the folders of other clusters idle for
    `EPHEMERAL_IDLE_S`."""
    own = path.parent
    for f in own.glob("*.sqlite"):
        if f == path:
            continue
        kind, _, object_id = f.stem.partition("-")
        if not alive(kind, object_id):
            remove_files(f)
    now = time.time()
    for other in own.parent.iterdir():
        if other == own or not other.is_dir():
            continue
        try:
            newest = max((p.stat().st_mtime for p in other.iterdir()), default=0.0)
        except OSError:
            continue
        if now - newest > EPHEMERAL_IDLE_S:
            shutil.rmtree(other, ignore_errors=True)
