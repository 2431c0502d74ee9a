"""A container's private working copy of a mounted Volume: Modal's consistency model.

The copy is made from the latest committed version when the volume is mounted, and then changes
only by the container's own writes and by `reload()`. `commit()` finds what changed on disk
since the copy was last synced (size, mtime, inode, mode of each file; added, removed and
replaced entries) and publishes exactly that, so changes other containers committed in the
meantime are kept (last write wins per file).

Invariants:
- nothing here follows a symlink inside the copy when writing: parents are checked to be real
  directories and files are replaced by rename from a private staging directory;
- symlinks that point outside the volume are never committed (a warning names them);
- `reload()` refuses while a file in the copy is open or a process's cwd is inside it ("volume
  busy"), commits pending changes first, and then brings the copy to the latest version;
- a read-only mount's copy is write-protected (see localfs.protect) and never committed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import stat
import threading
import uuid
from dataclasses import dataclass

from modal_ray.exception import InvalidError
from modal_ray.warn import warn_once

from . import localfs, ops, paths
from .manifest import DIR, FILE, LINK, Entry, Manifest
from .store import Store, StoreConfig, get_store

_THREADS = 8


@dataclass(frozen=True, slots=True)
class VolumeMountSpec:
    """One `volumes={path: vol}` entry, resolved by the caller. Picklable."""

    path: str
    store: StoreConfig
    store_id: str
    volume_id: str
    name: str | None
    environment: str
    read_only: bool = False
    sub_path: str = ""  # mount only this directory of the volume ("" = all of it)

    @property
    def label(self) -> str:
        return f"Volume {self.name!r}" if self.name else f"Volume {self.volume_id}"


@dataclass(slots=True)
class _Known:
    """What the copy held at the last sync, to tell the user's changes apart."""

    kind: str
    ref: str = ""  # blob id or link target
    size: int = 0
    mtime_ns: int = 0
    ino: int = 0
    mode: int = 0


def open_store(spec: VolumeMountSpec) -> Store:
    store = get_store(spec.store)
    found = store.store_id(create=False)
    if found != spec.store_id:
        raise InvalidError(
            f"Cannot mount {spec.label}: the volume store {spec.store.describe()!r} seen from this"
            " node is not the one the app was started with"
            + (" (it is empty here)" if found is None else f" (id {found}, not {spec.store_id})")
            + ". On a multi-node cluster, set MODAL_RAY_VOLUMES to a store every node shares"
            " (an s3:// URL or a shared filesystem); see docs/operations.md."
        )
    return store


class WorkingCopy:
    def __init__(self, spec: VolumeMountSpec, directory: str, staging: str) -> None:
        self.spec = spec
        self.dir = directory
        self.staging = staging
        self.store = open_store(spec)
        self.index: dict[str, _Known] = {}
        self.version = 0
        self.lock = threading.RLock()
        self.protected = False
        self.last_used = 0.0  # monotonic time the last input using it ended (task-backed)

    # -- paths between the copy and the volume ------------------------------------------------

    def _vol(self, rel: str) -> str:
        return paths.join(self.spec.sub_path, rel) if self.spec.sub_path else rel

    def _local(self, rel: str) -> str:
        return os.path.join(self.dir, rel) if rel else self.dir

    def _target(self, manifest: Manifest) -> dict[str, Entry]:
        sub = self.spec.sub_path
        if not sub:
            return dict(manifest.entries)
        prefix = sub + "/"
        return {p[len(prefix) :]: e for p, e in manifest.entries.items() if p.startswith(prefix)}

    # -- mount / reload ------------------------------------------------------------------------

    def populate(self) -> None:
        """First sync: the latest committed version (creating `sub_path` if it is missing)."""
        with self.lock:
            os.makedirs(self.dir, exist_ok=True)
            latest = self.store.latest(self.spec.volume_id)
            sub = self.spec.sub_path
            if sub:
                entry = latest.get(sub)
                if entry is None and not self.spec.read_only:
                    latest = self.store.publish(
                        self.spec.volume_id,
                        lambda m: {} if m.get(sub) is not None else {sub: Entry.directory()},
                    )
                    entry = latest.get(sub)
                if entry is not None and entry.kind != DIR:
                    raise InvalidError(
                        f"Cannot mount {sub!r} of {self.spec.label}: it is not a directory."
                    )
            self._sync_to(latest)
            if self.spec.read_only:
                self._protect()

    def reload(self) -> None:
        with self.lock:
            busy = open_files_in(self.dir)
            if busy:
                raise RuntimeError(
                    "volume busy: there are open files preventing the operation: " + busy
                )
            if not self.spec.read_only:
                self.commit()
            else:
                localfs.unprotect(self.dir)
                self.protected = False
            self._sync_to(self.store.latest(self.spec.volume_id))
            if self.spec.read_only:
                self._protect()

    def _protect(self) -> None:
        enforced = localfs.protect(self.dir, immutable=localfs.is_root_user())
        self.protected = True
        if localfs.is_root_user() and not enforced:
            warn_once(
                "volumes:readonly-root",
                f"{self.spec.label} is mounted read-only, but this worker runs as root on a"
                " filesystem without the immutable attribute, so writes under"
                f" {self.spec.path} cannot be refused (they are never committed).",
            )

    def _sync_to(self, manifest: Manifest) -> None:
        """Make the copy equal to `manifest` (the part under sub_path)."""
        target = self._target(manifest)
        index = self.index
        # 1. Remove what is gone or changed kind, deepest first.
        for rel in sorted(index, key=lambda p: p.count("/"), reverse=True):
            t = target.get(rel)
            known = index[rel]
            if t is not None and t.kind == known.kind and (t.kind != LINK or t.ref == known.ref):
                continue
            path = self._local(rel)
            if known.kind == DIR:
                localfs.remove_tree(path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            del index[rel]
        # 2. Directories, shallowest first; then files and links.
        ordered = sorted(target.items(), key=lambda kv: kv[0].count("/"))
        for rel, e in ordered:
            if e.kind == DIR and rel not in index:
                paths.safe_parent(self.dir, rel)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self._local(rel), 0o755)
                index[rel] = _Known(DIR)
        todo = []
        for rel, e in ordered:
            if e.kind == DIR:
                continue
            have = index.get(rel)
            if have is not None and have.ref == e.ref and self._unchanged(rel, have):
                continue
            todo.append((rel, e))
        with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
            for rel, known in pool.map(self._write_entry, todo):
                index[rel] = known
        self.version = manifest.version

    def _write_entry(self, item: tuple[str, Entry]) -> tuple[str, _Known]:
        rel, e = item
        dest = self._local(rel)
        paths.safe_parent(self.dir, rel)
        if e.kind == FILE and self.store.local and not os.path.lexists(dest):
            return rel, self._create_file(dest, e)
        tmp = os.path.join(self.staging, uuid.uuid4().hex)
        try:
            if e.kind == LINK:
                os.symlink(e.ref, tmp)
                os.replace(tmp, dest)
                return rel, _Known(LINK, e.ref)
            if e.size == 0:
                os.close(paths.open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, e.mode))
            elif self.store.local:
                localfs.copy_file(self.store.blob_path(self.spec.volume_id, e.ref), tmp, e.mode)
            else:
                self.store.fetch_blob(self.spec.volume_id, e.ref, tmp)
            os.chmod(tmp, e.mode & 0o7777)
            os.utime(tmp, (e.mtime, e.mtime))
            if os.path.isdir(dest) and not os.path.islink(dest):
                localfs.remove_tree(dest)
            os.replace(tmp, dest)
            st = os.lstat(dest)
            return rel, _Known(FILE, e.ref, st.st_size, st.st_mtime_ns, st.st_ino, e.mode)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _create_file(self, dest: str, e: Entry) -> _Known:
        """A new file straight from a local store's blob (the common case when mounting):
        created exclusively and without following symlinks, so nothing else is touched."""
        fd = paths.open_nofollow(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, e.mode)
        try:
            if e.size:
                src = os.open(
                    self.store.blob_path(self.spec.volume_id, e.ref), os.O_RDONLY | os.O_CLOEXEC
                )
                try:
                    localfs.copy_fd(src, fd, e.size)
                finally:
                    os.close(src)
            os.fchmod(fd, e.mode & 0o7777)
            os.utime(fd, (e.mtime, e.mtime))
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return _Known(FILE, e.ref, st.st_size, st.st_mtime_ns, st.st_ino, e.mode)

    def _unchanged(self, rel: str, known: _Known) -> bool:
        try:
            st = os.lstat(self._local(rel))
        except FileNotFoundError:
            return False
        if known.kind == LINK:
            return stat.S_ISLNK(st.st_mode) and os.readlink(self._local(rel)) == known.ref
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_size == known.size
            and st.st_mtime_ns == known.mtime_ns
            and st.st_ino == known.ino
            and stat.S_IMODE(st.st_mode) == known.mode
        )

    # -- commit --------------------------------------------------------------------------------

    def _scan(self) -> dict[str, tuple[str, os.stat_result, str]]:
        """Everything in the copy now: rel -> (kind, stat, link target)."""
        found: dict[str, tuple[str, os.stat_result, str]] = {}
        stack = [""]
        while stack:
            base = stack.pop()
            try:
                it = os.scandir(self._local(base))
            except FileNotFoundError:
                continue
            with it:
                for entry in it:
                    rel = paths.join(base, entry.name)
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        found[rel] = (LINK, st, os.readlink(entry.path))
                    elif stat.S_ISDIR(st.st_mode):
                        found[rel] = (DIR, st, "")
                        stack.append(rel)
                    elif stat.S_ISREG(st.st_mode):
                        found[rel] = (FILE, st, "")
                    else:
                        warn_once(
                            f"volumes:special:{rel}",
                            f"{self.spec.label}: {rel!r} is not a regular file, directory or"
                            " symlink; it is not committed.",
                        )
        return found

    def dirty(self) -> bool:
        with self.lock:
            return bool(self._changes()[0])

    def _changes(self) -> tuple[dict[str, Entry | None], list[tuple[str, os.stat_result]]]:
        found = self._scan()
        changes: dict[str, Entry | None] = {}
        uploads: list[tuple[str, os.stat_result]] = []
        for rel, (kind, st, target) in found.items():
            known = self.index.get(rel)
            if kind == FILE:
                if (
                    known is None
                    or known.kind != FILE
                    or (st.st_size, st.st_mtime_ns, st.st_ino, stat.S_IMODE(st.st_mode))
                    != (known.size, known.mtime_ns, known.ino, known.mode)
                ):
                    uploads.append((rel, st))
                    changes[rel] = Entry(FILE)  # placeholder until uploaded
            elif kind == DIR:
                if known is None or known.kind != DIR:
                    changes[rel] = Entry(DIR, 0, st.st_mtime, stat.S_IMODE(st.st_mode), "")
            elif known is None or known.kind != LINK or known.ref != target:
                entry = ops.symlink_entry(self._vol(rel), target, st.st_mtime)
                if entry is None:
                    warn_once(
                        f"volumes:escaping-link:{rel}",
                        f"{self.spec.label}: the symlink {rel!r} -> {target!r} points outside the"
                        " volume; it is not committed.",
                    )
                    continue
                changes[rel] = entry
        for rel in self.index:
            if rel not in found:
                changes[rel] = None
        return changes, uploads

    def commit(self) -> bool:
        """Publish this container's changes; False when there was nothing to commit."""
        if self.spec.read_only:
            return False
        with self.lock:
            changes, uploads = self._changes()
            if not changes:
                return False
            vol_id = self.spec.volume_id

            def upload(item: tuple[str, os.stat_result]) -> tuple[str, Entry, _Known]:
                rel, st = item
                blob = self.store.put_blob_file(vol_id, self._local(rel))
                mode = stat.S_IMODE(st.st_mode)
                entry = Entry(FILE, st.st_size, st.st_mtime, mode, blob)
                known = _Known(FILE, blob, st.st_size, st.st_mtime_ns, st.st_ino, mode)
                return rel, entry, known

            uploaded: dict[str, _Known] = {}
            with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
                for rel, entry, known in pool.map(upload, uploads):
                    changes[rel] = entry
                    uploaded[rel] = known
            mapped = {self._vol(rel): e for rel, e in changes.items()}
            self.store.publish(vol_id, lambda _latest: mapped)
            for rel, e in changes.items():
                if e is None:
                    self.index.pop(rel, None)
                elif e.kind == FILE:
                    self.index[rel] = uploaded[rel]
                else:
                    self.index[rel] = _Known(e.kind, e.ref)
            return True

    def discard(self) -> None:
        localfs.remove_tree(self.dir)


def open_files_in(directory: str) -> str:
    """A description of the first open file (or cwd) inside `directory`, or ""."""
    real = os.path.realpath(directory)
    prefix = real + os.sep
    self_pid = str(os.getpid())
    try:
        pids = [p for p in os.listdir("/proc") if re.fullmatch(r"[1-9][0-9]*", p)]
    except OSError:
        return ""
    pids.sort(key=lambda p: p != self_pid)  # this process first
    for pid in pids:
        who = "" if pid == self_pid else f" from process {pid}"
        with contextlib.suppress(OSError):
            cwd = os.readlink(f"/proc/{pid}/cwd")
            if cwd == real or cwd.startswith(prefix):
                return f"cwd{who} is inside volume"
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(prefix):
                return f"path {target[len(prefix) :]} is open{who}"
    return ""
