"""Web endpoint kinds as ASGI applications, built inside a replica from its container.

`WebSpec` is what a web decorator records; `build_app` turns a started `Replica` and its
`WebSpec` into one ASGI application, which the backend serves over HTTP:

- `fastapi_endpoint`: a FastAPI app with the function as its one route at `/` (FastAPI parses
  query parameters and bodies from the signature: 422 on invalid input; `docs=True` adds
  `/docs`);
- `asgi_app`: the app the function returns (its lifespan runs through the engine's ASGI host);
- `wsgi_app`: the WSGI app the function returns, through `a2wsgi`;
- `web_server`: the function starts a server process; once it listens on `port` (within
  `startup_timeout`) requests and websockets are forwarded to it (`proxy.HTTPProxy`), else
  every request gets 503 saying why;
- `server` (`@app.server`): the class's `@modal.enter` hooks start the server; the replica takes
  traffic at once and answers 503 (with `Retry-After`) until the server listens on `port`, as
  Modal answers while a Server's container starts; after `startup_timeout` without a listener,
  503 saying why.

Every app is wrapped so that it sees itself at the root of its origin (the engine's route prefix
is taken off the path), a handler error before the response starts becomes a bare 500 whose
details go to the container's log, never to the client, and a request running past the
function's `timeout=` gets 504 (`Deadline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import re
import socket
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .proxy import Receive, Scope, Send, send_text

if TYPE_CHECKING:
    from modal_ray.runtime.container import ContainerSpec
    from modal_ray.specs import ServiceSpec

    from .replica import Replica

KINDS = ("fastapi_endpoint", "asgi_app", "wsgi_app", "web_server", "server")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_LABEL = 63
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


@dataclass(frozen=True)
class WebSpec:
    """What a web decorator asked for. Picklable; travels to every replica."""

    kind: str
    method: str = "GET"
    label: str | None = None
    docs: bool = False
    requires_proxy_auth: bool = False
    port: int | None = None
    startup_timeout: float = 5.0
    sessioned: bool = False  # a `@modal.sessioned()` Server: sticky sessions at the gateway


@dataclass(frozen=True)
class WebEndpoint:
    """One endpoint to serve: its container pool (`ServiceSpec`, `ContainerSpec`), what it
    serves, the method that builds it (`"__call__"` for a function, `"__server__"` for a
    Server) and its label. The web methods of one class share their pool: each is served
    under its own sub-path of the pool's route (`sub`), each at the root of its own origin."""

    service: ServiceSpec
    container: ContainerSpec
    web: WebSpec
    label: str
    method: str = "__call__"
    port: int | None = None  # a port to keep (`modal serve` reloads), if it is free

    @property
    def sub(self) -> str:
        """The endpoint's sub-path in its pool ("" when the pool serves only it)."""
        return "" if self.method.startswith("__") else self.method

    @property
    def key(self) -> str:
        """The endpoint's route (its origin's key): the pool's name, and its sub-path."""
        return f"{self.service.name}/{self.sub}" if self.sub else self.service.name


def check_label(label: str) -> str:
    """A user's `label=`: lowercase letters, digits and inner dashes (Modal rejects others)."""
    if not isinstance(label, str) or not _LABEL_RE.match(label):
        raise ValueError(
            f"Invalid web endpoint label {label!r}: use lowercase letters, digits and dashes"
            " (not at either end)."
        )
    return label


def slug(text: str) -> str:
    """`text` in a hostname's alphabet (lowercase, dashes)."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out or "app"


def shorten(label: str) -> str:
    """Modal's rule for labels over 63 characters: 56 characters, `-`, 6 hex of its SHA-256."""
    if len(label) <= MAX_LABEL:
        return label
    return f"{label[:56]}-{hashlib.sha256(label.encode()).hexdigest()[:6]}"


def endpoint_label(app_name: str | None, tag: str, label: str | None) -> str:
    """The endpoint's label: `label=` as given, else `<app>-<function>` slugified."""
    if label is not None:
        return shorten(label)
    base = slug(tag) if not app_name else f"{slug(app_name)}-{slug(tag)}"
    return shorten(base)


class AtRoot:
    """Show `app` itself at the root of its origin: the engine's route prefix (`root_path`)
    is removed from the path, so absolute redirects and links work unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            root = scope.get("root_path") or ""
            if root:
                scope = dict(scope)
                path = scope.get("path", "")
                if path.startswith(root):
                    scope["path"] = path[len(root) :] or "/"
                raw = scope.get("raw_path")
                if raw and raw.startswith(root.encode()):
                    scope["raw_path"] = raw[len(root) :] or b"/"
                scope["root_path"] = ""
        await self.app(scope, receive, send)


class Shield:
    """A handler error before the response started answers a bare 500; details are logged."""

    def __init__(self, app: Any, what: str) -> None:
        self.app = app
        self.what = what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            print(f"Error in web endpoint {self.what}:", file=sys.stderr)
            traceback.print_exc()
            if not started:
                await send_text(send, 500, "Internal Server Error")


class Deadline:
    """Each request (or websocket) of a web endpoint is one input on Modal, bounded by its
    function's `timeout=`: past it, a request whose response has not started gets 504 saying so,
    one whose response has started (a stream) is cut off, and a websocket is closed (1011). A
    sync handler's thread cannot be interrupted (Python has no way to); its request ends."""

    def __init__(self, app: Any, timeout: float, what: str) -> None:
        self.app = app
        self.timeout = timeout
        self.what = what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] in ("http.response.start", "websocket.accept"):
                started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, tracking_send))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
        except asyncio.CancelledError:  # the client went away: so does the handler
            task.cancel()
            raise
        if done:
            task.result()  # the handler's own outcome, errors included
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        reason = (
            f"Web endpoint {self.what} timed out after {self.timeout:g}s (the function's"
            " `timeout=`)."
        )
        print(reason, file=sys.stderr)
        if scope["type"] == "websocket":
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": 1011})
        elif not started:
            await send_text(send, 504, reason)
        else:
            raise TimeoutError(reason)  # the response is cut off


class Unavailable:
    """Answers every request with `status` and `reason` (a failed start, a server not up)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send_text(send, self.status, self.reason)
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1011})
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return


async def _call(fn: Any) -> Any:
    """A nullary user factory: in a thread if it is sync (it may load a model)."""
    if inspect.iscoroutinefunction(fn):
        return await fn()
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def _fastapi_app(fn: Any, web: WebSpec) -> Any:
    from fastapi import FastAPI

    app = FastAPI(
        docs_url="/docs" if web.docs else None,
        redoc_url="/redoc" if web.docs else None,
        openapi_url="/openapi.json" if web.docs else None,
    )
    app.add_api_route("/", fn, methods=[web.method])
    return app


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def wait_for_port(port: int, timeout: float) -> bool:
    """Has something started listening on `port` within `timeout` seconds?"""
    deadline = time.monotonic() + timeout
    loop = asyncio.get_running_loop()
    while True:
        if await loop.run_in_executor(None, port_open, port):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


class Routes:
    """The web methods of one class, served by one pool: the first path segment under the
    engine's route prefix names the method (`/<prefix>/<method>/...`); the method's app then
    sees itself at the root (its `AtRoot` takes `/<prefix>/<method>` off). Lifespan events go
    to every method's app."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.apps = apps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send, scope)
            return
        root = scope.get("root_path") or ""
        path = scope.get("path", "")
        rest = path[len(root) :] if root and path.startswith(root) else path
        sub = rest.lstrip("/").split("/", 1)[0]
        app = self.apps.get(sub)
        if app is None:
            if scope["type"] == "http":
                await send_text(send, 404, "Not Found")
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1000})
            return
        await app({**scope, "root_path": f"{root}/{sub}"}, receive, send)

    async def _lifespan(self, receive: Receive, send: Send, scope: Scope) -> None:
        """Each app gets its own lifespan conversation; the engine sees one, which fails if
        any app's startup failed. An app that does not speak lifespan is left out of it."""
        loop = asyncio.get_running_loop()
        talks = []
        for app in self.apps.values():
            inbox: asyncio.Queue[Any] = asyncio.Queue()
            outbox: asyncio.Queue[Any] = asyncio.Queue()
            task = loop.create_task(app(scope, inbox.get, outbox.put))
            talks.append((inbox, outbox, task))

        async def answer(outbox: asyncio.Queue[Any], task: asyncio.Task[Any]) -> Any:
            getter = loop.create_task(outbox.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                return getter.result()
            getter.cancel()
            return None  # it left the conversation (no lifespan support, or it raised)

        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]  # startup / shutdown
            live = [(i, o, t) for i, o, t in talks if not t.done()]
            for inbox, _, _ in live:
                inbox.put_nowait(message)
            replies = [await answer(o, t) for _, o, t in live]
            failed = [r for r in replies if r and r["type"].endswith(".failed")]
            if failed:
                await send(
                    {"type": f"lifespan.{kind}.failed", "message": failed[0].get("message", "")}
                )
            else:
                await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                for _, _, task in talks:
                    if not task.done():
                        task.cancel()
                return


async def build_routes(
    replica: Replica,
    endpoints: list[tuple[str, WebSpec, str]],
    verify: Callable[[str, str], Awaitable[bool]] | None = None,
) -> Any:
    """The ASGI application of a pool serving `endpoints` (sub-path, spec, method): the one
    endpoint's app when it is alone at the pool's root (`sub` ""), else `Routes`."""
    if len(endpoints) == 1 and not endpoints[0][0]:
        _, web, method = endpoints[0]
        return await build_app(replica, web, method, verify)
    return Routes(
        {sub: await build_app(replica, web, method, verify) for sub, web, method in endpoints}
    )


async def build_app(
    replica: Replica,
    web: WebSpec,
    method: str = "__call__",
    verify: Callable[[str, str], Awaitable[bool]] | None = None,
) -> Any:
    """The ASGI application one replica serves for its web endpoint. With
    `requires_proxy_auth`, `verify(token_id, secret)` checks each request's proxy token."""
    app = await _build(replica, web, method)
    if web.requires_proxy_auth:
        from .auth import ProxyAuth

        if verify is None:
            raise ValueError("requires_proxy_auth needs a token verifier")
        app = ProxyAuth(app, verify)
    return AtRoot(app)


async def _build(replica: Replica, web: WebSpec, method: str) -> Any:
    what = replica.spec.tag if method.startswith("__") else f"{replica.spec.tag}.{method}"
    failure = replica.start_failure
    if failure is not None:
        print(f"Web endpoint {what} failed to start:\n{failure.traceback}", file=sys.stderr)
        return Unavailable(500, "Internal Server Error")
    fn = replica.user_callable(method) if web.kind != "server" else None
    try:
        if web.kind == "fastapi_endpoint":
            app: Any = _fastapi_app(fn, web)
        elif web.kind == "asgi_app":
            app = await _call(fn)
        elif web.kind == "wsgi_app":
            from a2wsgi import WSGIMiddleware

            app = WSGIMiddleware(await _call(fn))
        elif web.kind == "server":
            assert web.port is not None
            app = StartingServer(web.port, web.startup_timeout, what)
        elif web.kind == "web_server":
            assert web.port is not None
            await _call(fn)
            if not await wait_for_port(web.port, web.startup_timeout):
                reason = (
                    f"Web server {what} did not start listening on port {web.port} within"
                    f" startup_timeout={web.startup_timeout:g}s."
                )
                print(reason, file=sys.stderr)
                return Unavailable(503, reason)
            app = HTTPProxyAtPort(web.port)
        else:
            raise ValueError(f"unknown web endpoint kind {web.kind!r}")
    except Exception:
        print(f"Web endpoint {what} failed to start:", file=sys.stderr)
        traceback.print_exc()
        return Unavailable(500, "Internal Server Error")
    shielded = Shield(app, what)
    timeout = replica.spec.timeout
    if web.kind == "server" or not timeout:  # a Server has no `timeout=`
        return shielded
    return Deadline(shielded, timeout, what)


class StartingServer:
    """An `@app.server` container's server (started by its `@modal.enter` hooks): 503 with
    `Retry-After` until something listens on `port`, then every request and websocket is
    forwarded to it. Not listening `timeout` seconds after the container started: 503 saying
    why, from then on."""

    def __init__(self, port: int, timeout: float, what: str) -> None:
        self.port = port
        self.what = what
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.proxy = HTTPProxyAtPort(port)
        self.ready = False
        self.reason: str | None = None

    async def _check(self) -> bool:
        if self.ready:
            return True
        if self.reason is None:
            loop = asyncio.get_running_loop()
            if await loop.run_in_executor(None, port_open, self.port):
                self.ready = True
                return True
            if time.monotonic() >= self.deadline:
                self.reason = (
                    f"Server {self.what} did not start listening on port {self.port} within"
                    f" startup_timeout={self.timeout:g}s."
                )
                print(self.reason, file=sys.stderr)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not await self._check():
            if scope["type"] == "websocket":
                await receive()
                await send({"type": "websocket.close", "code": 1013})  # try again later
                return
            if self.reason is not None:
                await send_text(send, 503, self.reason)
            else:
                await send_text(send, 503, f"Server {self.what} is starting.", {"retry-after": "1"})
            return
        await self.proxy(scope, receive, send)


def HTTPProxyAtPort(port: int) -> Any:
    from .proxy import HTTPProxy

    return HTTPProxy(f"http://127.0.0.1:{port}")
