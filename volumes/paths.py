"""Path safety for volumes: every user path is checked here before anything is read or written.

Two kinds of paths:

- *volume paths* (`vol.read_file("a/b.txt")`, `modal volume put v x /dir/`): relative to the
  volume's root, `/` meaning the root. `volume_path()` turns them into a canonical relative form
  (`"a/b.txt"`, `""` for the root) and refuses, with `InvalidError` and no side effect, anything
  that would leave the root (`..` above it), NUL bytes, over-long names, and glob patterns;
- *mount paths* (`volumes={"/data": vol}`): absolute, canonical, not `/`, `/root` or `/tmp`
  (Modal's rules).

Local file helpers (`safe_parent`, `open_nofollow`) never follow a symlink inside the tree they
write to, so a symlink in a volume (or in a download destination) cannot redirect a write outside
of it.
"""

from __future__ import annotations

import errno
import os
import posixpath
from pathlib import PurePath, PurePosixPath

from modal_ray.exception import InvalidError

# Modal: "There is currently a hard limit of 500,000 inodes (files, directories and symbolic
# links) per Volume. If you reach this limit, any further attempts to create new files or
# directories will error with ENOSPC."
MAX_INODES = 500_000
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def volume_path(path: str | PurePath, *, what: str = "path") -> str:
    """The canonical path inside a volume ("" is the root), or `InvalidError`.

    Absolute paths are relative to the volume root, as in Modal (`"/x"` is `"x"`). `..` may
    step back inside the volume (`"a/../b"` is `"b"`) but never above its root.
    """
    if isinstance(path, PurePath):
        path = path.as_posix()
    if not isinstance(path, str):
        raise InvalidError(f"A volume {what} must be a string, not {type(path).__name__}.")
    if "\x00" in path:
        raise InvalidError(f"Invalid volume {what} {path!r}: it contains a NUL byte.")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidError(f"Invalid volume {what}: longer than {MAX_PATH_BYTES} bytes.")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidError(
                    f"Invalid volume {what} {path!r}: it leads outside the volume's root. Paths"
                    " are relative to the root of the volume and cannot use `..` to leave it."
                )
            parts.pop()
            continue
        if len(part.encode()) > MAX_NAME_BYTES:
            raise InvalidError(
                f"Invalid volume {what} {path!r}: the name {part[:40]!r}... is longer than"
                f" {MAX_NAME_BYTES} bytes."
            )
        parts.append(part)
    return "/".join(parts)


def join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def ancestors(path: str) -> list[str]:
    """Proper ancestors of a volume path, shallowest first ("a/b/c" -> ["a", "a/b"])."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def is_under(path: str, base: str) -> bool:
    """True when `path` is `base` or inside it (volume paths; "" is the root)."""
    return base == "" or path == base or path.startswith(base + "/")


def link_target_inside(link_path: str, target: str) -> str | None:
    """Where a symlink at `link_path` with `target` points, as a volume path, or None when it
    points outside the volume (absolute targets always do)."""
    if target.startswith("/") or "\x00" in target:
        return None
    parts = parent_of(link_path).split("/") if parent_of(link_path) else []
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


# -- mount paths ------------------------------------------------------------------------------


def mount_path(path: str | PurePath, what: str = "Volume") -> str:
    """Modal's mount point rules: canonical, absolute, and not `/`, `/root` or `/tmp`."""
    if isinstance(path, PurePath):
        path = path.as_posix()
    if not isinstance(path, str):
        raise InvalidError(f"{what} mount paths must be strings, not {type(path).__name__}.")
    path = PurePosixPath(path).as_posix()
    absolute = posixpath.abspath(path)
    if path != absolute:
        raise InvalidError(f"{what} {path} must be a canonical, absolute path.")
    if absolute == "/":
        raise InvalidError(f"{what} {path} cannot be mounted into root directory.")
    if absolute == "/root":
        raise InvalidError(f"{what} {path} cannot be mounted at '/root'.")
    if absolute == "/tmp":
        raise InvalidError(f"{what} {path} cannot be mounted at '/tmp'.")
    return absolute


# -- local filesystem helpers -------------------------------------------------------------------


def safe_parent(root: str, rel: str, *, create: bool = True) -> str:
    """The local directory that holds `root/rel`, created if needed, refusing symlinks on the
    way: every component between `root` and the file must be a real directory."""
    current = root
    for part in rel.split("/")[:-1]:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(current)
            continue
        if not _is_dir_mode(st.st_mode):
            raise InvalidError(
                f"Refusing to write below {current!r}: it is not a directory (a symlink or file)."
            )
    return current


def _is_dir_mode(mode: int) -> bool:
    import stat

    return stat.S_ISDIR(mode)


def open_nofollow(path: str, flags: int, mode: int = 0o644) -> int:
    """`os.open` that refuses to follow a symlink at the last component."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidError(f"Refusing to follow the symlink {path!r}.") from None
        raise


def no_space(count: int) -> OSError:
    return OSError(
        errno.ENOSPC,
        f"No space left on device: a Volume holds at most {MAX_INODES:,} files, directories and"
        f" symlinks (this change would make {count:,})",
    )
