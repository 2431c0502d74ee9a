"""Where this node keeps volume state, and how a process is told apart from a later one.

Shared by the mounts (`mounts.py`), bucket mirrors (`bucket.py`) and network file systems
(`nfs.py`), so none of them imports another for it.
"""

from __future__ import annotations

import os

from modal_ray import config


def cache_root() -> str:
    """The node-local cache (`MODAL_RAY_VOLUME_CACHE`, else under `$XDG_CACHE_HOME`)."""
    explicit = config.settings().volume_cache
    if explicit is not None:
        return os.path.abspath(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "modal-ray", "volumes")


def view_fd() -> int:
    return config.settings().volume_fd


def start_time(pid: int | str) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # Field 22 (starttime), counted after the ")" that closes the command name.
    return data.rsplit(b")", 1)[1].split()[19].decode()


__all__ = ["cache_root", "start_time", "view_fd"]
