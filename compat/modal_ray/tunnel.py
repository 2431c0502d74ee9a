"""`modal.Tunnel` and `modal.forward`: reaching a server inside a sandbox or a container.

On Modal a tunnel is a public TLS endpoint. Here it is a plain TCP relay on a port of the node
that runs the sandbox or container (see `sandbox_runtime.relay`), reachable by whoever can reach
that node: `url` is `http://<node>:<port>` and there is no TLS (a warning says so once).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from .exception import InvalidError
from .warn import warn_once

PLAIN_WARNING = (
    "modal-ray tunnels are plain TCP relays on the node (no TLS, no authentication): `url` is"
    " http://, and anyone who can reach the node can connect."
)


@dataclass(frozen=True)
class Tunnel:
    """A forwarded port: `url` for HTTP, `tls_socket`, and `tcp_socket` for raw TCP."""

    host: str
    port: int
    unencrypted_host: str
    unencrypted_port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def tls_socket(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def tcp_socket(self) -> tuple[str, int]:
        if not self.unencrypted_host:
            raise InvalidError(
                "This tunnel has no raw TCP endpoint: list the port in `unencrypted_ports=`"
                " (or use `modal.forward(port, unencrypted=True)`)."
            )
        return (self.unencrypted_host, self.unencrypted_port)


Tunnel.__module__ = "modal._tunnel"


def tunnels_of(info: dict[str, Any]) -> dict[int, Tunnel]:
    """The `Tunnel`s of a sandbox description, keyed by the port inside the sandbox."""
    out: dict[int, Tunnel] = {}
    for port, (host, relay_port, raw) in (info.get("tunnels") or {}).items():
        out[int(port)] = Tunnel(host, relay_port, host if raw else "", relay_port if raw else 0)
    return out


class _ForwardThread:
    """A relay owned by this process (a function's container), on its own loop thread."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._relay: Any = None

    async def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self._port)), 5
            )
        except BaseException:
            sock.close()
            raise
        return sock

    def start(self) -> tuple[str, int]:
        from .sandbox_runtime.relay import Relay

        self._thread.start()
        relay = Relay(self._connect)
        self._relay = asyncio.run_coroutine_threadsafe(relay.start(), self._loop).result(30)
        return relay.host, relay.port

    def stop(self) -> None:
        if self._relay is not None:
            asyncio.run_coroutine_threadsafe(self._relay.close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


@contextlib.contextmanager
def forward(
    port: int, *, unencrypted: bool = False, h2_enabled: bool = False, client: Any = None
) -> Iterator[Tunnel]:
    """Expose `port` of this container through a tunnel while the block runs."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidError(f"Invalid port {port!r}: use a number from 1 to 65535.")
    warn_once("tunnel-plain", PLAIN_WARNING)
    relay = _ForwardThread(port)
    host, relay_port = relay.start()
    try:
        yield Tunnel(
            host, relay_port, host if unencrypted else "", relay_port if unencrypted else 0
        )
    finally:
        relay.stop()


@contextlib.asynccontextmanager
async def forward_aio(
    port: int, *, unencrypted: bool = False, h2_enabled: bool = False, client: Any = None
) -> AsyncIterator[Tunnel]:
    with forward(port, unencrypted=unencrypted, h2_enabled=h2_enabled, client=client) as tunnel:
        yield tunnel


forward.aio = forward_aio  # type: ignore[attr-defined]

__all__ = ["Tunnel", "forward"]
