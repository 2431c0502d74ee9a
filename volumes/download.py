"""Downloads for `modal volume get` and `modal nfs get`: safe local writes.

Where files go (like `cp -r`): a remote file goes to LOCAL when LOCAL is not an existing
directory, else into it under its own name; a remote directory's contents go to LOCAL when LOCAL
does not exist yet, else into `LOCAL/<directory name>/`. `-` writes file contents to stdout.

Every output path is checked before anything is written (an existing file is refused without
`--force`), entry names come from the store already canonical, and no write follows a symlink
inside the destination, so a download cannot land outside LOCAL.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from modal_ray.exception import InvalidError

from . import localfs, paths


@dataclass(frozen=True, slots=True)
class Item:
    path: str  # canonical path in the volume
    kind: str  # "f", "d" or "l"
    target: str = ""  # symlink target


def plan(
    items: Iterable[Item], remote: str, remote_is_dir: bool, local: str
) -> list[tuple[Item, str]]:
    """(item, relative output path) pairs; the relative path is "" for LOCAL itself."""
    base = remote if remote_is_dir else paths.parent_of(remote)
    into_existing = os.path.isdir(local)
    out = []
    for item in items:
        rel = item.path[len(base) :].lstrip("/") if base else item.path
        if remote_is_dir and into_existing and remote:
            rel = paths.join(remote.rsplit("/", 1)[-1], rel)
        elif not remote_is_dir and not into_existing:
            rel = ""
        out.append((item, rel))
    return out


def download(
    items: list[Item],
    remote: str,
    remote_is_dir: bool,
    local: str,
    *,
    force: bool,
    read: Callable[[str], Iterator[bytes]],
) -> int:
    """Write `items` under `local` (or to stdout for "-"); returns the number of files."""
    if local == "-":
        count = 0
        for item in items:
            if item.kind == "f":
                for chunk in read(item.path):
                    sys.stdout.buffer.write(chunk)
                count += 1
        sys.stdout.buffer.flush()
        return count
    planned = plan(items, remote, remote_is_dir, local)
    root = local if (remote_is_dir or os.path.isdir(local)) else os.path.dirname(local) or "."
    for item, rel in planned:
        out = os.path.join(local, rel) if rel else local
        if item.kind != "d" and os.path.lexists(out) and not force:
            raise InvalidError(
                f"Output path '{out}' already exists. Use --force to overwrite the output directory"
            )
    os.makedirs(root, exist_ok=True)
    count = 0
    for item, rel in planned:
        if rel:
            dest_root, dest_rel = local, rel
        else:
            dest_root, dest_rel = root, os.path.basename(local)
        os.makedirs(dest_root, exist_ok=True)
        if item.kind == "d":
            paths.safe_parent(dest_root, dest_rel + "/x")
            continue
        parent = paths.safe_parent(dest_root, dest_rel)
        dest = os.path.join(parent, dest_rel.rsplit("/", 1)[-1])
        tmp = os.path.join(parent, f".modal-download-{uuid.uuid4().hex}")
        try:
            if item.kind == "l":
                if paths.link_target_inside(item.path, item.target) is None:
                    continue
                os.symlink(item.target, tmp)
            else:
                fd = paths.open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "wb") as f:
                    for chunk in read(item.path):
                        f.write(chunk)
                count += 1
            if os.path.isdir(dest) and not os.path.islink(dest):
                localfs.remove_tree(dest)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return count
