"""Packing local files for `Image.add_local_dir` / `add_local_file`, on the driver.

Invariants: a packed zip is deterministic for the same files (sorted names, fixed timestamps,
file modes kept), so its content hash names it; only regular files are packed (dangling symlinks
and special files are skipped); the total is capped at 100 MiB, since the zip travels with each
function (large data belongs in a `modal.Volume`). `ignore=` is a list of dockerignore-style
patterns or a callable on the relative path; pattern matchers prune whole directories.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modal_ray.exception import InvalidError
from modal_ray.file_pattern_matcher import FilePatternMatcher

_MAX_LOCAL_BYTES = 100 * 1024 * 1024
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _matcher(ignore: Any) -> Callable[[Path], bool]:
    if isinstance(ignore, str):
        return FilePatternMatcher(ignore)
    if callable(ignore):
        return ignore  # type: ignore[no-any-return]
    if isinstance(ignore, Sequence):
        return FilePatternMatcher(*ignore)
    raise InvalidError(f"`ignore` must be a list of patterns or a callable, got {ignore!r}.")


def _ignore_key(ignore: Any) -> str:
    if callable(ignore) and not isinstance(ignore, FilePatternMatcher):
        return f"{getattr(ignore, '__module__', '')}.{getattr(ignore, '__qualname__', '')}"
    return repr(ignore if not isinstance(ignore, list) else tuple(ignore))


def _zip(entries: list[tuple[str, Path]], what: str) -> bytes:
    """Deterministic zip (sorted names, fixed timestamps, modes kept) of regular files."""
    buf, total = io.BytesIO(), 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, path in sorted(entries):
            try:
                st = path.stat()
            except OSError:
                continue  # a dangling symlink
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            if total > _MAX_LOCAL_BYTES:
                raise InvalidError(
                    f"{what}: the files add up to more than 100 MiB, and modal-ray ships them with "
                    "each function. Put large data in a `modal.Volume` (or on the cluster's nodes)."
                )
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_EPOCH)
            info.external_attr = (stat.S_IMODE(st.st_mode) | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return buf.getvalue()


def _pack_dir(root: Path, ignore: Any, what: str) -> bytes:
    if not root.is_dir():
        raise FileNotFoundError(f"{what}: local directory {str(root)!r} does not exist.")
    matcher = _matcher(ignore)
    prune = isinstance(matcher, FilePatternMatcher) and matcher.can_prune_directories()
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames.sort()
        if prune:
            dirnames[:] = [d for d in dirnames if not matcher(rel_dir / d)]
        for name in filenames:
            rel = rel_dir / name
            if not matcher(rel):
                entries.append((rel.as_posix(), Path(dirpath) / name))
    return _zip(entries, what)
