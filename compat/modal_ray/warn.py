"""Warnings that fire once per process and key: meaningless-off-Modal parameters and
deprecations.

A warning names the user's line that asked for the thing it warns about: the first frame of the
calling thread outside modal-ray's own packages (`modal`, `modal_ray` and the folders mapped
into it) and the standard library, as Modal's warnings do. Call sites never count stack levels,
so a warning stays right however deep inside modal-ray it is raised. A warning raised on
modal-ray's event-loop thread (work that a blocking call such as `f.map(...)` handed over) has
no user frame of its own: it names the line where the user's thread waits in that call.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import warnings
from importlib.util import find_spec
from types import FrameType

from modal_ray.exception import DeprecationError

_seen: set[str] = set()
_lock = threading.Lock()

# modal-ray's packages; their subpackages that live in other folders (see pyproject's
# package-dir) are listed too, so the check works in an editable and in a regular install.
_OWN_PACKAGES = (
    "modal",
    "modal_ray",
    "modal_ray.backends",
    "modal_ray.cli",
    "modal_ray.volumes",
    "modal_ray.serve_adapters",
)
_own_dirs: tuple[str, ...] | None = None


def _own_prefixes() -> tuple[str, ...]:
    global _own_dirs
    if _own_dirs is None:
        dirs: set[str] = set()
        for name in _OWN_PACKAGES:
            try:
                spec = find_spec(name)
            except (ImportError, ValueError):
                continue
            for path in (spec.submodule_search_locations or []) if spec else []:
                dirs.add(os.path.join(os.path.realpath(path), ""))
        _own_dirs = tuple(sorted(dirs))
    return _own_dirs


_STDLIB = tuple(
    os.path.join(os.path.realpath(sysconfig.get_paths()[key]), "")
    for key in ("stdlib", "platstdlib")
)


def _is_own(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    if filename.startswith("<frozen "):
        return True  # imports on the way to the user's module
    return os.path.realpath(filename).startswith(_own_prefixes())


def _is_stdlib(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return filename.startswith("<frozen ") or os.path.realpath(filename).startswith(_STDLIB)


def _user_frame(frame: FrameType | None) -> FrameType | None:
    """The first frame, from `frame` outwards, outside modal-ray and the standard library."""
    while frame is not None and (_is_own(frame) or _is_stdlib(frame)):
        frame = frame.f_back
    return frame


def _waiting_user_frame() -> FrameType | None:
    """The user's line in another thread that waits inside modal-ray (a blocking call whose work
    runs on this thread): innermost frames of the standard library (the wait itself), then
    modal-ray's, then the user's. The main thread wins if several wait."""
    me = threading.get_ident()
    main = threading.main_thread().ident
    found: list[tuple[bool, FrameType]] = []
    for ident, top in sys._current_frames().items():
        if ident == me:
            continue
        frame: FrameType | None = top
        while frame is not None and _is_stdlib(frame) and not _is_own(frame):
            frame = frame.f_back
        if frame is None or not _is_own(frame):
            continue
        user = _user_frame(frame)
        if user is not None:
            found.append((ident != main, user))
    return min(found, key=lambda f: f[0])[1] if found else None


def _emit(message: str, category: type[Warning], origin: FrameType) -> None:
    """`warnings.warn` naming `origin`'s line (which may be in another thread)."""
    module_globals = origin.f_globals
    warnings.warn_explicit(
        message,
        category,
        origin.f_code.co_filename,
        origin.f_lineno,
        module=module_globals.get("__name__", "__main__"),
        registry=module_globals.setdefault("__warningregistry__", {}),
        module_globals=module_globals,
    )


def warn_once(key: str, message: str, category: type[Warning] = UserWarning) -> None:
    with _lock:
        if key in _seen:
            return
        _seen.add(key)
    here = sys._getframe(1)
    origin = _user_frame(here) or _waiting_user_frame()
    if origin is None:  # no user code anywhere (a worker's own imports): name the caller
        warnings.warn(message, category, stacklevel=2)
    else:
        _emit(message, category, origin)


def deprecation(key: str, message: str) -> None:
    warn_once(key, message, DeprecationError)


def reset_for_tests() -> None:
    with _lock:
        _seen.clear()
