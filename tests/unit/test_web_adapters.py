"""The engine-neutral web pieces over real loopback HTTP, no Ray: labels, the gateway and its
proxy (root of its own origin, Host kept, streaming, websockets, an unreachable upstream), and
`AtRoot` taking the engine's route prefix off."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modal_ray.serve_adapters.auth import TokenTable
from modal_ray.serve_adapters.gateway import Gateway, _server_class
from modal_ray.serve_adapters.web import AtRoot, check_label, endpoint_label, shorten


def test_token_table() -> None:
    table = TokenTable()
    token_id, secret = table.create()
    assert token_id.startswith("wk-")
    assert secret.startswith("ws-")
    assert table.verify(token_id, secret)
    assert not table.verify(token_id, secret + "x")
    assert not table.verify("wk-other", secret)
    assert secret not in repr(table.records)  # only its hash is kept
    again = TokenTable(table.records)  # what the host persisted
    assert again.verify(token_id, secret)
    assert [t["token_id"] for t in again.list()] == [token_id]
    assert again.revoke(token_id)
    assert not again.verify(token_id, secret)
    assert again.list()[0]["revoked_at"] is not None
    assert again.delete(token_id)
    assert not again.revoke(token_id)
    assert again.list() == []


def test_labels() -> None:
    assert endpoint_label("My App", "Model.predict", None) == "my-app-model-predict"
    assert endpoint_label(None, "square", None) == "square"
    assert endpoint_label("app", "f", "custom") == "custom"
    long = "a" * 70
    short = shorten(long)
    assert len(short) == 63
    assert short == "a" * 56 + "-" + hashlib.sha256(long.encode()).hexdigest()[:6]
    assert shorten("b" * 63) == "b" * 63
    for bad in ("Upper", "-dash", "dash-", "under_score", ""):
        with pytest.raises(ValueError, match="Invalid web endpoint label"):
            check_label(bad)


HELD = {"n": 0}
HELD_TARGET = 120


async def _upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reports what it saw; `/stream` sends two chunks; `/ws` echoes."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "echo:" + m["text"]})
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    if scope["path"].endswith("/hold"):  # answers once HELD_TARGET requests are in
        HELD["n"] += 1
        deadline = asyncio.get_running_loop().time() + 20
        while HELD["n"] < HELD_TARGET and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        payload = str(HELD["n"]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload})
        return
    if scope["path"].endswith("/stream"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"one\n", b"two\n"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    seen = {
        "path": scope["path"],
        "root_path": scope.get("root_path", ""),
        "query": scope["query_string"].decode(),
        "host": headers.get("host"),
        "body": body.decode(),
    }
    import json

    payload = json.dumps(seen).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class _Loop:
    """An event loop on a thread, for servers the test talks to over loopback."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def served() -> Iterator[tuple[_Loop, Gateway, str]]:
    """An upstream server (the app behind a route prefix, as Serve's proxy routes to a
    replica) and a gateway."""
    import socket

    import uvicorn

    loop = _Loop()
    gateway = Gateway()

    async def mounted(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope, root_path="/route")
        await AtRoot(_upstream_app)(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(mounted, log_level="warning", lifespan="off")
    server = _server_class()(config)

    async def start() -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        return task

    async def stop(task: asyncio.Task[None]) -> None:
        server.should_exit = True
        await task

    task = loop.run(start())
    try:
        yield loop, gateway, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        loop.run(gateway.close_all())
        loop.run(stop(task))
        sock.close()
        loop.close()


def test_gateway_serves_the_route_at_the_root_of_its_own_origin(
    served: tuple[_Loop, Gateway, str],
) -> None:
    loop, gateway, up_url = served
    url = loop.run(gateway.open("ep", up_url + "/route", "ep"))
    assert url.startswith("http://127.0.0.1:")
    r = httpx.post(url + "/a/b?x=1", content=b"payload")
    seen = r.json()
    assert seen["path"] == "/a/b"  # the prefix went upstream and was taken off again
    assert seen["root_path"] == ""
    assert seen["query"] == "x=1"
    assert seen["host"] == url.removeprefix("http://")  # the client's own Host
    assert seen["body"] == "payload"
    # Re-opening keeps the port (the URL stays); closing frees it.
    assert loop.run(gateway.open("ep", up_url + "/route", "ep")) == url
    assert gateway.routes() == {"ep": url}
    assert loop.run(gateway.close_prefix("e")) == ["ep"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_gateway_streams_and_relays_websockets(served: tuple[_Loop, Gateway, str]) -> None:
    loop, gateway, up_url = served
    url = loop.run(gateway.open("ep", up_url + "/route", "ep"))
    with httpx.stream("GET", url + "/stream") as r:
        assert list(r.iter_lines()) == ["one", "two"]
    from websockets.sync.client import connect

    with connect(url.replace("http://", "ws://") + "/ws", open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "echo:hi"


def test_request_body_over_the_limit_is_a_413(served: tuple[_Loop, Gateway, str]) -> None:
    loop, gateway, up_url = served
    gateway.max_body = 1024
    url = loop.run(gateway.open("small", up_url + "/route", "small"))
    assert httpx.post(url, content=b"z" * 1024).json()["body"] == "z" * 1024
    r = httpx.post(url, content=b"z" * 1025)  # declared by Content-Length
    assert r.status_code == 413
    assert "limit is 1024 bytes" in r.text

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(8):
            yield b"z" * 512

    assert httpx.post(url, content=chunked()).status_code == 413


def test_many_long_requests_at_once_all_reach_the_upstream(
    served: tuple[_Loop, Gateway, str],
) -> None:
    loop, gateway, up_url = served
    url = loop.run(gateway.open("ep", up_url + "/route", "ep"))
    HELD["n"] = 0

    async def many() -> list[str]:
        limits = httpx.Limits(max_connections=HELD_TARGET)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            responses = await asyncio.gather(
                *(client.get(url + "/hold") for _ in range(HELD_TARGET))
            )
        return [r.text for r in responses]

    # Every request is held open until all of them are in: none may wait behind the others.
    assert all(int(n) >= HELD_TARGET for n in asyncio.run(many()))


def test_unreachable_upstream_is_a_502(served: tuple[_Loop, Gateway, str]) -> None:
    loop, gateway, _ = served
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    url = loop.run(gateway.open("dead", f"http://127.0.0.1:{dead}", "dead"))
    r = httpx.get(url)
    assert r.status_code == 502
    assert "Upstream unreachable" in r.text


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_starting_server_is_503_until_it_listens_then_forwards() -> None:
    import http.server

    from modal_ray.serve_adapters.web import StartingServer

    port = _free_port()

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        app = StartingServer(port, 60, "S")
        never = StartingServer(_free_port(), 0.01, "Never")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            starting = await client.get("/")
            server = http.server.ThreadingHTTPServer(
                ("127.0.0.1", port), http.server.SimpleHTTPRequestHandler
            )
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                up = await client.get("/", params={"q": "1"})
            finally:
                server.shutdown()
                server.server_close()
                await app.proxy.aclose()
        await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=never)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            gave_up = await client.get("/")
        await never.proxy.aclose()
        return starting, up, gave_up

    starting, up, gave_up = asyncio.run(scenario())
    assert starting.status_code == 503
    assert starting.headers["retry-after"] == "1"
    assert starting.text == "Server S is starting."
    assert up.status_code == 200
    assert gave_up.status_code == 503
    assert "retry-after" not in gave_up.headers
    assert "did not start listening on port" in gave_up.text
    assert "startup_timeout=0.01s" in gave_up.text


def test_registry_keeps_web_ports_and_server_objects(tmp_path: Any) -> None:
    from modal.exception import NotFoundError
    from modal_ray.storage.registry_server import RegistryServer, registry_path

    reg = RegistryServer(registry_path(tmp_path, "main"), environment="main")
    app_id = reg.call("reserve", True, ("app",))
    assert reg.call("web_ports", False, (app_id,)) == {}
    reg.call("set_web_ports", True, (app_id, {"a": 20001, "b": 20002}))
    reg.call("set_web_ports", True, (app_id, {"a": 20003}))
    assert reg.call("web_ports", False, (app_id,)) == {"a": 20003, "b": 20002}
    assert reg.call("web_ports", False, ("ap-other",)) == {}
    reg.call("deploy", True, ("app", app_id, "", "dp-1", [("S", "server", b"s")], {}))
    found = reg.call("lookup", False, ("app", "S", "server"))
    assert found["object_id"].startswith("sv-")
    with pytest.raises(NotFoundError, match="'S' in app 'app' is a Server, not a Function"):
        reg.call("lookup", False, ("app", "S", "function"))


def test_deadline_is_504_before_the_response_and_cuts_a_stream_after() -> None:
    from modal_ray.serve_adapters.web import Deadline

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
        elif scope["path"] == "/own":
            raise TimeoutError("the handler's own")
        await asyncio.sleep(30)

    async def scenario() -> tuple[httpx.Response, BaseException | None, BaseException | None]:
        transport = httpx.ASGITransport(app=Deadline(slow, 0.2, "slow"))
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            timed_out = await client.get("/")
            cut: BaseException | None = None
            own: BaseException | None = None
            try:
                await client.get("/stream")
            except TimeoutError as exc:
                cut = exc
            try:
                await client.get("/own")
            except TimeoutError as exc:
                own = exc
        return timed_out, cut, own

    timed_out, cut, own = asyncio.run(scenario())
    assert timed_out.status_code == 504
    assert timed_out.text == "Web endpoint slow timed out after 0.2s (the function's `timeout=`)."
    assert cut is not None  # the stream is cut off, not completed
    assert str(own) == "the handler's own"
