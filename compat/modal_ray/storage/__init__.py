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

from modal_ray import config

from .dict_server import DICT_LEN_CAP, DICT_TTL_S, DictServer
from .queue_server import QUEUE_MAX_ITEMS, QUEUE_MAX_PARTITIONS, QueueServer
from .server import StoreServer
from .sqlite import Database, sync_mode

SERVERS: dict[str, type[StoreServer]] = {"dict": DictServer, "queue": QueueServer}


def dict_ttl() -> float:
    """Seconds a Dict entry lives without reads or writes, for servers started from now on
    (`MODAL_RAY_DICT_TTL`, from the settings)."""
    return config.settings().dict_ttl


def store_sync() -> str:
    """SQLite's `synchronous` for servers started from now on (`MODAL_RAY_STORE_SYNC`, from the
    settings)."""
    return sync_mode(config.settings().store_sync)


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
