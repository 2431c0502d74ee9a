"""CloudBucketMount on a worker node: a FUSE mount where the node allows it, else a mirror.

Both are node-wide (every process on the node sees the same files, as with Modal's mountpoint
mounts), under `<volume cache>/shared/cbm/<hash of bucket, prefix, endpoint, key, mode>/`:

- `fuse` (the node has `/dev/fuse`, and `fusepy` with libfuse is installed): a daemon process
  (fuse_daemon.py) serves the bucket through s3fs; reads stream on demand, nothing is downloaded
  up front. It exits on its own when no live process on the node holds a lease on it.
- `copy` (the fallback, or `MODAL_RAY_CBM_MODE=copy`): the `key_prefix` subtree is mirrored to a
  local directory when an input starts (only new or changed objects are downloaded) and local
  changes are uploaded, and local deletions deleted, when it ends. A warning says so once per
  process; `MODAL_RAY_CBM_MAX_BYTES` (default 50 GiB) caps what one sync may download.

`read_only=True`: the FUSE mount is read-only; the mirror is write-protected (see
localfs.protect) and never uploads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from modal_ray import config
from modal_ray.exception import InvalidError
from modal_ray.warn import warn_once

from . import localfs, paths
from .node import cache_root, start_time


@dataclass(frozen=True, slots=True)
class BucketMountSpec:
    """One CloudBucketMount at one path, with its credentials resolved by the caller."""

    path: str
    bucket_name: str
    bucket_endpoint_url: str | None
    key_prefix: str  # "" or ending in "/"
    credentials: tuple[tuple[str, str], ...]
    read_only: bool
    requester_pays: bool
    force_path_style: bool

    @property
    def label(self) -> str:
        return f"CloudBucketMount s3://{self.bucket_name}/{self.key_prefix}"

    def remote_root(self) -> str:
        return f"{self.bucket_name}/{self.key_prefix}".rstrip("/")

    def digest(self, mode: str) -> str:
        creds = dict(self.credentials)
        key = creds.get("AWS_ACCESS_KEY_ID") or creds.get("GOOGLE_ACCESS_KEY_ID") or ""
        raw = json.dumps(
            [self.bucket_endpoint_url, self.bucket_name, self.key_prefix, key, self.read_only, mode]
        )
        return hashlib.sha1(raw.encode()).hexdigest()[:20]


def s3fs_options(spec: BucketMountSpec) -> dict[str, Any]:
    """s3fs arguments: the endpoint and the Secret's keys (AWS_* or GOOGLE_* HMAC keys)."""
    creds = dict(spec.credentials)
    options: dict[str, Any] = {"use_listings_cache": False}
    key = creds.get("AWS_ACCESS_KEY_ID") or creds.get("GOOGLE_ACCESS_KEY_ID")
    secret = creds.get("AWS_SECRET_ACCESS_KEY") or creds.get("GOOGLE_ACCESS_KEY_SECRET")
    if key and secret:
        options["key"] = key
        options["secret"] = secret
    if creds.get("AWS_SESSION_TOKEN"):
        options["token"] = creds["AWS_SESSION_TOKEN"]
    client_kwargs: dict[str, Any] = {}
    if spec.bucket_endpoint_url:
        client_kwargs["endpoint_url"] = spec.bucket_endpoint_url
    region = creds.get("AWS_REGION") or creds.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    if spec.requester_pays:
        options["requester_pays"] = True
    if spec.force_path_style:
        options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
    return options


def make_fs(spec: BucketMountSpec) -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **s3fs_options(spec))


# -- node-wide locking ----------------------------------------------------------------------------


@contextlib.contextmanager
def node_lock(path: str) -> Iterator[None]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- the mirror (no FUSE) -------------------------------------------------------------------------


class Mirror:
    """A local directory kept in step with a remote fsspec directory, shared by the node."""

    def __init__(
        self,
        fs: Any,
        remote_root: str,
        base: str,
        *,
        read_only: bool,
        label: str,
        warn_copy: bool = True,
    ) -> None:
        self.fs = fs
        self.remote_root = remote_root.rstrip("/")
        self.base = base
        self.data = os.path.join(base, "data")
        self.staging = os.path.join(base, "staging")
        self.index_path = os.path.join(base, "index.json")
        self.lock_path = os.path.join(base, "lock")
        self.read_only = read_only
        self.label = label
        self.warn_copy = warn_copy
        self._thread_lock = threading.Lock()
        os.makedirs(self.data, exist_ok=True)
        os.makedirs(self.staging, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, list[Any]]]:
        with self._thread_lock, node_lock(self.lock_path):
            try:
                with open(self.index_path) as f:
                    index: dict[str, list[Any]] = json.load(f)
            except (FileNotFoundError, json.JSONDecodeError):
                index = {}
            before = json.dumps(index, sort_keys=True)
            yield index
            if json.dumps(index, sort_keys=True) != before:
                tmp = self.index_path + f".{uuid.uuid4().hex}"
                with open(tmp, "w") as f:
                    json.dump(index, f)
                os.replace(tmp, self.index_path)

    def _local(self, rel: str) -> str:
        return os.path.join(self.data, rel)

    def _stat_key(self, rel: str) -> list[int] | None:
        try:
            st = os.lstat(self._local(rel))
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def _listing(self) -> dict[str, dict[str, Any]]:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self.remote_root)
        try:
            found = self.fs.find(self.remote_root, detail=True, withdirs=True)
        except FileNotFoundError:
            return {}
        out: dict[str, dict[str, Any]] = {}
        prefix = self.remote_root + "/"
        for key, info in found.items():
            if not key.startswith(prefix):
                continue
            rel = key[len(prefix) :].rstrip("/")
            if not rel:
                continue
            try:
                safe = paths.volume_path(rel)
            except InvalidError:
                safe = ""
            if safe != rel:
                warn_once(
                    f"cbm:unsafe:{key}",
                    f"{self.label}: skipping object {key!r}: its name is not a safe relative path.",
                )
                continue
            out[rel] = info
        return out

    def pull(self) -> None:
        """Bring remote changes in; local changes not yet pushed are kept."""
        with self._locked() as index:
            listing = self._listing()
            todo: list[tuple[str, str, int]] = []
            dirs: list[str] = []
            for rel, info in listing.items():
                if info.get("type") == "directory":
                    dirs.append(rel)
                    continue
                etag = str(info.get("ETag") or info.get("etag") or info.get("mtime") or "")
                tag = f"{etag}:{info.get('size', 0)}"
                known = index.get(rel)
                local = self._stat_key(rel)
                if known is not None and known[0] == tag and local == known[1:]:
                    continue
                if known is not None and local is not None and local != known[1:]:
                    continue  # changed here and not pushed yet: the local write wins for now
                todo.append((rel, tag, int(info.get("size", 0))))
            gone = [
                rel for rel in index if rel not in listing and self._stat_key(rel) == index[rel][1:]
            ]
            if not todo and not gone and all(os.path.isdir(self._local(d)) for d in dirs):
                return
            total = sum(size for _, _, size in todo)
            limit = config.settings().cbm_max_bytes
            if total > limit:
                raise InvalidError(
                    f"{self.label}: this node has no FUSE, and mirroring it would download"
                    f" {total / 2**30:.1f} GiB (limit {limit / 2**30:.1f} GiB,"
                    " MODAL_RAY_CBM_MAX_BYTES). Use a narrower key_prefix, raise the limit, or"
                    " enable FUSE on the workers (docs/operations.md)."
                )
            if self.read_only:
                localfs.unprotect(self.data)
            try:
                for rel in gone:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._local(rel))
                    del index[rel]
                for rel in sorted(dirs):
                    paths.safe_parent(self.data, rel + "/x")
                for rel, tag, _size in todo:
                    paths.safe_parent(self.data, rel)
                    tmp = os.path.join(self.staging, uuid.uuid4().hex)
                    try:
                        self.fs.get_file(f"{self.remote_root}/{rel}", tmp)
                        os.replace(tmp, self._local(rel))
                    finally:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(tmp)
                    key = self._stat_key(rel)
                    if key is not None:
                        index[rel] = [tag, *key]
            finally:
                if self.read_only:
                    localfs.protect(self.data, immutable=localfs.is_root_user())
            if todo and self.warn_copy:
                warn_once(
                    f"cbm:copy:{self.base}",
                    f"{self.label}: FUSE is not available on this node, so the bucket is mirrored"
                    f" to {self.data} ({len(todo)} objects, {total / 2**20:.1f} MiB copied now)"
                    + (
                        ""
                        if self.read_only
                        else "; local changes are uploaded when each input ends"
                    )
                    + ". Install fusepy and libfuse and give the workers /dev/fuse to stream"
                    " instead (docs/operations.md).",
                )

    def push(self) -> None:
        """Upload new and changed files, delete removed ones (read-write mounts only)."""
        if self.read_only:
            return
        with self._locked() as index:
            seen: set[str] = set()
            for root, dirnames, filenames in os.walk(self.data):
                dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(root, d))]
                for name in filenames:
                    full = os.path.join(root, name)
                    rel = os.path.relpath(full, self.data).replace(os.sep, "/")
                    if os.path.islink(full):
                        continue
                    seen.add(rel)
                    key = self._stat_key(rel)
                    known = index.get(rel)
                    if key is None or (known is not None and known[1:] == key):
                        continue
                    remote = f"{self.remote_root}/{rel}"
                    self.fs.put_file(full, remote)
                    info = self.fs.info(remote)
                    etag = str(info.get("ETag") or info.get("etag") or info.get("mtime") or "")
                    index[rel] = [f"{etag}:{info.get('size', 0)}", *key]
            for rel in [r for r in index if r not in seen]:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(f"{self.remote_root}/{rel}")
                del index[rel]


# -- FUSE -----------------------------------------------------------------------------------------


def fuse_available() -> str:
    """ "" when this node can serve FUSE mounts, else why not."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by the worker"
    try:
        import fuse  # noqa: F401 - fusepy, which loads libfuse
    except (ImportError, OSError) as exc:
        return f"fusepy/libfuse is not usable ({exc})"
    if os.geteuid() != 0 and shutil.which("fusermount") is None:
        return "fusermount is not installed"
    return ""


def is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == real for line in f)
    except OSError:
        return False


def _unmount(path: str, *, lazy: bool = False) -> None:
    if os.geteuid() == 0:
        command = ["umount", "-l", path] if lazy else ["umount", path]
    else:
        command = ["fusermount", "-uz" if lazy else "-u", path]
    with contextlib.suppress(OSError):
        subprocess.call(command, stderr=subprocess.DEVNULL)


class FuseMount:
    def __init__(self, spec: BucketMountSpec, base: str) -> None:
        self.spec = spec
        self.base = base
        self.mountpoint = os.path.join(base, "mnt")
        self.leases = os.path.join(base, "leases")
        os.makedirs(self.leases, exist_ok=True)
        me = os.getpid()

        with open(os.path.join(self.leases, f"{me}-{start_time(me)}"), "w"):
            pass

    def ensure(self) -> None:
        with node_lock(os.path.join(self.base, "lock")):
            if is_mounted(self.mountpoint):
                try:
                    os.stat(self.mountpoint)
                    return
                except OSError:  # the daemon died (killed): clear the stale mount, start again
                    _unmount(self.mountpoint, lazy=True)
            os.makedirs(self.mountpoint, exist_ok=True)
            log = os.path.join(self.base, "daemon.log")
            payload = json.dumps(
                {
                    "mountpoint": self.mountpoint,
                    "leases": self.leases,
                    "root": self.spec.remote_root(),
                    "read_only": self.spec.read_only,
                    "options": s3fs_options(self.spec),
                }
            )
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "modal_ray.volumes.fuse_daemon"],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    close_fds=True,
                )
                assert proc.stdin is not None
                proc.stdin.write(payload.encode())
                proc.stdin.close()
            # The process detaches (forks) so that it outlives this worker, whose direct
            # children Ray kills when the worker exits; it writes daemon.pid itself.
            failed = proc.wait(timeout=30) != 0
            deadline = time.monotonic() + 30
            while not failed and time.monotonic() < deadline:
                if is_mounted(self.mountpoint):
                    return
                time.sleep(0.1)
            with open(log, "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace")
            raise InvalidError(f"{self.spec.label}: the FUSE mount did not come up: {tail}")

    def start_input(self) -> str:
        self.ensure()
        return self.mountpoint

    def stop(self) -> None:
        """Unmount and stop the daemon now (tests, operators); it also exits on its own."""
        import signal

        _unmount(self.mountpoint)
        with (
            contextlib.suppress(OSError, ValueError),
            open(os.path.join(self.base, "daemon.pid")) as f,
        ):
            os.kill(int(f.read()), signal.SIGTERM)

    def end_input(self) -> None:
        return None


class MirrorMount:
    def __init__(self, spec: BucketMountSpec, base: str) -> None:
        self.mirror = Mirror(
            make_fs(spec), spec.remote_root(), base, read_only=spec.read_only, label=spec.label
        )

    def start_input(self) -> str:
        self.mirror.pull()
        return self.mirror.data

    def end_input(self) -> None:
        self.mirror.push()


_nodes: dict[BucketMountSpec, Any] = {}
_nodes_lock = threading.Lock()


def node_mount(spec: BucketMountSpec) -> FuseMount | MirrorMount:

    with _nodes_lock:
        found = _nodes.get(spec)
        if found is not None:
            return found  # type: ignore[no-any-return]
        mode = config.settings().cbm_mode
        why = fuse_available() if mode != "copy" else "MODAL_RAY_CBM_MODE=copy"
        if mode == "fuse" and why:
            raise InvalidError(f"{spec.label}: MODAL_RAY_CBM_MODE=fuse, but {why}.")
        chosen = "copy" if why else "fuse"
        base = os.path.join(cache_root(), "shared", "cbm", spec.digest(chosen))
        node: FuseMount | MirrorMount = (
            FuseMount(spec, base) if chosen == "fuse" else MirrorMount(spec, base)
        )
        _nodes[spec] = node
        return node
