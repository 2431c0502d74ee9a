"""Storage servers hosted in this process: the CLI's direct mode (no cluster configured, so no
Ray is started for a one-shot read or write) and tests.

Invariants:
- One server per file per process, so waits and group commit work as in a hosted server; a
  deleted object's server is dropped, and the next call makes a fresh one over the path.
- Another process (a running cluster's actor) may use the same file at the same time: SQLite's
  locking serialises the writers, and each server notices a file deleted under it.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from . import SERVERS
from .server import StoreServer
from .sqlite import remove_files

_lock = threading.Lock()
_servers: dict[Path, StoreServer] = {}


def server_for(kind: str, path: Path, ttl_s: float | None = None) -> StoreServer:
    with _lock:
        server = _servers.get(path)
        if server is None:
            server = _servers[path] = SERVERS[kind](path, ttl_s=ttl_s)
        return server


def call_sync(
    kind: str, path: Path, method: str, create: bool, args: tuple[Any, ...], ttl_s: float | None
) -> Any:
    server = server_for(kind, path, ttl_s)
    try:
        return server.call(method, create, args)
    finally:
        if method == "destroy":
            with _lock:
                if _servers.get(path) is server:
                    del _servers[path]


async def call(
    kind: str, path: Path, method: str, create: bool, args: tuple[Any, ...], ttl_s: float | None
) -> Any:
    return await asyncio.to_thread(call_sync, kind, path, method, create, args, ttl_s)


def delete(kind: str, path: Path) -> bool:
    """Delete the object's file (through its server if this process has one)."""
    with _lock:
        server = _servers.pop(path, None)
    if server is not None:
        return bool(server.destroy(False))
    return remove_files(path)
