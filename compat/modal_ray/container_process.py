"""`modal.container_process.ContainerProcess`: a process started in a sandbox by `exec`.

Its streams are `io_streams` readers and a writer bound to the process; `poll()` asks the
sandbox's node once, `wait()` waits (in bounded long polls, so that no call is held forever).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from .io_streams import StreamReader, StreamWriter
from .sandbox_ref import SandboxRef
from .synchronizer import dual

T = TypeVar("T", str, bytes)

WAIT_POLL_S = 50.0


class ContainerProcess(Generic[T]):
    """A process running in a sandbox (see `Sandbox.exec`)."""

    def __init__(
        self,
        process_id: int,
        task_id: SandboxRef,
        client: Any = None,
        command_router_client: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        exec_deadline: float | None = None,
        text: bool = True,
        by_line: bool = False,
    ) -> None:
        # Modal's internal constructor, with `task_id` carrying the sandbox this process runs in;
        # the exec deadline is enforced by the sandbox's node.
        self._ref = ref = task_id
        self._xid = xid = process_id
        self._returncode: int | None = None
        self._stdout: StreamReader[Any] = StreamReader(
            (ref, xid, 1), stream_type=stdout, text=text, by_line=by_line
        )
        self._stderr: StreamReader[Any] = StreamReader(
            (ref, xid, 2), stream_type=stderr, text=text, by_line=by_line
        )
        self._stdin = StreamWriter((ref, xid))

    def __repr__(self) -> str:
        return f"modal.container_process.ContainerProcess({self._ref.sandbox_id}, {self._xid})"

    @property
    def stdout(self) -> StreamReader[T]:
        return self._stdout

    @property
    def stderr(self) -> StreamReader[T]:
        return self._stderr

    @property
    def stdin(self) -> StreamWriter:
        return self._stdin

    @property
    def returncode(self) -> int | None:
        """The exit code once `poll()` or `wait()` saw the process end, else None."""
        return self._returncode

    @dual
    async def poll(self) -> int | None:
        """The exit code if the process has ended, else None (does not wait)."""
        if self._returncode is None:
            self._returncode = await self._ref.call("exec_wait", self._xid, 0)
        return self._returncode

    @dual
    async def wait(self) -> int:
        """Wait until the process ends; returns its exit code (-1 if its `timeout` passed)."""
        while self._returncode is None:
            self._returncode = await self._ref.call("exec_wait", self._xid, WAIT_POLL_S)
        return self._returncode

    @dual
    async def attach(self) -> None:
        from .exception import UnimplementedError

        raise UnimplementedError(
            "`ContainerProcess.attach` (an interactive terminal) is not supported yet; read"
            " `stdout` and write `stdin` instead."
        )


ContainerProcess.__module__ = "modal.container_process"

__all__ = ["ContainerProcess"]
