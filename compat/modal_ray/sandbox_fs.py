"""`Sandbox.filesystem`: whole-file operations on a running sandbox (Modal 1.6's default API).

Every `remote_path` is absolute. As with `Sandbox.open`, each operation runs inside the sandbox
(its agent resolves the path in the sandbox's own view, so no path or planted symlink reaches
the node's files), and the `SandboxFilesystem*Error` family reports what went wrong. A single
read returns at most 100 MiB (`SandboxFilesystemFileTooLargeError` beyond).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .exception import InvalidError
from .file_io import FileWatchEvent, FileWatchEventType, watch_events
from .sandbox_ref import SandboxRef
from .synchronizer import dual

CHUNK = 16 * 1024 * 1024  # bytes per call when copying larger files


@dataclass(frozen=True)
class FileInfo:
    """One entry of `list_files`, or what `stat` says about a path."""

    name: str
    path: str
    type: str  # "file", "directory", "symlink" or "other"
    size: int
    permissions: int
    modified_time: float


FileInfo.__module__ = "modal.sandbox_fs"


def _write_local(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _remote(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise InvalidError(
            f"`remote_path` must be an absolute path in the sandbox (e.g. '/tmp/x'), not {path!r}."
        )
    return path


class SandboxFilesystem:
    """Namespace for a sandbox's filesystem operations (`sb.filesystem`)."""

    def __init__(self, ref: SandboxRef) -> None:
        self._ref = ref

    def __repr__(self) -> str:
        return f"SandboxFilesystem({self._ref.sandbox_id})"

    async def _read(self, remote_path: str) -> bytes:
        handle = await self._ref.call("open", _remote(remote_path), "rb")
        try:
            data: bytes = await self._ref.call("fread", handle, None)
        finally:
            await self._ref.call("fclose", handle)
        return data

    async def _write(self, data: bytes, remote_path: str) -> None:
        parent = str(PurePosixPath(_remote(remote_path)).parent)
        if parent != "/":
            await self._ref.call("mkdir", parent, True)
        handle = await self._ref.call("open", remote_path, "wb")
        try:
            view = memoryview(data)
            for start in range(0, max(len(view), 1), CHUNK):
                await self._ref.call("fwrite", handle, bytes(view[start : start + CHUNK]))
        finally:
            await self._ref.call("fclose", handle)

    @dual
    async def read_bytes(self, remote_path: str) -> bytes:
        """The file's contents."""
        return await self._read(remote_path)

    @dual
    async def read_text(self, remote_path: str) -> str:
        """The file's contents decoded as UTF-8."""
        return (await self._read(remote_path)).decode("utf-8")

    @dual
    async def write_bytes(self, data: bytes | bytearray | memoryview, remote_path: str) -> None:
        """Write `data` to the file (created with its parent directories, or overwritten)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        await self._write(bytes(data), remote_path)

    @dual
    async def write_text(self, data: str, remote_path: str) -> None:
        """Write `data` as UTF-8 to the file (created with its parents, or overwritten)."""
        if not isinstance(data, str):
            raise TypeError(f"data must be a str, not {type(data).__name__}")
        await self._write(data.encode("utf-8"), remote_path)

    @dual
    async def copy_from_local(self, local_path: str | os.PathLike[str], remote_path: str) -> None:
        """Copy a file of this machine into the sandbox."""
        _remote(remote_path)
        # FileNotFoundError / IsADirectoryError as Python raises them for the local file.
        data = await asyncio.get_running_loop().run_in_executor(None, Path(local_path).read_bytes)
        await self._write(data, remote_path)

    @dual
    async def copy_to_local(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        """Copy a file of the sandbox to this machine (parent directories are created)."""
        data = await self._read(remote_path)
        await asyncio.get_running_loop().run_in_executor(None, _write_local, Path(local_path), data)

    @dual
    async def list_files(self, remote_path: str) -> list[FileInfo]:
        """The entries of a directory."""
        entries = await self._ref.call("list_info", _remote(remote_path))
        return [FileInfo(**e) for e in entries]

    @dual
    async def stat(self, remote_path: str) -> FileInfo:
        """What the path is (a symlink is described, not followed)."""
        return FileInfo(**await self._ref.call("stat", _remote(remote_path)))

    @dual
    async def make_directory(self, remote_path: str, *, create_parents: bool = True) -> None:
        """Create a directory (with its parents, and no error if it exists, by default)."""
        await self._ref.call("mkdir", _remote(remote_path), create_parents)

    @dual
    async def watch(
        self,
        remote_path: str,
        *,
        filter: list[FileWatchEventType] | None = None,
        recursive: bool = False,
        timeout: int | None = None,
    ) -> AsyncIterator[FileWatchEvent]:
        """Changes under the path as they happen, until `timeout` seconds pass or the sandbox
        ends."""
        async for event in watch_events(
            self._ref, _remote(remote_path), filter, recursive, timeout
        ):
            yield event

    @dual
    async def remove(self, remote_path: str, *, recursive: bool = False) -> None:
        """Remove a file, or a directory (an empty one unless `recursive`)."""
        await self._ref.call("rm", _remote(remote_path), recursive)


SandboxFilesystem.__module__ = "modal.sandbox_fs"

__all__ = ["FileInfo", "SandboxFilesystem"]
