"""Who owns which folder of the node's sandbox roots (`$TMPDIR/modal-ray-sandboxes-<uid>/`).

Each supervisor has one subfolder, locked for its life; folders of dead supervisors are swept.
Light on imports: the driver sweeps at exit, after its embedded Ray (and supervisor) ended.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

OWNER_LOCK = ".owner.lock"
SETUP_GRACE_S = 60.0  # longer than any supervisor takes from making its folder to locking it


def sandboxes_root(base_dir: str | None = None) -> Path:
    """The node's folder of sandbox roots: one subfolder per supervisor that has lived here."""
    return Path(base_dir or tempfile.gettempdir()) / f"modal-ray-sandboxes-{os.getuid()}"


def sweep_dead_owners(base_dir: str | None = None) -> None:
    """Remove the folders of supervisors that died without `shutdown` (their Ray ended under
    them), and the node's folder itself once it is empty.

    A live supervisor holds an exclusive lock on `<folder>/.owner.lock` (the lock goes with its
    process), so a folder whose lock can be taken is dead; one without a lock file is a
    supervisor being set up right now (left alone), unless it is empty and older than
    `SETUP_GRACE_S` (a supervisor killed while it was being set up, or an older version's).
    """
    root = sandboxes_root(base_dir)
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for folder in entries:
        try:
            lock = os.open(folder / OWNER_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            _remove_if_abandoned(folder)
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its supervisor is alive
        else:
            remove_tree(folder)
        finally:
            os.close(lock)
    with contextlib.suppress(OSError):
        root.rmdir()  # only if empty; a supervisor starting now makes it again


def _remove_if_abandoned(folder: Path) -> None:
    with contextlib.suppress(OSError):
        if time.time() - folder.lstat().st_mtime > SETUP_GRACE_S:
            folder.rmdir()  # only if empty


def remove_tree(path: Path) -> None:
    """Remove a tree, also where the sandbox left folders without write permission."""

    def _retry(func: Any, target: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            func(target)

    shutil.rmtree(path, onerror=_retry)
    shutil.rmtree(path, ignore_errors=True)
