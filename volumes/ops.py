"""Volume operations on the committed state, as the SDK (`vol.listdir`, `batch_upload`, ...) and
the `modal volume` CLI use them. Blocking; every user path goes through `paths.volume_path`
first, so a refused path touches nothing.
"""

from __future__ import annotations

import concurrent.futures
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from modal_ray.exception import InvalidError, NotFoundError

from . import paths
from .manifest import DIR, FILE, LINK, Changes, Entry, Manifest
from .store import Store, VolumeMeta

_UPLOAD_THREADS = 8


def _label(path: str) -> str:
    return "/" + path


def lookup_entry(manifest: Manifest, path: str) -> tuple[str, Entry]:
    """The entry at `path` (symlinks inside the volume followed), or `NotFoundError`."""
    real, entry = manifest.resolve(path)
    if entry is None:
        raise NotFoundError(f"No such file or directory: {_label(path)}")
    return real, entry


def list_entries(
    store: Store, meta: VolumeMeta, path: str, *, recursive: bool
) -> list[tuple[str, Entry]]:
    """Modal's listing rules: a directory lists its contents, a file lists itself."""
    if path.endswith("**"):
        raise InvalidError(
            "Glob patterns in `volume get` and `Volume.listdir()` are deprecated. Please pass"
            " recursive=True instead. For the CLI, just remove the glob suffix."
        )
    if path.endswith("*"):
        raise InvalidError(
            "Glob patterns in `volume get` and `Volume.listdir()` are deprecated. Please remove"
            " the glob `*` suffix."
        )
    rel = paths.volume_path(path)
    manifest = store.latest(meta.id)
    if rel == "":
        return list(manifest.under("", recursive=recursive))
    entry = manifest.entries.get(rel)
    if entry is None:
        real, entry = lookup_entry(manifest, rel)
        if entry.kind != DIR:
            return [(rel, entry)]
        # A symlinked directory: list the target's entries under the link's name.
        return [(rel + p[len(real) :], e) for p, e in manifest.under(real, recursive=recursive)]
    if entry.kind != DIR:
        return [(rel, entry)]
    return list(manifest.under(rel, recursive=recursive))


def open_file_entry(store: Store, meta: VolumeMeta, path: str) -> Entry:
    rel = paths.volume_path(path)
    manifest = store.latest(meta.id)
    try:
        _real, entry = lookup_entry(manifest, rel)
    except NotFoundError:
        raise FileNotFoundError(f"No such file: {_label(rel)}") from None
    if entry.kind == DIR:
        raise IsADirectoryError(f"{_label(rel)} is a directory")
    return entry


def read_chunks(store: Store, meta: VolumeMeta, entry: Entry) -> Iterator[bytes]:
    if entry.size == 0:
        return iter(())
    return store.iter_blob(meta.id, entry.ref)


def remove(store: Store, meta: VolumeMeta, path: str, *, recursive: bool) -> None:
    rel = paths.volume_path(path)

    def build(latest: Manifest) -> Changes:
        if rel == "":
            if not recursive:
                raise InvalidError("`/` is a directory; pass recursive=True to empty the volume.")
            return dict.fromkeys(latest.entries)
        entry = latest.entries.get(rel)
        if entry is None:
            raise FileNotFoundError(f"No such file or directory: {_label(rel)}")
        changes: dict[str, Entry | None] = {rel: None}
        if entry.kind == DIR:
            below = [p for p, _ in latest.under(rel, recursive=True)]
            if below and not recursive:
                raise InvalidError(
                    f"{_label(rel)} is a directory; pass recursive=True (`-r`) to delete it"
                )
            changes.update(dict.fromkeys(below))
        return changes

    store.publish(meta.id, build)


def copy(
    store: Store, meta: VolumeMeta, src_paths: Sequence[str], dst_path: str, *, recursive: bool
) -> None:
    """`cp` inside the volume: files share their blobs, so no data is copied."""
    if isinstance(src_paths, str):
        raise InvalidError("`src_paths` is a list of paths; pass [path] for a single file.")
    if not src_paths:
        raise InvalidError("`copy_files` needs at least one source path.")
    srcs = [paths.volume_path(p, what="source path") for p in src_paths]
    dst = paths.volume_path(dst_path, what="destination path")

    def build(latest: Manifest) -> Changes:
        dst_real, dst_entry = latest.resolve(dst)
        into_dir = (dst_entry is not None and dst_entry.kind == DIR) or len(srcs) > 1
        if len(srcs) > 1 and dst_entry is not None and dst_entry.kind != DIR:
            raise InvalidError(f"Copying several files: {_label(dst)} is not a directory.")
        changes: dict[str, Entry | None] = {}
        now = time.time()
        for src in srcs:
            src_real, src_entry = lookup_entry(latest, src)
            target = paths.join(dst_real, src.rsplit("/", 1)[-1]) if into_dir else dst_real
            if target == "" or (paths.is_under(target, src_real) and src_entry.kind == DIR):
                raise InvalidError(f"Cannot copy {_label(src)} into itself ({_label(dst)}).")
            latest.check_parents_are_dirs(target)
            if src_entry.kind == DIR:
                if not recursive:
                    raise InvalidError(
                        f"{_label(src)} is a directory; pass recursive=True (`-r`) to copy it"
                    )
                changes[target] = Entry.directory(now)
                for p, e in latest.under(src_real, recursive=True):
                    changes[target + p[len(src_real) :]] = e
            else:
                changes[target] = src_entry
        _check_inodes(latest, changes)
        return changes

    store.publish(meta.id, build)


def _check_inodes(latest: Manifest, changes: Changes) -> None:
    new = sum(1 for p, e in changes.items() if e is not None and p not in latest.entries)
    if new and len(latest.entries) + new > paths.MAX_INODES:
        raise paths.no_space(len(latest.entries) + new)


# -- uploads -----------------------------------------------------------------------------------


@dataclass(slots=True)
class UploadItem:
    remote: str  # canonical volume path
    source: str | IO[bytes] | None  # local path, file object, or None for a directory
    mode: int
    mtime: float


def plan_file(local_file: Any, remote_path: Any, mode: int | None) -> UploadItem:
    remote_str = remote_path.as_posix() if hasattr(remote_path, "as_posix") else remote_path
    if not isinstance(remote_str, str):
        raise InvalidError(f"remote_path must be a string, not {type(remote_path).__name__}.")
    if remote_str.endswith("/"):
        raise ValueError(f"remote_path ({remote_str}) must refer to a file - cannot end with /")
    remote = paths.volume_path(remote_str, what="remote path")
    if remote == "":
        raise InvalidError("remote_path must name a file, not the volume's root.")
    if isinstance(local_file, str | Path):
        local = os.fspath(local_file)
        st = os.stat(local)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidError(f"{local!r} is not a regular file.")
        return UploadItem(remote, local, mode or stat.S_IMODE(st.st_mode), st.st_mtime)
    if not hasattr(local_file, "read"):
        raise InvalidError(
            f"put_file takes a local path or a binary file object, not {type(local_file).__name__}."
        )
    return UploadItem(remote, local_file, mode or 0o644, time.time())


def plan_directory(local_path: Any, remote_path: Any, recursive: bool = True) -> list[UploadItem]:
    local = Path(local_path)
    if not local.is_dir():
        raise InvalidError(f"{str(local)!r} is not a directory.")
    remote_str = remote_path.as_posix() if hasattr(remote_path, "as_posix") else str(remote_path)
    base = paths.volume_path(remote_str, what="remote path")
    items: list[UploadItem] = []
    if base:
        items.append(UploadItem(base, None, 0o755, local.stat().st_mtime))
    walker = sorted(local.rglob("*") if recursive else local.glob("*"))
    for sub in walker:
        rel = sub.relative_to(local).as_posix()
        remote = paths.volume_path(paths.join(base, rel), what="remote path")
        if sub.is_file():  # follows symlinks to files, as Modal does
            st = sub.stat()
            items.append(UploadItem(remote, str(sub), stat.S_IMODE(st.st_mode), st.st_mtime))
        elif sub.is_dir() and not sub.is_symlink():
            items.append(UploadItem(remote, None, 0o755, sub.stat().st_mtime))
    return items


def _conflicts(latest: Manifest, items: Sequence[UploadItem], force: bool) -> None:
    for item in items:
        latest.check_parents_are_dirs(item.remote)
        existing = latest.entries.get(item.remote)
        if existing is None:
            continue
        if item.source is None:
            if existing.kind != DIR:
                raise FileExistsError(f"{_label(item.remote)}: a file is in the way of a directory")
            continue
        if existing.kind == DIR:
            raise FileExistsError(
                f"{_label(item.remote)}: a directory exists there; uploads never replace"
                " directories"
            )
        if not force:
            raise FileExistsError(
                f"{_label(item.remote)}: already exists (use force=True or `--force` to overwrite)"
            )


def upload(store: Store, meta: VolumeMeta, items: Sequence[UploadItem], *, force: bool) -> None:
    """Upload files (and directories) in one commit; nothing is written if any file would be
    overwritten without `force`."""
    if not items:
        return
    by_path: dict[str, UploadItem] = {}
    for item in items:
        by_path[item.remote] = item  # the last put of a path wins, as in Modal
    planned = list(by_path.values())
    _conflicts(store.latest(meta.id), planned, force)

    def one(item: UploadItem) -> tuple[str, Entry]:
        if item.source is None:
            return item.remote, Entry(DIR, 0, item.mtime, item.mode, "")
        if isinstance(item.source, str):
            blob = store.put_blob_file(meta.id, item.source)
            size = os.stat(item.source).st_size
        else:
            blob, size = store.put_blob_fileobj(meta.id, item.source)
        return item.remote, Entry(FILE, size, item.mtime, item.mode, blob)

    files = [i for i in planned if i.source is not None]
    dirs = [one(i) for i in planned if i.source is None]
    # File objects are read here, in order, on this thread; paths upload in parallel.
    uploaded = [one(i) for i in files if not isinstance(i.source, str)]
    with concurrent.futures.ThreadPoolExecutor(_UPLOAD_THREADS) as pool:
        uploaded += list(pool.map(one, [i for i in files if isinstance(i.source, str)]))
    changes: dict[str, Entry | None] = dict(dirs + uploaded)

    def build(latest: Manifest) -> Changes:
        _conflicts(latest, planned, force)
        _check_inodes(latest, changes)
        return changes

    store.publish(meta.id, build)


def symlink_entry(link_path: str, target: str, mtime: float) -> Entry | None:
    """A symlink entry, or None when it points outside the volume (never committed)."""
    if paths.link_target_inside(link_path, target) is None:
        return None
    return Entry(LINK, len(target), mtime, 0o777, target)
