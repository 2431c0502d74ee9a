"""Local file operations shared by the store (local backend), working copies and downloads.

- `copy_file` clones (reflink) where the filesystem can, else copies in the kernel
  (`copy_file_range`), else in Python; the source is opened without following symlinks;
- `protect` / `unprotect` make a tree read-only: permission bits for ordinary users and, for
  root (which ignores permission bits), the immutable attribute where the filesystem and
  capabilities allow it, so that writes fail with `PermissionError` as on a read-only mount;
- `remove_tree` removes a tree even when parts of it were protected.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Iterator

_FICLONE = 0x40049409
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x00000010
_CHUNK = 8 * 1024 * 1024


_reflink = True  # cleared after the first refusal: most filesystems (ext4) cannot clone


def copy_fd(src_fd: int, dst_fd: int, size: int | None = None) -> int:
    """Copy everything from `src_fd` (at offset 0) to `dst_fd`; returns the byte count.
    `size`, when known, saves the final empty read."""
    global _reflink
    if _reflink:
        try:
            fcntl.ioctl(dst_fd, _FICLONE, src_fd)
            return os.fstat(dst_fd).st_size
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS):
                _reflink = False
    total = 0
    try:
        while size is None or total < size:
            n = os.copy_file_range(src_fd, dst_fd, 1 << 30)
            if n == 0:
                return total
            total += n
        return total
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
        if total:
            raise
    os.lseek(src_fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(src_fd, _CHUNK)
        if not chunk:
            return total
        view = memoryview(chunk)
        while view:
            written = os.write(dst_fd, view)
            view = view[written:]
            total += written


def copy_file(src: str, dst: str, mode: int = 0o644) -> int:
    """Copy `src` (not followed if it is a symlink) to a new file `dst` (must not exist)."""
    src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst_fd = os.open(
            dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode
        )
        try:
            return copy_fd(src_fd, dst_fd)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def _set_immutable(path: str, on: bool) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        buf = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf, True)
        flags = buf[0] | _FS_IMMUTABLE_FL if on else buf[0] & ~_FS_IMMUTABLE_FL
        if flags == buf[0]:
            return True
        buf[0] = flags
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, buf, True)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _walk_all(root: str) -> Iterator[tuple[str, bool]]:
    """(path, is_dir) for everything below `root`, children before their directory."""
    try:
        with os.scandir(root) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_all(entry.path)
            yield entry.path, True
        else:
            yield entry.path, False


def protect(root: str, *, immutable: bool) -> bool:
    """Make everything below `root` read-only. Returns whether writes by root are refused too
    (the immutable attribute could be set)."""
    all_immutable = True
    for path, _is_dir in _walk_all(root):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            continue
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o222)
        if immutable:
            all_immutable = _set_immutable(path, True) and all_immutable
    st = os.lstat(root)
    os.chmod(root, stat.S_IMODE(st.st_mode) & ~0o222)
    if immutable:
        all_immutable = _set_immutable(root, True) and all_immutable
    return immutable and all_immutable


def unprotect(root: str) -> None:
    """Undo `protect` (owner write bits back, immutable attribute off)."""
    if not os.path.lexists(root):
        return
    _set_immutable(root, False)
    with contextlib.suppress(OSError):
        os.chmod(root, stat.S_IMODE(os.lstat(root).st_mode) | 0o200)
    for path, _is_dir in _walk_all(root):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            continue
        _set_immutable(path, False)
        with contextlib.suppress(OSError):
            os.chmod(path, stat.S_IMODE(st.st_mode) | 0o200)


def remove_tree(root: str) -> None:
    """`rm -rf root`, clearing read-only protection first when needed."""
    if not os.path.lexists(root):
        return
    if os.path.islink(root) or not os.path.isdir(root):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(root)
        return
    try:
        shutil.rmtree(root)
    except OSError:
        unprotect(root)
        shutil.rmtree(root, ignore_errors=True)


def is_root_user() -> bool:
    return os.geteuid() == 0
