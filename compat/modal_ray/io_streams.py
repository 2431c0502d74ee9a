"""`modal.io_streams`: the stdout/stderr readers and the stdin writer of a sandbox process.

A reader pulls chunks from the supervisor of the sandbox's node, one call per chunk, only when
the caller asks: output nobody reads stays in the node's bounded buffer and then in the pipe,
and the process blocks (back-pressure) instead of filling memory anywhere. Iterating yields lines
with their trailing newline (bytes lines in bytes mode); `read()` returns everything up to EOF.

A writer buffers `write()`s locally; `drain()` sends the buffer (and the EOF, if `write_eof()`
was called) and returns once the process's stdin pipe took it.
"""

from __future__ import annotations

import codecs
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

from .sandbox_ref import SandboxRef
from .synchronizer import dual, run_async, run_sync

T = TypeVar("T", str, bytes)

SEND_CHUNK = 1 << 20  # bytes one `drain` sends per call


def stream_kind(value: Any) -> str:
    """The supervisor's name for a `StreamType` (`pipe`, `devnull`, or `stdout` = forwarded)."""
    if value in ("pipe", "devnull", "stdout"):
        return str(value)
    name = getattr(value, "name", None)
    if name == "DEVNULL":
        return "devnull"
    if name == "STDOUT":
        return "stdout"
    if name == "PIPE" or value is None:
        return "pipe"
    from .exception import InvalidError

    raise InvalidError(
        f"Invalid stream type {value!r}; use `modal.stream_type.StreamType.PIPE`, `STDOUT` or"
        " `DEVNULL`."
    )


class StreamReader(Generic[T]):
    """Reads a stream (stdout or stderr) of a sandbox process.

    Iterate over it (`for line in p.stdout`, or `async for`) for lines as they arrive, or call
    `read()` for everything until the stream ends.
    """

    def __init__(
        self,
        params: tuple[SandboxRef, int, int],
        *,
        stream_type: Any = None,
        text: bool = True,
        by_line: bool = False,
    ) -> None:
        # `params`: (sandbox, process id, file descriptor); Modal's is its own internal record.
        self._ref, self._xid, self._fd = params
        self._text = text
        self._kind = kind = stream_kind(stream_type)
        self._eof = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: Any = "" if text else b""
        self._forwarder: threading.Thread | None = None
        if kind == "stdout":
            self._forwarder = threading.Thread(
                target=self._forward, name="modal-sandbox-output", daemon=True
            )
            self._forwarder.start()

    def __repr__(self) -> str:
        return f"modal.io_streams.StreamReader(fd={self._fd})"

    @property
    def file_descriptor(self) -> int:
        return self._fd

    async def _chunk(self) -> Any:
        """The next decoded chunk; empty at the end of the stream."""
        while not self._eof:
            data: bytes = await self._ref.call("read", self._xid, self._fd)
            if not data:
                self._eof = True
                return self._decoder.decode(b"", final=True) if self._text else b""
            if not self._text:
                return data
            text = self._decoder.decode(data)
            if text:
                return text
        return "" if self._text else b""

    async def _next_line(self) -> Any:
        newline = "\n" if self._text else b"\n"
        while True:
            cut = self._pending.find(newline)
            if cut >= 0:
                line, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
                return line
            chunk = await self._chunk()
            if not chunk:
                line, self._pending = self._pending, self._pending[:0]
                return line
            self._pending += chunk

    @dual
    async def read(self) -> T:
        """Everything until the end of the stream (the process closed it, usually by exiting)."""
        parts = [self._pending]
        self._pending = self._pending[:0]
        while True:
            chunk = await self._chunk()
            if not chunk:
                break
            parts.append(chunk)
        empty: Any = "" if self._text else b""
        return empty.join(parts)  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[T]:
        while True:
            line = run_sync(self._next_line(), "StreamReader.__iter__")
            if not line:
                return
            yield line

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            line = await run_async(self._next_line())
            if not line:
                return
            yield line

    def _chunks(self) -> Iterator[T]:
        """Chunks as they arrive, not lines (the CLI's terminal relay: a prompt has no newline)."""
        if self._pending:
            pending, self._pending = self._pending, self._pending[:0]
            yield pending
        while True:
            chunk = run_sync(self._chunk(), "StreamReader chunks")
            if not chunk:
                return
            yield chunk

    @dual
    async def close(self) -> None:
        """Stop reading (what was not read is discarded when the process ends)."""
        self._eof = True

    async def aclose(self) -> None:
        self._eof = True

    def _forward(self) -> None:
        """StreamType.STDOUT: copy the stream to this process's stdout as it arrives."""
        while True:
            try:
                chunk = run_sync(self._chunk(), "StreamReader forward")
            except Exception:
                return
            if not chunk:
                return
            if isinstance(chunk, bytes):
                sys.stdout.buffer.write(chunk)
            else:
                sys.stdout.write(chunk)
            sys.stdout.flush()


class StreamWriter:
    """Writes to the stdin of a sandbox process: `write()` buffers, `drain()` sends."""

    def __init__(self, params: tuple[SandboxRef, int]) -> None:
        self._ref, self._xid = params  # (sandbox, process id)
        self._buffer = bytearray()
        self._eof = False
        self._eof_sent = False

    def __repr__(self) -> str:
        return "modal.io_streams.StreamWriter()"

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Queue `data` (non-blocking); `drain()` sends it."""
        if self._eof:
            raise ValueError("Stdin is closed: `write_eof()` was already called.")
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, bytearray, memoryview or str, not {type(data)}")
        self._buffer.extend(data)

    def write_eof(self) -> None:
        """Close stdin once the buffered data is sent (by the next `drain()`)."""
        self._eof = True

    @dual
    async def drain(self) -> None:
        """Send the buffered data (and the EOF, if asked) and wait until the process's stdin
        pipe took it."""
        while self._buffer:
            part = bytes(self._buffer[:SEND_CHUNK])
            del self._buffer[:SEND_CHUNK]
            last = not self._buffer
            await self._ref.call("write", self._xid, part, self._eof and last)
            if self._eof and last:
                self._eof_sent = True
        if self._eof and not self._eof_sent:
            await self._ref.call("write", self._xid, b"", True)
            self._eof_sent = True


StreamReader.__module__ = "modal.io_streams"
StreamWriter.__module__ = "modal.io_streams"

__all__ = ["StreamReader", "StreamWriter"]
