"""File operations of a sandbox, on the supervisor's side (mixed into `Supervisor`).

A path is resolved by the sandbox's agent, inside the sandbox; the supervisor only ever holds
what the agent sends back: an opened descriptor (accepted only if it is a regular file) or a
JSON answer checked for shape. Modal's limits hold: one read returns at most 100 MiB, one write
takes at most 1 GiB (`SandboxFilesystemFileTooLargeError`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modal_ray import exception
from modal_ray.exception import InvalidError

READ_LIMIT = 100 * 1024 * 1024  # Modal's FileIO read limit
WRITE_LIMIT = 1024 * 1024 * 1024  # Modal's FileIO write limit

_FILE_ERRORS: dict[str, type[exception.Error]] = {
    "NotFound": exception.SandboxFilesystemNotFoundError,
    "IsADirectory": exception.SandboxFilesystemIsADirectoryError,
    "NotADirectory": exception.SandboxFilesystemNotADirectoryError,
    "PathAlreadyExists": exception.SandboxFilesystemPathAlreadyExistsError,
    "DirectoryNotEmpty": exception.SandboxFilesystemDirectoryNotEmptyError,
    "Permission": exception.SandboxFilesystemPermissionError,
    "FileTooLarge": exception.SandboxFilesystemFileTooLargeError,
}

_MODES = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
}


def open_flags(mode: str) -> tuple[int, bool, bool]:
    """(os flags, readable, writable) of a Python file mode such as `"r"`, `"wb"`, `"a+"`."""
    kinds = [c for c in mode if c in "rwax"]
    if (
        len(kinds) != 1
        or len(set(mode)) != len(mode)
        or any(c not in "rwaxb+t" for c in mode)
        or ("b" in mode and "t" in mode)
    ):
        raise InvalidError(
            f"Invalid file mode {mode!r}; use a Python mode such as 'r', 'wb', 'a+'."
        )
    flags = _MODES[kinds[0]]
    readable, writable = kinds[0] == "r", kinds[0] != "r"
    if "+" in mode:
        flags = (flags & ~(os.O_RDONLY | os.O_WRONLY)) | os.O_RDWR
        readable = writable = True
    return flags, readable, writable


def check_path(path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise InvalidError(f"A sandbox path must be a non-empty string, not {path!r}.")
    if "\x00" in path:
        raise InvalidError(f"A sandbox path cannot contain NUL characters: {path!r}.")
    if len(path.encode()) > 4096:
        raise InvalidError("A sandbox path is limited to 4096 bytes.")
    return path


@dataclass
class File:
    fd: int
    readable: bool
    writable: bool


class FileOps:
    """The file operations of `Supervisor` (which provides the members declared here)."""

    _ids: itertools.count[int]

    if TYPE_CHECKING:

        def _running(self, sid: str) -> Any: ...

        def _box(self, sid: str) -> Any: ...

        async def _request(
            self, box: Any, message: dict[str, Any]
        ) -> tuple[dict[str, Any], list[int]]: ...

    async def _file_request(
        self, box: Any, message: dict[str, Any]
    ) -> tuple[dict[str, Any], list[int]]:
        reply, fds = await self._request(box, message)
        if reply.get("ok") is not True:
            for fd in fds:
                os.close(fd)
            kind = str(reply.get("kind", ""))
            text = f"{message['op']} {message.get('path')!r}: {reply.get('message', 'failed')}"
            raise _FILE_ERRORS.get(kind, exception.SandboxFilesystemError)(text)
        return reply, fds

    async def open(self, sid: str, path: str, mode: str = "r") -> int:
        box = self._running(sid)
        flags, readable, writable = open_flags(mode)
        _, fds = await self._file_request(
            box, {"op": "open", "path": check_path(path), "flags": flags}
        )
        # The agent shares the sandbox with untrusted code: accept only a regular file, so that
        # nothing it hands over (a FIFO, a socket, a device) can block or misuse this loop.
        if len(fds) != 1 or not stat.S_ISREG(os.fstat(fds[0]).st_mode):
            for fd in fds:
                os.close(fd)
            raise exception.SandboxFilesystemError(
                f"open {path!r}: not a regular file (only regular files can be opened)."
            )
        os.set_inheritable(fds[0], False)
        handle = next(self._ids)
        box.files[handle] = File(fds[0], readable, writable)
        return handle

    def _file(self, sid: str, handle: int) -> File:
        box = self._running(sid)
        f = box.files.get(handle)
        if f is None:
            raise ValueError("I/O operation on closed file.")
        return f

    async def fread(self, sid: str, handle: int, n: int | None = None) -> bytes:
        f = self._file(sid, handle)
        if not f.readable:
            raise exception.InvalidError("File is not open for reading.")
        if n is None or n < 0:
            pos = os.lseek(f.fd, 0, os.SEEK_CUR)
            size = os.fstat(f.fd).st_size
            if size - pos > READ_LIMIT:
                raise exception.SandboxFilesystemFileTooLargeError(
                    f"Reading {size - pos} bytes at once is over the {READ_LIMIT}-byte limit;"
                    " read it in parts with `read(n)`."
                )
        elif n > READ_LIMIT:
            raise exception.SandboxFilesystemFileTooLargeError(
                f"Reading {n} bytes at once is over the {READ_LIMIT}-byte limit."
            )
        limit = READ_LIMIT if n is None or n < 0 else n
        return await asyncio.get_running_loop().run_in_executor(None, _read_upto, f.fd, limit)

    async def freadline(self, sid: str, handle: int) -> bytes:
        f = self._file(sid, handle)
        if not f.readable:
            raise exception.InvalidError("File is not open for reading.")
        parts: list[bytes] = []
        while True:
            chunk = os.read(f.fd, 8192)
            if not chunk:
                break
            cut = chunk.find(b"\n")
            if cut >= 0:
                parts.append(chunk[: cut + 1])
                os.lseek(f.fd, cut + 1 - len(chunk), os.SEEK_CUR)
                break
            parts.append(chunk)
        return b"".join(parts)

    async def fwrite(self, sid: str, handle: int, data: bytes) -> None:
        f = self._file(sid, handle)
        if not f.writable:
            raise exception.InvalidError("File is not open for writing.")
        if len(data) > WRITE_LIMIT:
            raise exception.SandboxFilesystemFileTooLargeError(
                f"Writing {len(data)} bytes at once is over the {WRITE_LIMIT}-byte limit."
            )
        await asyncio.get_running_loop().run_in_executor(None, _write_all, f.fd, data)

    async def fseek(self, sid: str, handle: int, offset: int, whence: int = 0) -> int:
        return os.lseek(self._file(sid, handle).fd, offset, whence)

    async def ftruncate(self, sid: str, handle: int, size: int) -> None:
        os.ftruncate(self._file(sid, handle).fd, size)

    async def fclose(self, sid: str, handle: int) -> None:
        box = self._box(sid)
        f = box.files.pop(handle, None)
        if f is not None:
            os.close(f.fd)

    async def ls(self, sid: str, path: str) -> list[str]:
        reply, _ = await self._file_request(
            self._running(sid), {"op": "ls", "path": check_path(path)}
        )
        entries = reply.get("entries")
        if not isinstance(entries, list):
            raise exception.SandboxFilesystemError(f"ls {path!r}: malformed answer.")
        return [str(e) for e in entries]

    async def stat(self, sid: str, path: str) -> dict[str, Any]:
        reply, _ = await self._file_request(
            self._running(sid), {"op": "stat", "path": check_path(path)}
        )
        return _entry(reply)

    async def list_info(self, sid: str, path: str) -> list[dict[str, Any]]:
        reply, _ = await self._file_request(
            self._running(sid), {"op": "list", "path": check_path(path)}
        )
        entries = reply.get("entries")
        if not isinstance(entries, list):
            raise exception.SandboxFilesystemError(f"list {path!r}: malformed answer.")
        return [_entry(e) for e in entries]

    async def mkdir(self, sid: str, path: str, parents: bool = False) -> None:
        await self._file_request(
            self._running(sid), {"op": "mkdir", "path": check_path(path), "parents": parents}
        )

    async def rm(self, sid: str, path: str, recursive: bool = False) -> None:
        await self._file_request(
            self._running(sid), {"op": "rm", "path": check_path(path), "recursive": recursive}
        )


def _entry(raw: Any) -> dict[str, Any]:
    """A file description from the agent, checked for shape (it is not trusted)."""
    if not isinstance(raw, dict):
        raise exception.SandboxFilesystemError("malformed file description from the sandbox")
    try:
        return {
            "name": str(raw["name"]),
            "path": str(raw["path"]),
            "type": str(raw["type"]),
            "size": int(raw["size"]),
            "permissions": int(raw["permissions"]),
            "modified_time": float(raw["modified_time"]),
        }
    except (KeyError, TypeError, ValueError):
        raise exception.SandboxFilesystemError(
            "malformed file description from the sandbox"
        ) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_upto(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < limit:
        chunk = os.read(fd, min(1 << 20, limit - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)
