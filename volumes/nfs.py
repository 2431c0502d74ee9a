"""NetworkFileSystem (legacy) mounts: shared, writable, no commit or reload.

An NFS is a directory of plain files in the volume store (`data/<id>/files/`). On a local or
shared-filesystem store, the mount path links straight to that directory, so writes are seen by
every container at once, as on Modal. On an object store (`s3://`), each node mirrors it
(bucket.Mirror): remote changes are pulled when an input starts and local ones pushed when it
ends (last write wins per file).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from modal_ray.exception import InvalidError, NotFoundError

from . import localfs, paths
from .bucket import Mirror
from .node import cache_root
from .store import StoreConfig, get_store


@dataclass(frozen=True, slots=True)
class NfsMountSpec:
    path: str
    store: StoreConfig
    store_id: str
    nfs_id: str
    name: str | None
    environment: str

    @property
    def label(self) -> str:
        return (
            f"NetworkFileSystem {self.name!r}" if self.name else f"NetworkFileSystem {self.nfs_id}"
        )


class _Direct:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)

    def start_input(self) -> str:
        return self.dir

    def end_input(self) -> None:
        return None


class _Mirrored:
    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror

    def start_input(self) -> str:
        self.mirror.pull()
        return self.mirror.data

    def end_input(self) -> None:
        self.mirror.push()


_nodes: dict[NfsMountSpec, _Direct | _Mirrored] = {}
_lock = threading.Lock()


def node_mount(spec: NfsMountSpec) -> _Direct | _Mirrored:

    with _lock:
        found = _nodes.get(spec)
        if found is not None:
            return found
        store = get_store(spec.store)
        if store.store_id(create=False) != spec.store_id:
            raise InvalidError(
                f"Cannot mount {spec.label}: the volume store {spec.store.describe()!r} seen from"
                " this node is not the one the app was started with. Set MODAL_RAY_VOLUMES to a"
                " store every node shares (docs/operations.md)."
            )
        root = store.files_root(spec.nfs_id)
        node: _Direct | _Mirrored
        if store.local:
            node = _Direct(root)
        else:
            digest = hashlib.sha1(f"{spec.store.url}|{spec.nfs_id}".encode()).hexdigest()[:20]
            base = os.path.join(cache_root(), "shared", "nfs", digest)
            remote = store.b  # the store's fsspec filesystem
            node = _Mirrored(
                Mirror(remote.fs, root, base, read_only=False, label=spec.label, warn_copy=False)  # type: ignore[attr-defined]
            )
        _nodes[spec] = node
        return node


# -- file operations from anywhere (the SDK and `modal nfs`) ---------------------------------------


@dataclass(frozen=True, slots=True)
class NfsEntry:
    path: str  # relative to the file system's root
    kind: str  # "f", "d" or "l"
    mtime: float
    size: int


class NfsFiles:
    """Plain files of one network file system, on the local disk or through fsspec. Every path
    is checked with `paths.volume_path`; local symlinks are never followed out of the root."""

    def __init__(self, store: Any, nfs_id: str) -> None:
        self.store = store
        self.root = store.files_root(nfs_id)
        self.local = bool(store.local)

    def _full(self, rel: str) -> str:
        return str(self.store.b.join(self.root, rel)) if rel else str(self.root)

    def _check_inside(self, rel: str) -> str:
        """The real local path of `rel`, refusing symlinks that lead out of the root."""
        full = self._full(rel)
        real = os.path.realpath(full)
        root = os.path.realpath(self.root)
        if real != root and not real.startswith(root + os.sep):
            raise InvalidError(f"Refusing to follow {rel!r}: it leads outside the file system.")
        return real

    def write(self, rel: str, fileobj: IO[bytes]) -> int:
        if not rel:
            raise InvalidError("A file path is needed, not the root.")
        if self.local:
            os.makedirs(self.root, exist_ok=True)
            parent = paths.safe_parent(self.root, rel)
            tmp = os.path.join(parent, f".tmp-{uuid.uuid4().hex}")
            size = 0
            try:
                fd = paths.open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "wb") as out:
                    while chunk := fileobj.read(8 * 1024 * 1024):
                        out.write(chunk)
                        size += len(chunk)
                os.replace(tmp, self._full(rel))  # atomic, and replaces a symlink, not its target
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            return size
        data = fileobj.read()
        self.store.b.fs.pipe_file(self._full(rel), data)
        return len(data)

    def read(self, rel: str) -> Iterator[bytes]:
        if self.local:
            real = self._check_inside(rel)
            if os.path.isdir(real):
                raise IsADirectoryError(f"{rel or '/'} is a directory")
            try:
                f = open(real, "rb")  # noqa: SIM115 - closed by the generator
            except FileNotFoundError:
                raise FileNotFoundError(f"No such file: {rel}") from None
        else:
            try:
                f = self.store.b.open(self._full(rel))
            except FileNotFoundError:
                raise FileNotFoundError(f"No such file: {rel}") from None
        return _chunks(f)

    def list(self, rel: str, *, recursive: bool) -> builtins.list[NfsEntry]:
        if self.local:
            real = self._check_inside(rel)
            if not os.path.lexists(real):
                raise NotFoundError(f"No such file or directory: {rel or '/'}")
            if not os.path.isdir(real):
                st = os.stat(real)
                return [NfsEntry(rel, "f", st.st_mtime, st.st_size)]
            out = []
            for base, dirnames, filenames in os.walk(real):
                for name in sorted(dirnames) + sorted(filenames):
                    full = os.path.join(base, name)
                    st = os.lstat(full)
                    kind = "l" if os.path.islink(full) else "d" if name in dirnames else "f"
                    child = os.path.relpath(full, os.path.realpath(self.root)).replace(os.sep, "/")
                    out.append(NfsEntry(child, kind, st.st_mtime, st.st_size if kind == "f" else 0))
                if not recursive:
                    break
                dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(base, d))]
            return out
        fs = self.store.b.fs
        full = self._full(rel)
        with contextlib.suppress(Exception):
            fs.invalidate_cache(full)
        if not fs.exists(full):
            if rel:
                raise NotFoundError(f"No such file or directory: {rel}")
            return []
        if fs.isfile(full):
            info = fs.info(full)
            return [NfsEntry(rel, "f", _mtime(info), int(info.get("size", 0)))]
        found = fs.find(full, detail=True, withdirs=True, maxdepth=None if recursive else 1)
        out = []
        prefix = self.root.rstrip("/") + "/"
        for key, info in sorted(found.items()):
            if key.rstrip("/") == full.rstrip("/") or not key.startswith(prefix):
                continue
            kind = "d" if info.get("type") == "directory" else "f"
            out.append(
                NfsEntry(
                    key[len(prefix) :].rstrip("/"), kind, _mtime(info), int(info.get("size", 0))
                )
            )
        return out

    def remove(self, rel: str, *, recursive: bool) -> None:
        if not rel:
            raise InvalidError("Refusing to remove the root of the file system.")
        full = self._full(rel)
        if self.local:
            parent = os.path.dirname(full)
            self._check_inside(paths.parent_of(rel))
            if not os.path.lexists(full):
                raise FileNotFoundError(f"No such file or directory: {rel}")
            if os.path.isdir(full) and not os.path.islink(full):
                if not recursive and os.listdir(full):
                    raise InvalidError(f"{rel} is a directory; pass recursive=True (`-r`)")
                localfs.remove_tree(full)
            else:
                os.unlink(os.path.join(parent, os.path.basename(full)))
            return
        fs = self.store.b.fs
        if not fs.exists(full):
            raise FileNotFoundError(f"No such file or directory: {rel}")
        if fs.isdir(full) and not recursive:
            raise InvalidError(f"{rel} is a directory; pass recursive=True (`-r`)")
        fs.rm(full, recursive=recursive)


def _mtime(info: dict[str, Any]) -> float:
    modified = info.get("LastModified") or info.get("mtime") or info.get("updated") or 0
    return modified.timestamp() if hasattr(modified, "timestamp") else float(modified)


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    with f:
        while chunk := f.read(8 * 1024 * 1024):
            yield chunk
