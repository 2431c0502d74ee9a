"""An ASGI application that forwards HTTP and websockets to an upstream HTTP server.

Used twice: inside a `@modal.web_server` replica (to the user's process on 127.0.0.1:<port>)
and by the web gateway (one origin per endpoint, in front of the engine's HTTP proxy). Bodies
stream both ways (nothing is buffered whole), and a client that goes away cancels the upstream
request, so a producer behind it stops. The client is aiohttp, which the engine already ships.

Invariants:
- the upstream sees the client's own `Host` header and path (below the upstream's base path);
- hop-by-hop headers are not forwarded;
- an upstream that cannot be reached answers 502 with a short plain-text reason, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


async def send_text(
    send: Send, status: int, text: str, headers: dict[str, str] | None = None
) -> None:
    """A complete plain-text response (with extra `headers`, if any)."""
    body = text.encode()
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HTTPProxy:
    """Forward every request to `base` (e.g. `http://127.0.0.1:8000` or `.../prefix`)."""

    def __init__(
        self, base: str, *, connect_timeout: float = 10.0, max_body: int | None = None
    ) -> None:
        self.base = base.rstrip("/")
        self.max_body = max_body  # request bodies over it get 413
        self._connect_timeout = connect_timeout
        self._session: Any = None

    def _client(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # No cap on connections to the upstream: long streams and websockets must not
                # make later requests wait (aiohttp's default is 100). Idle connections are
                # dropped before common servers drop theirs (uvicorn: 5 s), so a reused one is
                # never closed under a request.
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def _target(self, scope: Scope, scheme: str = "http") -> str:
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope.get("path", "/")
        query = scope.get("query_string", b"")
        url = self.base + (path or "/")
        if query:
            url += "?" + query.decode("latin-1")
        if scheme == "ws":
            url = "ws" + url[len("http") :]
        return url

    @staticmethod
    def _headers(scope: Scope, skip: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        out = []
        for k, v in scope.get("headers", []):
            name = k.decode("latin-1").lower()
            if name in _HOP_BY_HOP or name in skip:
                continue
            out.append((name, v.decode("latin-1")))
        return out

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        import aiohttp
        from multidict import CIMultiDict

        limit = self.max_body
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if (
            limit is not None
            and declared is not None
            and declared.isdigit()
            and int(declared) > limit
        ):
            await self._too_large(send)
            return
        first = await receive()
        if first["type"] == "http.disconnect":
            return
        body_done = not first.get("more_body", False)
        too_large = False
        data: Any
        if body_done:
            data = first.get("body", b"") or None
            if limit is not None and data is not None and len(data) > limit:
                await self._too_large(send)
                return
        else:

            async def chunks() -> AsyncIterator[bytes]:
                nonlocal body_done, too_large
                total = len(first.get("body", b""))
                yield first.get("body", b"")
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise asyncio.CancelledError
                    body = message.get("body", b"")
                    total += len(body)
                    if limit is not None and total > limit:
                        too_large = True
                        body_done = True
                        raise ValueError("request body over the limit")
                    yield body
                    if not message.get("more_body", False):
                        body_done = True
                        return

            data = chunks()

        async def forward() -> None:
            headers = CIMultiDict(self._headers(scope))
            try:
                ctx = self._client().request(
                    scope["method"],
                    self._target(scope),
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                )
                resp = await ctx.__aenter__()
            except Exception as exc:
                if too_large:
                    await self._too_large(send)
                    return
                if not isinstance(exc, aiohttp.ClientError | OSError):
                    raise
                await send_text(send, 502, f"Upstream unreachable: {type(exc).__name__}")
                return
            try:
                headers_out = [
                    (k, v)
                    for k, v in resp.raw_headers
                    if k.decode("latin-1").lower() not in _HOP_BY_HOP
                ]
                await send(
                    {"type": "http.response.start", "status": resp.status, "headers": headers_out}
                )
                async for chunk in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            finally:
                await ctx.__aexit__(None, None, None)

        task = asyncio.ensure_future(forward())

        async def watch_disconnect() -> None:
            # Once the request body is read, the next message is the client leaving.
            while not body_done:
                await asyncio.sleep(0.05)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    task.cancel()
                    return

        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    async def _too_large(self, send: Send) -> None:
        await send_text(send, 413, f"Request body too large: the limit is {self.max_body} bytes.")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        import aiohttp

        message = await receive()
        if message["type"] != "websocket.connect":
            return
        skip = frozenset(
            {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"}
            | {"sec-websocket-protocol", "host"}
        )
        headers = self._headers(scope, skip)
        host = next((v for k, v in self._headers(scope) if k == "host"), None)
        if host:
            headers.append(("host", host))
        try:
            ws = await self._client().ws_connect(
                self._target(scope, "ws"),
                headers=headers,
                protocols=tuple(scope.get("subprotocols") or ()),
                autoping=True,
            )
        except (aiohttp.ClientError, OSError) as exc:
            print(f"websocket to {self._target(scope, 'ws')} failed: {exc!r}", file=sys.stderr)
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": ws.protocol})

        async def client_to_upstream() -> None:
            while True:
                m = await receive()
                if m["type"] == "websocket.disconnect":
                    await ws.close()
                    return
                if m.get("text") is not None:
                    await ws.send_str(m["text"])
                elif m.get("bytes") is not None:
                    await ws.send_bytes(m["bytes"])

        async def upstream_to_client() -> None:
            async for m in ws:
                if m.type == aiohttp.WSMsgType.TEXT:
                    await send({"type": "websocket.send", "text": m.data})
                elif m.type == aiohttp.WSMsgType.BINARY:
                    await send({"type": "websocket.send", "bytes": m.data})
                else:
                    break
            await send({"type": "websocket.close", "code": ws.close_code or 1000})

        tasks = [
            asyncio.ensure_future(client_to_upstream()),
            asyncio.ensure_future(upstream_to_client()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await ws.close()
