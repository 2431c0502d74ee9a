"""Filesystem snapshots of a sandbox: what its code wrote into its private root, as a tar.

Only the sandbox's own files are taken: not the system directories, `/etc` files, interpreter
and agent bound in from the node (their mount points are skipped), not its volumes, and not
special files. Symlinks are kept as symlinks (never followed). The archive is bounded.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from modal_ray.exception import SnapshotCreationError

from . import isolation

SNAPSHOT_LIMIT = 512 * 1024 * 1024  # bytes of file data one snapshot may hold


def _bound_paths(volume_paths: list[str]) -> set[str]:
    """Paths (relative to the root) that are mount points of what the node binds in."""
    skip = set(isolation.SYSTEM_DIRS)
    skip |= {f"etc/{entry}" for entry in isolation.ETC_ENTRIES}
    skip |= {"proc", "dev", isolation.PYTHON_PATH.lstrip("/"), isolation.AGENT_PATH.lstrip("/")}
    skip |= {p.lstrip("/") for p in volume_paths}
    return skip


def snapshot_tar(root: Path, volume_paths: list[str]) -> bytes:
    """A gzip'd tar of the sandbox's own files under `root` (its `/`)."""
    skip = _bound_paths(volume_paths)
    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in list(dirnames):
                rel = os.path.join(rel_dir, name)
                if rel in skip:
                    dirnames.remove(name)
            for name in filenames + [
                d for d in dirnames if os.path.islink(os.path.join(dirpath, d))
            ]:
                rel = os.path.join(rel_dir, name)
                if rel in skip:
                    continue
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                    continue  # FIFOs, sockets, devices are not files of an image
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
                if total > SNAPSHOT_LIMIT:
                    raise SnapshotCreationError(
                        f"The sandbox's files are over the {SNAPSHOT_LIMIT}-byte snapshot limit;"
                        " keep large data in a Volume."
                    )
                tar.add(full, arcname=rel, recursive=False)
    return buffer.getvalue()
