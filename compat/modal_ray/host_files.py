"""What modal-ray writes into a machine's own filesystem for its containers, and who owns it.

On Modal a container has its own filesystem. Here a container is a process of a Ray node (see
README, "What a container is"), so an image's `add_local_file` / `add_local_dir` / `workdir`
and the mount points of volumes land at the paths the program names, in the node's own
filesystem. The rules:

- a path that exists and that modal-ray did not create is never replaced or deleted: asking for
  it raises `InvalidError`, naming the path and the way out (a regular file that already holds
  exactly the wanted bytes is used as it is, and left alone);
- what modal-ray creates (files, the directories made for them, mount links) is recorded in a
  node-local ledger, claimed by the run (app id) that needs it, together with the worker
  processes of that run that use it on the node. It is removed when no live claim remains: when
  the run's app stops (the driver releases its claim on its own node), or once every recorded
  worker process of the run on the node has exited (any later modal-ray process that writes on
  the node sweeps those);
- a recorded file that changed since modal-ray wrote it is no longer modal-ray's: left alone.

`MODAL_RAY_WORKER_FS=private` (on the nodes, or in an image's `env`) says every worker runs in
its own disposable container (a KubeRay pod, a Docker-per-worker setup): paths are then replaced
as Modal replaces them in a container. Created paths are still recorded and removed.

The ledger is `$TMPDIR/modal-ray-<uid>/host-files.json`, changed only under an exclusive `flock`
on a lock file beside it, in a directory private to the user (a ledger that others could write
would let them choose what modal-ray deletes).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from modal_ray import config
from modal_ray.exception import InvalidError

__all__ = [
    "WORKER_FS_ENV",
    "Ledger",
    "current_claim",
    "ledger",
    "private_worker_fs",
    "release_run",
]

WORKER_FS_ENV = "MODAL_RAY_WORKER_FS"
_LEDGER = "host-files.json"
_lock = threading.RLock()  # flock is per open file: threads of one process take this first


def private_worker_fs() -> bool:
    """Whether each worker has a disposable filesystem of its own (`MODAL_RAY_WORKER_FS`)."""
    return config.settings().worker_fs == "private"


def _proc_start(pid: int) -> str:
    """The process's start time (Linux), so that a reused pid is not taken for the old one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _alive(proc: Sequence[Any]) -> bool:
    pid, start = int(proc[0]), str(proc[1])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # exists, owned by someone else
    return not start or _proc_start(pid) in ("", start)


def _me() -> list[Any]:
    pid = os.getpid()
    return [pid, _proc_start(pid)]


def current_claim() -> str:
    """The claim of the running input: its run (app id), or this process outside any run."""
    # Set around every input by the function layer (an internal handoff variable).
    app_id = os.environ.get(config.APP_ID_ENV)
    if app_id:
        return f"run:{app_id}"
    pid, start = _me()
    return f"proc:{pid}-{start}"


def _ledger_dir() -> str:
    uid = getattr(os, "getuid", lambda: 0)()
    return os.path.join(tempfile.gettempdir(), f"modal-ray-{uid}")


def _private_dir(path: str) -> str:
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    uid = getattr(os, "getuid", lambda: st.st_uid)()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        raise InvalidError(
            f"modal-ray keeps the record of the files it creates on this machine in {path}, but"
            " that path is not a directory private to this user. Remove it (or set TMPDIR to a"
            " private directory) and run again."
        )
    return path


def _signature(path: str) -> list[Any] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return ["link", os.readlink(path)]
    if stat.S_ISDIR(st.st_mode):
        return ["dir", st.st_ino]
    return ["file", st.st_ino, st.st_size, st.st_mtime_ns]


def _same_bytes(path: str, data: bytes) -> bool:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
            return False
        with open(path, "rb") as f:
            return f.read() == data
    except OSError:
        return False


def _exists_error(path: str, what: str, detail: str = "", name: str = "path") -> InvalidError:
    if private_worker_fs():
        return InvalidError(
            f"{what} needs {path}, but that path already exists in this worker{detail}, and"
            f" modal-ray cannot replace it. Use another {name}."
        )
    host = socket.gethostname()
    return InvalidError(
        f"{what} needs {path}, but that path already exists on this machine ({host}){detail}"
        " and modal-ray did not create it. A container here is a process of the machine, so"
        " its paths are the machine's own, and modal-ray never replaces or deletes what it did"
        f" not create. Use a {name} that does not exist on the machine, or, where every Ray"
        " worker runs in its own disposable container (such as a KubeRay pod), set"
        f" {WORKER_FS_ENV}=private on the nodes (or in the image's `env`)."
    )


@dataclass
class Ledger:
    """The node's record, open under its lock (use `ledger()`)."""

    claims: dict[str, list[list[Any]]]  # claim -> worker processes [pid, start] using it
    paths: dict[str, dict[str, Any]]  # path -> {"sig": signature, "claims": [claim, ...]}
    claim: str  # the claim that this writer adds paths to
    noun: str = "path"  # what the user calls the path, for errors ("`remote_path`")

    # -- reading ---------------------------------------------------------------------------

    def ours(self, path: str) -> bool:
        """Recorded, and unchanged since modal-ray made it."""
        entry = self.paths.get(path)
        if entry is None:
            return False
        if _signature(path) == entry["sig"]:
            return True
        del self.paths[path]  # changed or gone: no longer ours
        return False

    def _claimed_elsewhere(self, path: str) -> bool:
        return any(c != self.claim for c in self.paths[path]["claims"])

    # -- writing ---------------------------------------------------------------------------

    def join(self) -> None:
        """This process uses the claim's paths (it keeps the claim alive while it runs)."""
        procs = self.claims.setdefault(self.claim, [])
        me = _me()
        if me not in procs:
            procs.append(me)

    def _record(self, path: str) -> None:
        self.join()
        sig = _signature(path)
        entry = self.paths.get(path)
        if entry is None or entry["sig"] != sig:
            entry = self.paths[path] = {"sig": sig, "claims": []}
        if self.claim not in entry["claims"]:
            entry["claims"].append(self.claim)

    def _adopt(self, path: str) -> None:
        """A path of ours that another claim made: this claim needs it too."""
        self.join()
        entry = self.paths[path]
        if self.claim not in entry["claims"]:
            entry["claims"].append(self.claim)

    def make_dirs(self, path: str, what: str) -> None:
        """`mkdir -p`, recording the directories it creates."""
        path = os.path.abspath(path)
        missing: list[str] = []
        probe = path
        while not os.path.lexists(probe):
            missing.append(probe)
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if os.path.lexists(probe) and not os.path.isdir(probe):
            raise _exists_error(probe, what, " as a file", self.noun)
        for ancestor in _ancestors(probe):
            if self.ours(ancestor):
                self._adopt(ancestor)
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                if not os.path.isdir(d):
                    raise _exists_error(d, what, " as a file", self.noun) from None
                continue  # made by someone else meanwhile: not ours
            self._record(d)

    def write_files(self, files: Sequence[tuple[str, bytes, int]], what: str) -> None:
        """Write (path, bytes, mode) files, all or none: every path is checked first."""
        private = private_worker_fs()
        todo: list[tuple[str, bytes, int]] = []
        for path, data, mode in files:
            if not os.path.lexists(path):
                todo.append((path, data, mode))
            elif self.ours(path):
                if _same_bytes(path, data):
                    self._adopt(path)
                elif self._claimed_elsewhere(path) and not private:
                    raise InvalidError(
                        f"{what} needs {path} with other contents than another modal-ray run on"
                        " this machine wrote there and still uses. Containers of both runs are"
                        " processes of this machine and share its paths: use another path, or"
                        " wait for the other run to end."
                    )
                else:
                    todo.append((path, data, mode))
            elif _same_bytes(path, data):
                continue  # the machine already has exactly this file: used as is, kept
            elif private:
                todo.append((path, data, mode))
            else:
                raise _exists_error(path, what, "", self.noun)
        for path, data, mode in todo:
            self.make_dirs(os.path.dirname(path), what)
            tmp = os.path.join(os.path.dirname(path), f".modal-ray-{uuid.uuid4().hex[:12]}")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.chmod(tmp, mode)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._record(path)

    def link(self, path: str, target: str, what: str, replaceable: bool = False) -> None:
        """Make `path` a symlink to `target`. `replaceable`: whatever symlink is there now is
        modal-ray's own (its target names it) and may be replaced."""
        try:
            current: str | None = os.readlink(path)
        except OSError:
            current = None
        if current == target:
            if self.ours(path) or replaceable:
                self._record(path)
            return
        if current is None and os.path.lexists(path):
            if not (private_worker_fs() and os.path.isdir(path) and not os.listdir(path)):
                kind = "a directory" if os.path.isdir(path) else "a file"
                raise _exists_error(path, what, f" as {kind}", self.noun)
            os.rmdir(path)  # an empty directory, in a disposable container
        elif current is not None and not (replaceable or self.ours(path)):
            raise _exists_error(path, what, f" as a symlink to {current!r}", self.noun)
        self.make_dirs(os.path.dirname(path), what)
        tmp = os.path.join(os.path.dirname(path), f".modal-ray-{uuid.uuid4().hex[:12]}")
        os.symlink(target, tmp)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._record(path)

    # -- releasing -------------------------------------------------------------------------

    def release(self, claim: str) -> None:
        self.claims.pop(claim, None)

    def sweep(self) -> None:
        """Drop claims whose processes all exited; remove paths that no claim holds."""
        for claim, procs in list(self.claims.items()):
            live = [p for p in procs if _alive(p)]
            if live:
                self.claims[claim] = live
            else:
                del self.claims[claim]
        orphans = []
        for path, entry in list(self.paths.items()):
            entry["claims"] = [c for c in entry["claims"] if c in self.claims]
            if not entry["claims"]:
                orphans.append(path)
        # Deepest first: files and links, then the directories made for them.
        for path in sorted(orphans, key=lambda p: p.count(os.sep), reverse=True):
            entry = self.paths.pop(path)
            if _signature(path) != entry["sig"]:
                continue  # changed since modal-ray made it: not ours any more
            with contextlib.suppress(OSError):
                if entry["sig"][0] == "dir":
                    os.rmdir(path)  # only when empty: anything put there by others stays
                else:
                    os.unlink(path)


def _ancestors(path: str) -> Iterator[str]:
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


@contextlib.contextmanager
def ledger(claim: str | None = None, *, create: bool = True) -> Iterator[Ledger | None]:
    """The node's ledger, locked, swept, and saved on exit; None when it does not exist and
    `create` is False. An empty ledger is removed with its lock and folder (nothing is left in
    $TMPDIR once no run claims anything)."""
    with _lock:
        lock = _lock_ledger(create)
        if lock is None:
            yield None
            return
        with lock:
            directory = _ledger_dir()
            file = os.path.join(directory, _LEDGER)
            try:
                with open(file, encoding="utf-8") as f:
                    data = json.load(f)
                claims, paths = dict(data["claims"]), dict(data["paths"])
            except (OSError, ValueError, KeyError, TypeError):
                claims, paths = {}, {}
            book = Ledger(claims, paths, claim or current_claim())
            try:
                yield book
            finally:
                book.sweep()
                if not book.claims and not book.paths:
                    # Still under the lock: whoever waits on this lock file finds it unlinked
                    # and starts over (see `_lock_ledger`).
                    for name in (_LEDGER, _LOCK):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(directory, name))
                    with contextlib.suppress(OSError):
                        os.rmdir(directory)
                else:
                    tmp = f"{file}.{os.getpid()}.tmp"
                    with open(tmp, "w", encoding="utf-8") as f:
                        json.dump({"claims": book.claims, "paths": book.paths}, f)
                    os.replace(tmp, file)


_LOCK = "host-files.lock"


def _lock_ledger(create: bool) -> Any:
    """Open and lock the ledger's lock file; None when there is no ledger and `create` is False.

    The last user of an empty ledger unlinks its lock file, so a lock taken on a file that is no
    longer at the path guards nothing: take it again on the one there now."""
    directory = _ledger_dir()
    while True:
        if not create and not os.path.isdir(directory):
            return None
        _private_dir(directory)
        path = os.path.join(directory, _LOCK)
        try:
            lock = open(path, "a")  # noqa: SIM115 - returned, closed by the caller's `with`
        except FileNotFoundError:
            continue  # the folder was removed between the two steps
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - no flock (Windows): one process at a time
            return lock
        try:
            if os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino:
                return lock
        except FileNotFoundError:
            pass
        lock.close()


def release_run(app_id: str | None) -> None:
    """The run ended (its app stopped): remove what its containers created on this node."""
    if not app_id:
        return
    try:
        with ledger(f"run:{app_id}", create=False) as book:
            if book is not None:
                book.release(f"run:{app_id}")
    except (OSError, InvalidError) as exc:
        from .warn import warn_once

        warn_once(
            "host-files.release",
            f"The files that app {app_id}'s containers created on this machine could not be"
            f" removed: {exc}",
        )
