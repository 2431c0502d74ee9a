"""`modal.file_io`: files inside a sandbox (`Sandbox.open`, `ls`, `mkdir`, `rm`).

The file is opened by the sandbox's agent, inside the sandbox's namespaces (so a path, or a
symlink the sandbox's code planted, can only ever name a file of the sandbox); the node's
supervisor keeps the opened descriptor and reads, writes and seeks it for this handle. Modal's
limits hold: a single read returns at most 100 MiB, a single write takes at most 1 GiB
(`SandboxFilesystemFileTooLargeError`).
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .exception import InvalidError
from .sandbox_ref import SandboxRef
from .synchronizer import dual, dual_function

T = TypeVar("T", str, bytes)


class FileWatchEventType(enum.Enum):
    Unknown = "Unknown"
    Access = "Access"
    Create = "Create"
    Modify = "Modify"
    Remove = "Remove"


@dataclass
class FileWatchEvent:
    paths: list[str]
    type: FileWatchEventType


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise InvalidError(f"A sandbox path must be a non-empty string, not {path!r}.")
    if "\x00" in path:
        raise InvalidError(f"A sandbox path cannot contain NUL characters: {path!r}.")
    return path


class FileIO(Generic[T]):
    """A file open in a sandbox. Use it as a context manager, or call `close()`."""

    def __init__(self, ref: SandboxRef, handle: int, path: str, mode: str) -> None:
        self._ref = ref
        self._handle = handle
        self._path = path
        self._mode = mode
        self._binary = "b" in mode
        self._closed = False

    def __repr__(self) -> str:
        return f"modal.file_io.FileIO({self._path!r}, {self._mode!r})"

    @classmethod
    async def create(cls, path: str, mode: str, ref: SandboxRef) -> FileIO[Any]:
        handle = await ref.call("open", _check_path(path), mode)
        return cls(ref, handle, path, mode)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file.")

    def _out(self, data: bytes) -> Any:
        return data if self._binary else data.decode("utf-8")

    @dual
    async def read(self, n: int | None = None) -> T:
        """Read `n` bytes (characters' bytes in text mode), or the rest of the file."""
        self._check_open()
        return self._out(await self._ref.call("fread", self._handle, n))  # type: ignore[no-any-return]

    @dual
    async def readline(self) -> T:
        self._check_open()
        return self._out(await self._ref.call("freadline", self._handle))  # type: ignore[no-any-return]

    @dual
    async def readlines(self) -> Sequence[T]:
        self._check_open()
        data: bytes = await self._ref.call("fread", self._handle, None)
        return [self._out(line) for line in data.splitlines(keepends=True)]

    @dual
    async def write(self, data: bytes | str) -> None:
        self._check_open()
        if self._binary:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError("a bytes-like object is required in binary mode")
            payload = bytes(data)
        else:
            if not isinstance(data, str):
                raise TypeError("write() argument must be str in text mode")
            payload = data.encode("utf-8")
        await self._ref.call("fwrite", self._handle, payload)

    @dual
    async def flush(self) -> None:
        """Writes are sent as they are made; this only checks that the file is open."""
        self._check_open()

    @dual
    async def seek(self, offset: int, whence: int = 0) -> None:
        self._check_open()
        await self._ref.call("fseek", self._handle, offset, whence)

    @dual
    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._ref.call("fclose", self._handle)

    async def _replace(self, data: bytes, start: int | None, end: int | None) -> None:
        self._check_open()
        await self._ref.call("fseek", self._handle, 0, 0)
        content: bytes = await self._ref.call("fread", self._handle, None)
        lo = 0 if start is None else start
        hi = len(content) if end is None else end
        if not 0 <= lo <= hi:
            raise InvalidError(f"Invalid byte range start={start!r}, end={end!r}.")
        await self._ref.call("ftruncate", self._handle, 0)
        await self._ref.call("fseek", self._handle, 0, 0)
        await self._ref.call("fwrite", self._handle, content[:lo] + data + content[hi:])

    def __enter__(self) -> FileIO[T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> FileIO[T]:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close.aio()


@dual_function
async def replace_bytes(
    file: FileIO[Any], data: bytes, start: int | None = None, end: int | None = None
) -> None:
    """Replace bytes `start` (inclusive) to `end` (exclusive) of `file` with `data`."""
    await file._replace(data, start, end)


@dual_function
async def delete_bytes(file: FileIO[Any], start: int | None = None, end: int | None = None) -> None:
    """Delete bytes `start` (inclusive) to `end` (exclusive) of `file`."""
    await file._replace(b"", start, end)


async def watch_events(
    ref: SandboxRef,
    path: str,
    filter: Sequence[FileWatchEventType] | None = None,
    recursive: bool = False,
    timeout: float | None = None,
) -> AsyncIterator[FileWatchEvent]:
    """Changes under `path` inside the sandbox, as they happen (inotify, run by the sandbox's
    agent), until `timeout` seconds pass, the caller stops iterating, or the sandbox ends."""
    wanted = {FileWatchEventType(f).value for f in filter} if filter else None
    deadline = None if timeout is None else time.monotonic() + timeout
    wid = await ref.call("watch_start", _check_path(path), bool(recursive))
    try:
        while True:
            left = 50.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return
            batch = await ref.call("watch_next", wid, min(left, 50.0))
            if batch is None:
                return
            for event in batch:
                if wanted is None or event["type"] in wanted:
                    yield FileWatchEvent(list(event["paths"]), FileWatchEventType(event["type"]))
    finally:
        with contextlib.suppress(Exception):
            await ref.call("watch_stop", wid)


FileIO.__module__ = "modal.file_io"
FileWatchEvent.__module__ = "modal.file_io"
FileWatchEventType.__module__ = "modal.file_io"

__all__ = [
    "FileIO",
    "FileWatchEvent",
    "FileWatchEventType",
    "delete_bytes",
    "replace_bytes",
]
