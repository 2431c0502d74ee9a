"""`modal.Probe`: a sandbox readiness check, and `Sandbox.wait_until_ready`.

Both kinds of probe run inside the sandbox: a TCP probe connects to the port on the sandbox's
own loopback (which, with `block_network=True`, is the only network it has), an exec probe runs
its command; the sandbox is ready once one attempt succeeds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from .exception import InvalidError, SandboxTimeoutError

_TCP_CHECK = (
    "import socket,sys\n"
    "s=socket.create_connection(('127.0.0.1',int(sys.argv[1])),timeout=1)\n"
    "s.close()\n"
)


@dataclass(frozen=True)
class Probe:
    """How to tell that a sandbox is ready: a TCP port accepting connections, or a command
    that exits with 0. Checked every `interval_ms` milliseconds."""

    tcp_port: int | None = None
    exec_argv: tuple[str, ...] | None = None
    interval_ms: int = 100

    def __post_init__(self) -> None:
        if (self.tcp_port is None) == (self.exec_argv is None):
            raise InvalidError("A `modal.Probe` needs exactly one of `tcp_port` or `exec_argv`.")
        if self.exec_argv is not None:
            object.__setattr__(self, "exec_argv", tuple(str(a) for a in self.exec_argv))
        if self.interval_ms <= 0:
            raise InvalidError("`Probe.interval_ms` must be positive.")

    @classmethod
    def with_tcp(cls, port: int, *, interval_ms: int = 100) -> Probe:
        return cls(tcp_port=port, interval_ms=interval_ms)

    @classmethod
    def with_exec(cls, *argv: str, interval_ms: int = 100) -> Probe:
        return cls(exec_argv=tuple(argv), interval_ms=interval_ms)


async def wait_ready(sandbox: Any, probe: Probe | None, timeout: float) -> None:
    if probe is None:
        raise InvalidError(
            "`Sandbox.wait_until_ready` needs the sandbox to be created with"
            " `readiness_probe=modal.Probe.with_tcp(...)` or `Probe.with_exec(...)`."
        )
    if probe.tcp_port is not None:
        argv: tuple[str, ...] = ("python", "-I", "-S", "-c", _TCP_CHECK, str(probe.tcp_port))
    else:
        assert probe.exec_argv is not None
        argv = probe.exec_argv
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SandboxTimeoutError(
                f"Sandbox {sandbox.object_id} was not ready within {timeout} s ({probe})."
            )
        try:
            process = await sandbox.exec.aio(
                *argv, timeout=max(1, int(min(left, 30))), stdout=_devnull(), stderr=_devnull()
            )
            if await process.wait.aio() == 0:
                return
        except InvalidError:
            raise
        except Exception:
            if await sandbox.poll.aio() is not None:
                raise
        await asyncio.sleep(probe.interval_ms / 1000)


class _Devnull:
    name = "DEVNULL"  # read by `io_streams.stream_kind`, as `StreamType.DEVNULL` is


def _devnull() -> Any:
    return _Devnull


Probe.__module__ = "modal.sandbox"
