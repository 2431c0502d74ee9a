"""Dict and Queue storage, engine-neutral: one SQLite file per object and the server that owns it.

Role: the rules of `modal.Dict` and `modal.Queue` storage (tables, TTLs, partitions, FIFO,
blocking waits, limits, request ids for retries, group commit), in plain Python. A backend only
hosts a server object (`modal_ray.backends.ray.store`: one named actor per object) and carries
calls to it; the CLI's direct mode and the unit tests run the same servers in-process
(`local.py`). Nothing here imports an engine.

Modules: `sqlite.py` (the file, group commit), `server.py` (dispatch, waits, upkeep),
`dict_server.py`, `queue_server.py`, `layout.py` (paths, listing, ephemeral sweep), `local.py`
(in-process hosting).
"""

from __future__ import annotations

import os

from .dict_server import DICT_LEN_CAP, DICT_TTL_S, DictServer
from .queue_server import QUEUE_MAX_ITEMS, QUEUE_MAX_PARTITIONS, QueueServer
from .server import StoreServer
from .sqlite import Database, sync_mode

SERVERS: dict[str, type[StoreServer]] = {"dict": DictServer, "queue": QueueServer}


def dict_ttl() -> float:
    """`MODAL_RAY_DICT_TTL`: seconds a Dict entry lives without reads or writes, for servers
    started from now on [7 days, Modal's]."""
    raw = os.environ.get("MODAL_RAY_DICT_TTL")
    return float(raw) if raw else DICT_TTL_S


def store_sync() -> str:
    """`MODAL_RAY_STORE_SYNC`: SQLite's `synchronous` for servers started from now on
    [`normal`; `full` fsyncs every commit]."""
    return sync_mode(os.environ.get("MODAL_RAY_STORE_SYNC"))


__all__ = [
    "DICT_LEN_CAP",
    "DICT_TTL_S",
    "QUEUE_MAX_ITEMS",
    "QUEUE_MAX_PARTITIONS",
    "SERVERS",
    "Database",
    "DictServer",
    "QueueServer",
    "StoreServer",
    "dict_ttl",
    "store_sync",
    "sync_mode",
]
