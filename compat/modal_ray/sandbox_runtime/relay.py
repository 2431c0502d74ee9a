"""TCP relays: the tunnels of sandboxes (`encrypted_ports`, `unencrypted_ports`) and of
`modal.forward` in a function's container.

A relay listens on a port of the node (on the address other nodes reach it by) and, for each
connection, obtains a connected socket to the target and copies bytes both ways until either
side closes. How the target socket is obtained is the caller's business: for a sandbox, its
agent connects to `127.0.0.1:<port>` *inside* the sandbox's network namespace and hands the
socket over (so a tunnel works with `block_network=True` too, and sandboxes never fight over
ports); for `modal.forward`, the relay connects to the container's own port directly.

There is no TLS and no authentication: a tunnel is reachable by whoever can reach the node.
`MODAL_RAY_TUNNEL_HOST` sets the address relays listen on and report (default: the node's
primary address).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

from modal_ray import config

TUNNEL_HOST_ENV = "MODAL_RAY_TUNNEL_HOST"
COPY_CHUNK = 64 * 1024


def node_address() -> str:
    """The address relays listen on: `MODAL_RAY_TUNNEL_HOST`, else the node's primary address
    (the one its default route leaves by), else loopback."""
    configured = config.settings().tunnel_host
    if configured:
        return configured
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        address = str(probe.getsockname()[0])
        if address and not address.startswith("0."):
            return address
    return "127.0.0.1"


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(COPY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class Relay:
    """One listening port; `connect()` gives a connected socket to the target per client."""

    def __init__(self, connect: Callable[[], Awaitable[socket.socket]]) -> None:
        self._connect = connect
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.host = ""
        self.port = 0

    async def start(self, host: str | None = None) -> Relay:
        self.host = host or node_address()
        self._server = await asyncio.start_server(self._serve, host=self.host, port=0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        inner_writer: asyncio.StreamWriter | None = None
        try:
            sock = await self._connect()
            sock.setblocking(False)
            inner_reader, inner_writer = await asyncio.open_connection(sock=sock)
            await asyncio.gather(_pump(reader, inner_writer), _pump(inner_reader, writer))
        except Exception:
            pass  # the target refused or went away: the client sees its connection close
        finally:
            self._conns.discard(task)
            for w in (writer, inner_writer):
                if w is not None:
                    w.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(BaseException):
                await task
