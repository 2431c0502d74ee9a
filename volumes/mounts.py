"""Mounting volumes at absolute paths inside workers, with a private view per process.

Ray's task workers on a node share one filesystem, yet Modal gives each container its own
snapshot of a volume. So a mount path such as `/data` is a symlink, the same for every process
on the node, to `/proc/self/fd/<N>/m-<hash>`: `/proc/self` resolves differently in each process,
and each process that mounts anything keeps file descriptor N open on its own *view* directory,
whose `m-<hash>` entries point at that process's working copies (or at a node-wide directory for
bucket mounts and network file systems). A process that mounted nothing sees nothing there.

Layout of the node-local cache (`MODAL_RAY_VOLUME_CACHE`, default `~/.cache/modal-ray/volumes`):

    procs/<pid>-<start time>/          one view per process (fd N points here)
        m-<hash of mount path>         -> what is mounted at that path for the running input
        wc/<mount set>-<volume id>/    a working copy (see workcopy.py)
        .staging/                      temporary files, renamed into working copies
    shared/                            node-wide bucket copies and FUSE mount points (bucket.py)

Invariants:
- a task-backed function's worker process is its container: the first input it runs mounts the
  volume (latest committed version) and later inputs keep that snapshot until `reload()`; each
  task's changes are committed when the task ends (a Ray worker has no shutdown hook to rely
  on, and Modal commits in the background anyway); a copy unused for `MODAL_RAY_VOLUME_IDLE_S`
  (60 s) is dropped when the process next mounts, as Modal scales idle containers down;
- a container pool replica mounts at start and commits at stop;
- the views of dead processes are removed by the next process that mounts on the node;
- a mount path is a symlink in the node's own filesystem (a container here is a process of the
  node): one that exists and is not ours is never replaced (the error says why and what to do),
  and the links and the directories made for them belong to the run that mounted them and are
  removed when it ends (`modal_ray.host_files`).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import resource
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from modal_ray import config, host_files
from modal_ray.exception import InvalidError

from . import localfs, paths
from .node import cache_root, start_time, view_fd
from .workcopy import VolumeMountSpec, WorkingCopy

_VIEW_LINK_PREFIX = "/proc/self/fd/"


def _entry_name(mount_path: str) -> str:
    return "m-" + hashlib.sha1(mount_path.encode()).hexdigest()[:16]


# -- the process's view ---------------------------------------------------------------------------


class _View:
    """This process's view directory, its fd, and the working copies it holds."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cache = cache_root()
        procs = os.path.join(self.cache, "procs")
        self.root = os.path.join(procs, f"{self.pid}-{start_time(self.pid) or uuid.uuid4().hex}")
        self.staging = os.path.join(self.root, ".staging")
        try:
            os.makedirs(self.staging, exist_ok=True)
            os.makedirs(os.path.join(self.root, "wc"), exist_ok=True)
        except OSError as exc:
            raise InvalidError(
                f"Cannot create the volume cache {self.cache!r} on this node ({exc.strerror})."
                " Set MODAL_RAY_VOLUME_CACHE to a writable local directory."
            ) from None
        self.fd = view_fd()
        self._claim_fd()
        self.lock = threading.RLock()
        self.copies: dict[tuple[str, str], WorkingCopy] = {}
        self.active: dict[str, WorkingCopy] = {}  # volume id -> copy of the running input
        self.active_names: dict[tuple[str, str], WorkingCopy] = {}
        _collect_dead_views(procs, os.path.basename(self.root))
        atexit.register(self.close)

    def _claim_fd(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft <= self.fd:
            want = self.fd + 1 if hard == resource.RLIM_INFINITY else min(hard, self.fd + 1)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), hard))
        try:
            os.fstat(self.fd)
        except OSError:
            pass
        else:
            raise InvalidError(
                f"Cannot mount volumes in this process: file descriptor {self.fd}, which modal-ray"
                " uses for the process's volume view, is already in use. Set"
                " MODAL_RAY_VOLUME_FD on the cluster's nodes to an unused number."
            )
        fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.dup2(fd, self.fd, inheritable=True)  # fork/exec'd children keep the view
        except OSError as exc:
            raise InvalidError(
                f"Cannot mount volumes in this process: file descriptor {self.fd} is above the"
                f" open-file limit ({exc.strerror}). Raise `ulimit -n` for the Ray workers or set"
                " MODAL_RAY_VOLUME_FD lower."
            ) from None
        finally:
            os.close(fd)

    def set_entry(self, mount_path: str, target: str) -> None:
        link = os.path.join(self.root, _entry_name(mount_path))
        with contextlib.suppress(OSError):
            if os.readlink(link) == target:
                return
        tmp = os.path.join(self.staging, uuid.uuid4().hex)
        os.symlink(target, tmp)
        os.replace(tmp, link)

    def clear_entry(self, mount_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.root, _entry_name(mount_path)))

    def link_target(self, mount_path: str) -> str:
        return f"{_VIEW_LINK_PREFIX}{self.fd}/{_entry_name(mount_path)}"

    def copy_dir(self, key: str, vol_id: str) -> str:
        return os.path.join(self.root, "wc", f"{key}-{vol_id}")

    def close(self) -> None:
        """At process exit: the working copies are scratch (changes were committed)."""
        if os.getpid() != self.pid:
            return
        with contextlib.suppress(Exception):
            localfs.remove_tree(self.root)


_view: _View | None = None
_view_lock = threading.Lock()


def view() -> _View:
    global _view
    if _view is None:
        with _view_lock:
            if _view is None:
                _view = _View()
    return _view


def _collect_dead_views(procs: str, mine: str) -> None:
    try:
        names = os.listdir(procs)
    except OSError:
        return
    for name in names:
        if name == mine:
            continue
        pid, _, start = name.partition("-")
        if pid.isdigit() and start_time(pid) == start:
            continue  # alive
        localfs.remove_tree(os.path.join(procs, name))


# -- mount paths ----------------------------------------------------------------------------------


def _ours(target: str) -> bool:
    """Links this module makes: per-process (`/proc/self/fd/N/m-...`) or node-wide ones into
    the cache's shared directory."""
    if target.startswith(_VIEW_LINK_PREFIX) and "/m-" in target:
        return True
    return target.startswith(os.path.join(cache_root(), "shared") + os.sep)


# (claim, mount path, target): links this process made or joined for a run (see host_files).
_held: set[tuple[str, str, str]] = set()


def ensure_mount_link(mount_path: str, target: str, what: str) -> None:
    """Make `mount_path` a symlink to `target`, creating parent directories, held by the running
    input's run: the link and the directories made for it are removed when the run ends (see
    `modal_ray.host_files`). Refuses (with `InvalidError` saying why) when the path exists and
    is not modal-ray's: a container here is a process of the node, and the path is the node's."""
    claim = host_files.current_claim()
    key = (claim, mount_path, target)
    if key in _held:
        with contextlib.suppress(OSError):
            if os.readlink(mount_path) == target:
                return
    try:
        current: str | None = os.readlink(mount_path)
    except OSError:
        current = None
    try:
        with host_files.ledger(claim) as book:
            assert book is not None
            book.noun = "mount path"
            book.link(
                mount_path, target, f"Mounting {what}", current is not None and _ours(current)
            )
    except OSError as exc:
        user = _user()
        raise InvalidError(
            f"Cannot mount {what} at {mount_path}: the worker (running as {user}) cannot create"
            f" it ({exc.strerror}). Mount it under a path the worker can create (for example"
            f" under its home directory or /tmp), or run the Ray workers as a user who can"
            f" create {mount_path}."
        ) from None
    _held.add(key)


def _user() -> str:
    import getpass

    try:
        return f"{getpass.getuser()}, uid {os.getuid()}"
    except Exception:
        return f"uid {os.getuid()}"


# -- mount sets -----------------------------------------------------------------------------------


@dataclass
class MountSet:
    """The volumes, bucket mounts and network file systems of one function (picklable).

    `key` is unique per function per app run: containers of different functions (or runs)
    never share a working copy, even when Ray runs them in the same worker process.
    """

    key: str
    environment: str
    mounts: tuple[Any, ...]

    # Task-backed functions: the worker process is the container.
    def task_start(self) -> None:
        self._activate()

    def task_end(self) -> None:
        self._deactivate(discard=False)

    # Container pools: a replica is the container.
    def container_start(self) -> None:
        self._activate()

    def container_stop(self) -> None:
        self._deactivate(discard=True)

    def reload(self) -> None:
        """Reload every writable volume of this set (`Sandbox.reload_volumes()`)."""
        v = view()
        for spec in self.mounts:
            if isinstance(spec, VolumeMountSpec):
                wc = v.copies.get((self.key, spec.volume_id))
                if wc is not None:
                    wc.reload()

    def host_paths(self) -> list[tuple[str, str]]:
        """(directory on this node, mount path) pairs for an active set: what a sandbox binds."""
        v = view()
        out = []
        for spec in self.mounts:
            link = os.path.join(v.root, _entry_name(spec.path))
            with contextlib.suppress(OSError):
                out.append((os.path.realpath(link), spec.path))
        return out

    def _activate(self) -> None:
        v = view()
        with v.lock:
            _scale_down_idle(v)
            try:
                self._activate_all(v)
            except BaseException:
                # The worker will not call the matching end hook: undo what was mounted.
                with contextlib.suppress(BaseException):
                    self._deactivate(discard=False)
                raise

    def _activate_all(self, v: _View) -> None:
        from . import bucket, nfs

        for spec in self.mounts:
            if isinstance(spec, VolumeMountSpec):
                target = self._volume_copy(v, spec).dir
                v.active[spec.volume_id] = v.copies[(self.key, spec.volume_id)]
                if spec.name is not None:
                    v.active_names[(spec.environment, spec.name)] = v.active[spec.volume_id]
                direct = False
            elif isinstance(spec, bucket.BucketMountSpec):
                target = bucket.node_mount(spec).start_input()
                direct = True
            elif isinstance(spec, nfs.NfsMountSpec):
                target = nfs.node_mount(spec).start_input()
                direct = True
            else:  # pragma: no cover - prepare_mounts builds only these
                raise InvalidError(f"Unknown mount {spec!r}")
            v.set_entry(spec.path, target)
            link = v.link_target(spec.path)
            if direct and _can_link_directly(spec.path, target):
                link = target
            ensure_mount_link(spec.path, link, _what(spec))

    def _volume_copy(self, v: _View, spec: VolumeMountSpec) -> WorkingCopy:
        wc = v.copies.get((self.key, spec.volume_id))
        if wc is None:
            wc = WorkingCopy(spec, v.copy_dir(self.key, spec.volume_id), v.staging)
            try:
                wc.populate()
            except BaseException:
                wc.discard()
                raise
            v.copies[(self.key, spec.volume_id)] = wc
        return wc

    def _deactivate(self, *, discard: bool) -> None:
        from . import bucket, nfs

        v = view()
        errors: list[BaseException] = []
        with v.lock:
            for spec in self.mounts:
                try:
                    if isinstance(spec, VolumeMountSpec):
                        wc = v.copies.get((self.key, spec.volume_id))
                        if wc is None:
                            continue
                        wc.commit()
                        if v.active.get(spec.volume_id) is wc:
                            del v.active[spec.volume_id]
                        named = (spec.environment, spec.name or "")
                        if spec.name is not None and v.active_names.get(named) is wc:
                            del v.active_names[named]
                        if discard:
                            del v.copies[(self.key, spec.volume_id)]
                            wc.discard()
                        else:
                            wc.last_used = time.monotonic()
                    elif isinstance(spec, bucket.BucketMountSpec):
                        bucket.node_mount(spec).end_input()
                    elif isinstance(spec, nfs.NfsMountSpec):
                        nfs.node_mount(spec).end_input()
                except BaseException as exc:  # commit the others before reporting
                    errors.append(exc)
                finally:
                    v.clear_entry(spec.path)
        if errors:
            raise errors[0]


def _scale_down_idle(v: _View) -> None:
    """Task-backed "containers" whose copies sat unused past the idle window are scaled down,
    as Modal scales down idle containers (`MODAL_RAY_VOLUME_IDLE_S`, default 60 s): their
    changes were committed when their last input ended, and the next input mounts afresh."""
    idle = config.settings().volume_idle_s
    now = time.monotonic()
    active = {id(wc) for wc in v.active.values()}
    for key, wc in list(v.copies.items()):
        if id(wc) not in active and wc.last_used and now - wc.last_used > idle:
            del v.copies[key]
            wc.discard()


def _what(spec: Any) -> str:
    label = getattr(spec, "label", None)
    return label if isinstance(label, str) else type(spec).__name__


def _can_link_directly(mount_path: str, target: str) -> bool:
    """Node-wide mounts use a plain symlink (so subprocesses see them too) unless the path is
    already a per-process link: then they stay per-process, which is always correct."""
    try:
        current = os.readlink(mount_path)
    except OSError:
        return not os.path.lexists(mount_path) or os.path.isdir(mount_path)
    return current == target


# -- what user code calls -------------------------------------------------------------------------


def active_copy(volume_id: str | None, environment: str, name: str | None) -> WorkingCopy | None:
    """The working copy of this volume mounted for the running input in this process."""
    v = _view
    if v is None:
        return None
    if volume_id is not None and volume_id in v.active:
        return v.active[volume_id]
    if name is not None:
        return v.active_names.get((environment, name))
    return None


def mount_volume_for_tests(spec: VolumeMountSpec, key: str | None = None) -> MountSet:
    """A one-volume mount set (used by tests and benchmarks to mount outside a worker)."""
    return MountSet(key or uuid.uuid4().hex[:12], spec.environment, (spec,))


__all__ = [
    "MountSet",
    "VolumeMountSpec",
    "active_copy",
    "cache_root",
    "ensure_mount_link",
    "paths",
    "view",
]
