"""The web gateway: each endpoint at the root of its own origin, one 127.0.0.1 port each.

The engine's HTTP proxy serves every endpoint on one port under a route prefix; Modal gives each
endpoint its own hostname, and programs redirect to and link absolute paths. The gateway listens
on one port per endpoint and forwards everything (HTTP, streaming bodies, websockets) to the
endpoint's route on the engine's proxy (`proxy.HTTPProxy`); the replica takes the prefix off
again (`web.AtRoot`), so the app sees exactly the paths the client sent.

Engine-neutral: the backend hosts one `Gateway` (a long-lived actor on the head node) and calls
`open` / `close` / `url`. Routes are keyed by the endpoint's pool name.

Invariants:
- a route keeps its port for as long as it is open; re-opening a key with a new upstream keeps
  the port (the URL stays), and a caller may ask for a given port (URLs kept by a registry);
- `close` stops the listener and frees the port;
- a request body over `max_body` (Modal's 4 GiB) is refused with 413;
- a sessioned Server's route takes only requests of its live sticky sessions
  (`sessions.SessionGate`); its sessions last as long as the route.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .proxy import HTTPProxy
from .sessions import SessionGate

# Modal accepts request bodies up to 4 GiB; larger ones get 413 here, before any replica.
MAX_BODY = 4 * 1024**3


def _server_class() -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn without its signal handlers: the host process owns its signals."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return _Server


@dataclass
class _Route:
    port: int
    label: str
    proxy: HTTPProxy
    server: Any
    task: asyncio.Task[None]
    gate: SessionGate | None = None  # a sessioned Server's sessions


class Gateway:
    """The listeners of all open endpoints, in one process and event loop."""

    def __init__(self, host: str = "127.0.0.1", max_body: int | None = MAX_BODY) -> None:
        self.host = host
        self.max_body = max_body
        self._routes: dict[str, _Route] = {}

    def url(self, key: str) -> str | None:
        route = self._routes.get(key)
        return None if route is None else self._url(route.port)

    def _url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    def routes(self) -> dict[str, str]:
        return {k: self._url(r.port) for k, r in self._routes.items()}

    async def open(
        self,
        key: str,
        upstream: str,
        label: str,
        port: int | None = None,
        session_header: str | None = None,
    ) -> str:
        """Serve `upstream` at the root of its own port; the URL. With `session_header`, the
        route takes only requests of live sticky sessions (`sessions.SessionGate`), and hands
        them on with their routing key in that header."""
        route = self._routes.get(key)
        same_kind = route is not None and (route.gate is None) == (session_header is None)
        if route is not None and same_kind and (port is None or port == route.port):
            route.proxy.base = upstream.rstrip("/")
            route.label = label
            return self._url(route.port)
        if route is not None:
            port = port or route.port
            await self.close(key)
        sock = await self._bind(port)
        sock.listen(1024)
        sock.setblocking(False)
        import uvicorn

        proxy = HTTPProxy(upstream, max_body=self.max_body)
        gate = SessionGate(proxy, session_header) if session_header is not None else None
        config = uvicorn.Config(
            gate or proxy,
            log_level="warning",
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=2,
        )
        server = _server_class()(config)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raises why it could not start
        bound = sock.getsockname()[1]
        self._routes[key] = _Route(int(bound), label, proxy, server, task, gate)
        return self._url(int(bound))

    def session_start(self, key: str, idle_timeout: float) -> str | None:
        """A new sticky session on the sessioned route `key`: its token (None: no such route)."""
        route = self._routes.get(key)
        if route is None or route.gate is None:
            return None
        return route.gate.table.start(idle_timeout)

    def session_terminate(self, key: str, token: str) -> bool:
        route = self._routes.get(key)
        return route is not None and route.gate is not None and route.gate.table.terminate(token)

    async def _bind(self, port: int | None, wait_s: float = 10.0) -> socket.socket:
        """A listening socket on `port`; a wanted port that stays busy for `wait_s` (a
        previous listener still going away) gives way to a free one."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, port or 0))
                return sock
            except OSError:
                sock.close()
                if not port or asyncio.get_running_loop().time() >= deadline:
                    if not port:
                        raise
                    port = None
                    continue
                await asyncio.sleep(0.2)

    async def close(self, key: str) -> bool:
        route = self._routes.pop(key, None)
        if route is None:
            return False
        route.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(route.task), 5)
        if not route.task.done():
            route.task.cancel()
        await route.proxy.aclose()
        return True

    async def close_prefix(self, prefix: str) -> list[str]:
        keys = [k for k in self._routes if k.startswith(prefix)]
        for k in keys:
            await self.close(k)
        return keys

    async def close_all(self) -> None:
        for k in list(self._routes):
            await self.close(k)
