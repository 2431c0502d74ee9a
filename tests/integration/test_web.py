"""Web endpoints over real HTTP (httpx, websockets) on the session's Ray: each endpoint at the
root of its own 127.0.0.1 origin, in front of Ray Serve."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Request, UploadFile, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

import modal
from modal.exception import InvalidError

app = modal.App("test-web")


class Item(BaseModel):
    name: str
    qty: int


@app.function(cpu=0.1)
@modal.fastapi_endpoint()
def square(x: int) -> dict[str, int]:
    return {"square": x * x}


@app.function(cpu=0.1)
@modal.fastapi_endpoint(method="POST", label="echo-item", docs=True)
def create(item: dict[str, Any]) -> dict[str, Any]:
    return {"got": item}


@app.function(cpu=0.1)
@modal.fastapi_endpoint()
def fails() -> str:
    raise RuntimeError("secret internals")


@app.function(cpu=0.1)
def segment(i: int) -> str:
    return f"segment {i}\n"


@app.function(cpu=0.1)
@modal.fastapi_endpoint()
def mapped() -> StreamingResponse:
    # Modal's streaming guide: a web endpoint streams the results of a `.map` it starts.
    return StreamingResponse(segment.map(range(3)), media_type="text/plain")


@app.function(cpu=0.1)
@modal.fastapi_endpoint(requires_proxy_auth=True)
def private() -> str:
    return "private data"


@app.function(cpu=0.1, timeout=1)
@modal.fastapi_endpoint()
async def too_slow() -> str:
    await asyncio.sleep(60)
    return "never"


@app.function(cpu=0.1)
@modal.fastapi_endpoint()
def own_url() -> str | None:
    return square.get_web_url()


@app.function(cpu=0.1, max_containers=1)
@modal.concurrent(max_inputs=8)
@modal.asgi_app()
def site() -> Any:
    from fastapi import FastAPI, File, Form
    from fastapi.responses import RedirectResponse, StreamingResponse

    state: dict[str, Any] = {"produced": 0}

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> Any:
        state["lifespan"] = "started"
        yield
        state["lifespan"] = "stopped"

    web = FastAPI(lifespan=lifespan)
    release = asyncio.Event()

    @web.get("/lifespan")
    def lifespan_state() -> str:
        return str(state.get("lifespan"))

    @web.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
        return {"received": total}

    @web.get("/download")
    def download(mib: int) -> StreamingResponse:
        def chunks() -> Any:
            for _ in range(mib):
                yield b"x" * (1 << 20)

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @web.get("/")
    def root() -> dict[str, str]:
        return {"page": "root"}

    @web.post("/items")
    def add(item: Item) -> dict[str, Any]:
        return {"name": item.name, "qty": item.qty}

    @web.get("/go")
    def go() -> RedirectResponse:
        return RedirectResponse("/result?from=go")

    @web.get("/result")
    def result() -> dict[str, str]:
        return {"page": "result"}

    @web.get("/release")
    def do_release() -> dict[str, int]:
        release.set()
        return {"produced": state["produced"]}

    @web.get("/stream")
    async def stream() -> StreamingResponse:
        release.clear()

        async def produce() -> Any:
            state["produced"] = 1
            yield b"first\n"
            await release.wait()  # the last chunk only after the client saw the first
            state["produced"] = 2
            yield b"last\n"

        return StreamingResponse(produce(), media_type="text/plain")

    @web.get("/endless")
    async def endless() -> StreamingResponse:
        state["endless"] = "running"

        async def produce() -> Any:
            try:
                while True:
                    yield b"tick\n"
                    await asyncio.sleep(0.05)
            finally:
                state["endless"] = "stopped"

        return StreamingResponse(produce(), media_type="text/plain")

    @web.get("/endless-state")
    def endless_state() -> dict[str, Any]:
        return {"state": state.get("endless")}

    @web.get("/boom")
    def boom() -> None:
        raise ValueError("hidden detail")

    # A form upload: FastAPI needs python-multipart, which the workers' base environment
    # provides (the image lists nothing), as Modal web code commonly assumes.
    @web.post("/form")
    async def form(file: UploadFile = File(...), note: str = Form("")) -> dict[str, Any]:
        return {"name": file.filename, "size": len(await file.read()), "note": note}

    @web.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        while True:
            text = await socket.receive_text()
            await socket.send_text(f"echo:{text}")

    return web


@app.function(cpu=0.1)
@modal.wsgi_app()
def flask_site() -> Any:
    from flask import Flask, request

    web = Flask("flask_site")

    @web.route("/hello")
    def hello() -> str:
        return f"hello {request.args.get('name', 'nobody')}"

    return web


@app.function(cpu=0.1)
@modal.web_server(18731, startup_timeout=30)
def files() -> None:
    import os
    import tempfile

    root = tempfile.mkdtemp()
    with open(os.path.join(root, "hello.txt"), "w") as f:
        f.write("served by http.server")
    subprocess.Popen(
        [sys.executable, "-m", "http.server", "18731", "--bind", "127.0.0.1", "-d", root]
    )


WS_SERVER = """
import asyncio
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send("server:" + message)

async def main():
    async with serve(echo, "127.0.0.1", 18733):
        await asyncio.Future()

asyncio.run(main())
"""


@app.function(cpu=0.1)
@modal.web_server(18733, startup_timeout=60)
def ws_server() -> None:
    subprocess.Popen([sys.executable, "-c", WS_SERVER])


@app.cls(cpu=0.1, max_containers=1)
class Model:
    greeting: str = modal.parameter(default="hello")

    @modal.enter()
    def load(self) -> None:
        import uuid

        self.weights = "loaded"
        self.container = uuid.uuid4().hex

    @modal.fastapi_endpoint()
    def predict(self, name: str) -> dict[str, str]:
        return {"out": f"{self.greeting} {name}", "weights": self.weights}

    @modal.fastapi_endpoint()
    def container_id(self) -> str:
        return self.container

    @modal.asgi_app(label="model-admin")
    def admin(self) -> Any:
        from fastapi import FastAPI

        web = FastAPI()

        @web.get("/weights")
        def weights() -> str:
            return self.weights

        @web.get("/container")
        def container() -> str:
            return self.container

        return web


@pytest.fixture(scope="module")
def running() -> Iterator[modal.App]:
    with app.run():
        yield app


def _url(fn: Any) -> str:
    url = fn.get_web_url()
    assert url is not None
    assert url.startswith("http://127.0.0.1:")
    return str(url)


def test_fastapi_endpoint_get_and_422(running: modal.App) -> None:
    url = _url(square)
    assert httpx.get(url, params={"x": 7}).json() == {"square": 49}
    bad = httpx.get(url, params={"x": "seven"})
    assert bad.status_code == 422
    assert httpx.get(url).status_code == 422  # missing query parameter


def test_fastapi_endpoint_post_body(running: modal.App) -> None:
    url = _url(create)
    r = httpx.post(url, json={"a": 1})
    assert r.json() == {"got": {"a": 1}}
    assert (
        httpx.post(
            url, content=b"not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert httpx.get(url).status_code == 405
    assert httpx.get(url + "/docs").status_code == 200  # docs=True
    assert httpx.get(_url(square) + "/docs").status_code == 404


def test_each_endpoint_has_its_own_origin(running: modal.App) -> None:
    urls = {_url(f) for f in (square, create, fails, site, flask_site, files)}
    assert len(urls) == 6
    assert sorted(running.registered_web_endpoints) == sorted(
        [
            "square",
            "create",
            "mapped",
            "fails",
            "private",
            "too_slow",
            "own_url",
            "site",
            "flask_site",
            "files",
            "ws_server",
        ]
    )


def test_get_web_url_inside_a_running_function(running: modal.App) -> None:
    assert httpx.get(_url(own_url)).json() == _url(square)


def test_remote_call_of_a_web_function_runs_on_its_endpoint(running: modal.App) -> None:
    assert square.remote(3) == {"square": 9}
    assert list(square.map([1, 2])) == [{"square": 1}, {"square": 4}]
    assert square.local(3) == {"square": 9}


def test_proxy_auth_refuses_accepts_and_refuses_after_revocation(
    running: modal.App, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    from modal_ray.backends.ray.web import GATEWAY_NAMESPACE, TOKENS_NAME
    from modal_ray.web import proxy_tokens

    monkeypatch.setenv("MODAL_RAY_STATE", str(tmp_path))  # the token table's file goes here
    with contextlib.suppress(ValueError):  # a table an earlier test made (on the session store)
        ray.kill(ray.get_actor(TOKENS_NAME, namespace=GATEWAY_NAMESPACE))
    url = _url(private)
    try:
        assert httpx.get(url).status_code == 401
        token_id, secret = proxy_tokens("create")
        ok = {"Modal-Key": token_id, "Modal-Secret": secret}
        r = httpx.get(url, headers=ok)
        assert r.status_code == 200
        assert r.json() == "private data"
        assert httpx.get(url, headers={**ok, "Modal-Secret": "ws-wrong"}).status_code == 401
        assert httpx.get(url, headers={"Modal-Key": token_id}).status_code == 401
        listed = proxy_tokens("list")
        assert [t["token_id"] for t in listed] == [token_id]
        assert secret not in (tmp_path / "proxy-tokens.json").read_text()
        assert proxy_tokens("revoke", token_id)
        deadline = time.monotonic() + 30  # replicas remember a valid token for 2 s
        while httpx.get(url, headers=ok).status_code != 401:
            assert time.monotonic() < deadline, "a revoked token still works"
            time.sleep(0.2)
        assert proxy_tokens("delete", token_id)
        assert not proxy_tokens("revoke", token_id)
    finally:
        ray.kill(ray.get_actor(TOKENS_NAME, namespace=GATEWAY_NAMESPACE))


def test_request_past_the_function_timeout_is_a_504(running: modal.App) -> None:
    r = httpx.get(_url(too_slow), timeout=60)
    assert r.status_code == 504
    assert "timed out after 1s" in r.text


def test_handler_error_is_a_bare_500(running: modal.App) -> None:
    r = httpx.get(_url(fails))
    assert r.status_code == 500
    assert "secret internals" not in r.text
    r = httpx.get(_url(site) + "/boom")
    assert r.status_code == 500
    assert "hidden detail" not in r.text


def test_asgi_app_routes_typed_body_and_absolute_redirect(running: modal.App) -> None:
    base = _url(site)
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        assert client.get("/").json() == {"page": "root"}
        assert client.post("/items", json={"name": "a", "qty": 2}).json() == {
            "name": "a",
            "qty": 2,
        }
        assert client.post("/items", json={"name": "a", "qty": "many"}).status_code == 422
        r = client.get("/go")
        assert r.json() == {"page": "result"}
        assert str(r.url) == base + "/result?from=go"
        assert r.history[0].headers["location"] == "/result?from=go"


def test_asgi_app_takes_a_multipart_form_upload(running: modal.App) -> None:
    r = httpx.post(
        _url(site) + "/form",
        files={"file": ("a.png", b"\x89PNG" + b"\0" * 60, "image/png")},
        data={"note": "hi"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "a.png", "size": 64, "note": "hi"}


def test_endpoint_streams_a_map_it_starts(running: modal.App) -> None:
    r = httpx.get(_url(mapped), timeout=120)
    assert r.status_code == 200
    assert r.text == "segment 0\nsegment 1\nsegment 2\n"


def test_asgi_lifespan_started_before_the_first_request(running: modal.App) -> None:
    assert httpx.get(_url(site) + "/lifespan").json() == "started"


def test_large_bodies_stream_both_ways(running: modal.App) -> None:
    mib = 32

    def body() -> Iterator[bytes]:
        for _ in range(mib):
            yield b"y" * (1 << 20)

    with httpx.Client(base_url=_url(site), timeout=120) as client:
        assert client.post("/upload", content=body()).json() == {"received": mib << 20}
        received = 0
        with client.stream("GET", "/download", params={"mib": mib}) as r:
            for chunk in r.iter_bytes():
                received += len(chunk)
        assert received == mib << 20


def test_streaming_first_chunk_before_last_is_produced(running: modal.App) -> None:
    base = _url(site)
    with httpx.Client(base_url=base, timeout=60) as client, client.stream("GET", "/stream") as r:
        lines = r.iter_lines()
        assert next(lines) == "first"
        # The producer is still waiting: it has made only the first chunk.
        assert client.get("/release").json() == {"produced": 1}
        assert next(lines) == "last"


def test_client_disconnect_stops_the_producer(running: modal.App) -> None:
    base = _url(site)
    with httpx.Client(base_url=base, timeout=60) as client:
        with client.stream("GET", "/endless") as r:
            lines = r.iter_lines()
            assert next(lines) == "tick"
            assert client.get("/endless-state").json() == {"state": "running"}
            assert next(lines) == "tick"
        # The client went away: the cancellation reaches the generator through the gateway,
        # Serve's proxy and the replica (polled up to a bound; no timing is asserted).
        deadline = time.monotonic() + 30
        while client.get("/endless-state").json()["state"] != "stopped":
            assert time.monotonic() < deadline, "the producer kept running after the disconnect"
            time.sleep(0.2)


def test_websocket_echo(running: modal.App) -> None:
    from websockets.sync.client import connect

    url = _url(site).replace("http://", "ws://") + "/ws"
    with connect(url, open_timeout=60) as ws:
        for text in ("a", "bc"):
            ws.send(text)
            assert ws.recv(timeout=60) == f"echo:{text}"


def test_wsgi_app_flask(running: modal.App) -> None:
    r = httpx.get(_url(flask_site) + "/hello", params={"name": "ray"})
    assert r.status_code == 200
    assert r.text == "hello ray"


def test_web_server_process(running: modal.App) -> None:
    r = httpx.get(_url(files) + "/hello.txt", timeout=60)
    assert r.status_code == 200
    assert r.text == "served by http.server"


def test_class_web_methods_run_enter_and_use_default_parameters(running: modal.App) -> None:
    model = Model()
    url = _url(model.predict)
    assert httpx.get(url, params={"name": "ray"}).json() == {
        "out": "hello ray",
        "weights": "loaded",
    }
    assert httpx.get(url).status_code == 422
    admin = _url(model.admin)
    assert admin != url
    assert httpx.get(admin + "/weights").json() == "loaded"
    # The class's web methods share one pool: one container (max_containers=1) serves both.
    container = httpx.get(_url(model.container_id)).json()
    assert httpx.get(admin + "/container").json() == container


def test_deployed_endpoints_of_a_class_are_its_web_methods_on_kept_ports(
    running: modal.App,
) -> None:
    from modal_ray.backends import get_backend
    from modal_ray.web import deployed_endpoints

    record = Model._record()
    ports = {"test-web-model-predict": 23456}
    endpoints = deployed_endpoints("test-web", [("Model", "class", record)], ports)
    assert {(e.label, e.method, e.port) for e in endpoints} == {
        ("test-web-model-predict", "predict", 23456),
        ("model-admin", "admin", None),
        ("test-web-model-container-id", "container_id", None),
    }
    assert len({e.service.name for e in endpoints}) == 1  # one pool for the class
    # The pools are named as the running app names them (a deploy's record only differs in
    # its variant), so a deployment serves exactly what `modal run` serves.
    predict = next(e for e in endpoints if e.method == "predict")
    assert get_backend().web_url(predict.key) == _url(Model().predict)
    with pytest.raises(InvalidError, match="same label 'model-admin'"):
        deployed_endpoints("test-web", [("Model", "class", record), ("M2", "class", record)], {})


def test_web_server_websockets(running: modal.App) -> None:
    from websockets.sync.client import connect

    with connect(_url(ws_server).replace("http://", "ws://") + "/", open_timeout=60) as ws:
        ws.send("ping")
        assert ws.recv(timeout=60) == "server:ping"


# -- bad input -----------------------------------------------------------------------------------


def test_duplicate_labels_are_refused_before_anything_is_deployed() -> None:
    dup = modal.App("test-web-dup")

    @dup.function(cpu=0.1, serialized=True)
    @modal.fastapi_endpoint(label="same")
    def one() -> int:
        return 1

    @dup.function(cpu=0.1, serialized=True)
    @modal.fastapi_endpoint(label="same")
    def two() -> int:
        return 2

    with pytest.raises(InvalidError, match="same label 'same'"), dup.run():
        pass


def test_decorator_input_is_checked() -> None:
    with pytest.raises(InvalidError, match="label"):
        modal.fastapi_endpoint(label="Not Valid")
    with pytest.raises(InvalidError, match="HTTP method"):
        modal.fastapi_endpoint(method="FETCH")
    with pytest.raises(InvalidError, match="take no arguments"):
        modal.asgi_app()(lambda x: x)
    with pytest.raises(InvalidError, match="port"):
        modal.web_server(0)
    from modal.exception import DeprecationError
    from modal_ray.warn import reset_for_tests

    reset_for_tests()
    with pytest.warns(DeprecationError, match="web_endpoint"):
        modal.web_endpoint()
    # Modal 1.6.4's signature is `(*args, **kwargs)`: the keywords still mean what they did
    # (the deprecation warned once above).
    assert callable(modal.web_endpoint(method="POST", label="old-style"))
    with pytest.raises(TypeError):
        modal.web_endpoint(methd="POST")


def test_class_endpoint_needs_parameter_defaults() -> None:
    strict = modal.App("test-web-strict")

    @strict.cls(cpu=0.1, serialized=True)
    class NoDefault:
        size: int = modal.parameter()

        @modal.fastapi_endpoint()
        def get(self) -> int:
            return self.size

    with (
        pytest.raises(InvalidError, match="parameters without defaults \\(size\\)"),
        strict.run(),
    ):
        pass


def test_web_server_that_never_listens_answers_503() -> None:
    silent = modal.App("test-web-silent")

    @silent.function(cpu=0.1, serialized=True)
    @modal.web_server(18732, startup_timeout=1)
    def never() -> None:
        pass

    with silent.run():
        r = httpx.get(_url(never), timeout=60)
        assert r.status_code == 503
        assert "did not start listening on port 18732" in r.text
        assert "startup_timeout=1s" in r.text
    assert json.dumps(r.text)
