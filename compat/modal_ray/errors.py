"""Engine-neutral error helpers: the remote-failure envelope, user tracebacks, the map wrapper.

A function that raises on a worker does not raise through Ray: the worker wrapper returns a
`RemoteFailure` as the call's value. That keeps Ray's own retry and error-logging machinery out of
user exceptions, and lets the caller re-raise the original type with the remote traceback attached
(as `__cause__`).

User tracebacks (`format_user_traceback`) show what Modal shows: the user's own frames, local and
remote, as one traceback: the frames that led to `f.remote(...)` followed by the frames of `f` on
its worker. Frames of modal-ray itself, of its CLI framework, of Ray and of the import machinery
are left out, as are library frames (standard library, installed packages) before the first user
frame (asyncio running an `async` entrypoint). An error with no user frame at all is modal-ray's
own (a missing file, a bad reference): the CLI prints it as one line. A worker records its user
frames when it captures a failure, so the caller needs no access to the worker's files.
`MODAL_TRACEBACK=1` shows everything instead.
"""

from __future__ import annotations

import functools
import linecache
import os
import pickle
import sys
import sysconfig
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import cloudpickle

from modal_ray.exception import DeserializationError, ExecutionError, FunctionTimeoutError

# Packages whose frames are never the user's (when imported: a package that is not imported has
# no frames): modal-ray, its CLI framework (`typer` vendors its own click) and its engine.
_INTERNAL_PACKAGES = (
    "modal",
    "modal_ray",
    "modal_ray.backends",
    "modal_ray.cli",
    "modal_ray.serve_adapters",
    "modal_ray.volumes",
    "typer",
    "click",
    "ray",
)
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"
_HEADER = "Traceback (most recent call last):\n"


class UserCodeException(Exception):
    """Wraps an exception returned by `map(..., return_exceptions=True)`
    (legacy Modal behaviour)."""

    __module__ = "modal.exceptions"

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc

    def __repr__(self) -> str:
        return f"UserCodeException({self.exc!r})"


class _Frame(NamedTuple):
    """One frame of a traceback, as plain data that travels from a worker to the caller."""

    filename: str
    lineno: int | None
    name: str
    line: str  # the source line as the file has it (indentation and newline kept, for the markers)
    end_lineno: int | None = None
    colno: int | None = None
    end_colno: int | None = None

    @classmethod
    def of(cls, fs: traceback.FrameSummary) -> _Frame:
        line = linecache.getline(fs.filename, fs.lineno) if fs.lineno else ""
        return cls(
            fs.filename,
            fs.lineno,
            fs.name,
            line,
            getattr(fs, "end_lineno", None),
            getattr(fs, "colno", None),
            getattr(fs, "end_colno", None),
        )

    def summary(self) -> traceback.FrameSummary:
        if sys.version_info >= (3, 11):
            return traceback.FrameSummary(
                self.filename,
                self.lineno,
                self.name,
                lookup_line=False,
                line=self.line,
                end_lineno=self.end_lineno,
                colno=self.colno,
                end_colno=self.end_colno,
            )
        return traceback.FrameSummary(  # pragma: no cover - Python 3.10
            self.filename, self.lineno, self.name, lookup_line=False, line=self.line
        )


class _RemoteTraceback(Exception):
    """The remote side of a failure; chained as `__cause__` so Python prints it.

    `tb` is the worker's full traceback text; `chain` (the formatted causes of the remote
    exception), `frames` (its user frames) and `user_tb` (the two, formatted) are its user view.
    """

    def __init__(
        self, tb: str, user_tb: str = "", chain: str = "", frames: tuple[_Frame, ...] = ()
    ) -> None:
        super().__init__(tb)
        self.tb = tb
        self.user_tb = user_tb
        self.chain = chain
        self.frames = frames

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.tb, self.user_tb, self.chain, self.frames))

    def __str__(self) -> str:
        from modal_ray import config

        text = self.tb if config.show_traceback() or not self.user_tb else self.user_tb
        return "\n\nRemote traceback:\n" + text


@dataclass(slots=True)
class RemoteFailure:
    """What a worker returns instead of raising. `exc_bytes` is the cloudpickled exception.

    `traceback` is the worker's full traceback text; `user_traceback`, `chain` and `frames` are the
    user's view of it (see `_RemoteTraceback`), recorded on the worker where the files are.
    """

    kind: str  # "user" | "timeout" | "serialization" | "deserialization"
    exc_bytes: bytes | None
    message: str
    traceback: str
    retryable: bool = True
    user_traceback: str = ""
    chain: str = ""
    frames: tuple[_Frame, ...] = ()

    @classmethod
    def capture(cls, exc: BaseException, tb: str, kind: str = "user") -> RemoteFailure:
        try:
            blob: bytes | None = cloudpickle.dumps(exc)
        except Exception:
            blob = None
        user = _UserTraceback()
        chain = "".join(user.chain(exc))
        frames = tuple(user.frames(exc))
        section = "".join(user.section(exc, frames))
        user_tb = chain + section if user.found else ""
        return cls(kind, blob, f"{type(exc).__name__}: {exc}", tb, True, user_tb, chain, frames)

    def to_exception(self, function_name: str = "") -> BaseException:
        """Rebuild the exception to raise in the caller, remote traceback attached."""
        exc: BaseException
        if self.kind == "timeout":
            exc = FunctionTimeoutError(self.message)
        elif self.exc_bytes is not None:
            try:
                exc = pickle.loads(self.exc_bytes)
            except Exception as e:
                exc = DeserializationError(
                    "Could not deserialize the exception raised by"
                    f" {function_name or 'the function'}"
                    f" ({self.message}): {type(e).__name__}: {e}. Is the module that defines it"
                    " importable locally?"
                )
        else:
            exc = ExecutionError(
                f"{function_name or 'The function'} raised an exception that cannot be pickled:"
                f" {self.message}"
            )
        if self.traceback:
            exc.__cause__ = _RemoteTraceback(
                self.traceback, self.user_traceback, self.chain, self.frames
            )
        return exc


def is_failure(value: Any) -> bool:
    return type(value) is RemoteFailure


def format_user_traceback(exc: BaseException) -> str | None:
    """The traceback of `exc` as its user needs it, or None if none of its frames is the user's.

    Causes come first, as Python prints them; a remote failure's frames follow the local frames
    that called it.
    """
    user = _UserTraceback()
    text = "".join(user.format(exc))
    return text if user.found else None


class _UserTraceback:
    """Formats exceptions with only the user's frames; `found` says whether there were any."""

    def __init__(self) -> None:
        self.found = False
        self._seen: set[int] = set()

    def format(self, exc: BaseException) -> list[str]:
        self._seen.add(id(exc))
        lines = self.chain(exc)
        lines.extend(self.section(exc, self.frames(exc)))
        return lines

    def chain(self, exc: BaseException) -> list[str]:
        """The formatted causes of `exc` (what Python prints above its own traceback)."""
        cause = exc.__cause__
        if isinstance(cause, _RemoteTraceback):
            if cause.frames:
                self.found = True
            return [cause.chain] if cause.chain else []
        if cause is not None and id(cause) not in self._seen:
            return [*self.format(cause), _CAUSE]
        context = exc.__context__
        if context is not None and not exc.__suppress_context__ and id(context) not in self._seen:
            return [*self.format(context), _CONTEXT]
        return []

    def frames(self, exc: BaseException) -> list[_Frame]:
        """The user's frames of `exc`: local ones, then those of the remote call it came from."""
        frames = [_Frame.of(fs) for fs in _user_frames(traceback.extract_tb(exc.__traceback__))]
        cause = exc.__cause__
        if isinstance(cause, _RemoteTraceback):
            frames.extend(cause.frames)
        return frames

    def section(self, exc: BaseException, frames: list[_Frame] | tuple[_Frame, ...]) -> list[str]:
        lines = []
        if frames:
            self.found = True
            lines.append(_HEADER)
            lines.extend(traceback.StackSummary.from_list([f.summary() for f in frames]).format())
        lines.extend(traceback.format_exception_only(type(exc), exc))
        return lines


def _user_frames(frames: Iterable[traceback.FrameSummary]) -> list[traceback.FrameSummary]:
    """The frames worth showing: none of modal-ray's, and none before the first user frame.

    Library frames (standard library, installed packages) before the user's first frame are how
    the user's code was reached (asyncio running an `async` entrypoint); after it, they are where
    the user's call failed, and stay. No user frame at all gives an empty list.
    """
    kept = [fs for fs in frames if not _is_internal(fs.filename)]
    while kept and _is_library(kept[0].filename):
        kept.pop(0)
    return kept


def _is_internal(filename: str) -> bool:
    if filename.startswith("<frozen "):
        return True
    return _realpath(filename).startswith(_internal_dirs())


def _is_library(filename: str) -> bool:
    return _realpath(filename).startswith(_library_dirs())


def _internal_dirs() -> tuple[str, ...]:
    dirs = []
    for name in _INTERNAL_PACKAGES:
        for path in getattr(sys.modules.get(name), "__path__", None) or ():
            dirs.append(os.path.join(_realpath(path), ""))
    return tuple(dirs)


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple({os.path.join(_realpath(paths[k]), "") for k in keys if k in paths})


@functools.lru_cache(maxsize=1024)
def _realpath(path: str) -> str:
    return os.path.realpath(path)
