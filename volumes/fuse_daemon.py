"""`python -m modal_ray.volumes.fuse_daemon`: serve one bucket prefix over FUSE on this node.

Started by bucket.FuseMount with a JSON description on stdin (credentials never appear on the
command line). Reads stream through s3fs on demand. Read-only mounts refuse every write with
EROFS. The daemon unmounts and exits once no live process holds a lease (a file named
`<pid>-<start time>` in the leases directory) for a minute.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

_IDLE_EXIT_S = 60.0


def _alive(lease: str) -> bool:
    pid, _, start = lease.partition("-")
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data.rsplit(b")", 1)[1].split()[19].decode() == start


def _watch(leases: str, mountpoint: str) -> None:
    idle_since: float | None = None
    while True:
        time.sleep(5)
        live = 0
        for name in os.listdir(leases):
            if _alive(name):
                live += 1
            else:
                try:
                    os.unlink(os.path.join(leases, name))
                except OSError:
                    pass
        if live:
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since > _IDLE_EXIT_S:
            if os.geteuid() == 0:
                subprocess.call(["umount", "-l", mountpoint])
            else:
                subprocess.call(["fusermount", "-uz", mountpoint])
            os._exit(0)


def main() -> int:
    spec: dict[str, Any] = json.loads(sys.stdin.read())
    # Detach: the starting worker's direct children are killed when it exits, and this mount
    # is shared by the node.
    if os.fork():
        os._exit(0)
    os.setsid()
    with open(os.path.join(os.path.dirname(spec["mountpoint"]), "daemon.pid"), "w") as f:
        f.write(str(os.getpid()))
    import s3fs
    from fsspec.fuse import FUSEr
    from fuse import FUSE, FuseOSError

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **spec["options"])
    root = spec["root"]
    read_only = bool(spec["read_only"])

    uid, gid = os.getuid(), os.getgid()

    class Ops(FUSEr):  # type: ignore[misc]
        """fsspec's FUSE operations with mountpoint-s3's write rules: new files and truncated
        rewrites are written sequentially and uploaded on close; no appends, seeks while
        writing, or renames (EPERM); everything is EROFS on a read-only mount."""

        def getattr(self, path: str, fh: Any = None) -> Any:
            data = super().getattr(path, fh)
            data["st_uid"], data["st_gid"] = uid, gid
            return data

        def open(self, path: str, flags: int) -> Any:
            if flags & (os.O_WRONLY | os.O_RDWR):
                if read_only:
                    raise FuseOSError(errno.EROFS)
                if flags & os.O_APPEND:
                    raise FuseOSError(errno.EPERM)
                fn = "".join([self.root, path.lstrip("/")])
                self.cache[self.counter] = self.fs.open(fn, "wb")
                self.counter += 1
                return self.counter - 1
            return super().open(path, flags)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            f = self.cache[fh]
            if offset != f.tell():
                raise FuseOSError(errno.EPERM)
            f.write(data)
            return len(data)

        def flush(self, path: str, fh: int) -> int:
            # The kernel calls `flush` inside the user's close() and `release` after it has
            # returned: uploading here makes a closed file readable from the bucket at once,
            # and an upload error reach close() (EIO) instead of being lost.
            f = self.cache.get(fh)
            if f is not None and getattr(f, "mode", "") == "wb" and not f.closed:
                try:
                    f.close()
                except Exception as exc:
                    print(f"upload of {path} failed: {exc!r}", file=sys.stderr, flush=True)
                    raise FuseOSError(errno.EIO) from exc
            return 0

        def truncate(self, path: str, length: int, fh: Any = None) -> Any:
            if length != 0:
                raise FuseOSError(errno.EPERM)
            return super().truncate(path, length, fh)

        def rename(self, old: str, new: str) -> Any:
            raise FuseOSError(errno.EPERM)

    class ReadOnlyOps(Ops):
        def _refuse(self, *args: Any, **kwargs: Any) -> Any:
            raise FuseOSError(errno.EROFS)

        mkdir = rmdir = write = create = truncate = unlink = chmod = rename = _refuse

    threading.Thread(target=_watch, args=(spec["leases"], spec["mountpoint"]), daemon=True).start()
    FUSE(
        (ReadOnlyOps if read_only else Ops)(fs, root),
        spec["mountpoint"],
        foreground=True,
        nothreads=True,  # fsspec: more stable, and its open-file table is not thread-safe
        ro=read_only,
        allow_other=os.geteuid() == 0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
