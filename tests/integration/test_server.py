"""`@app.server` / `modal.Server` over real HTTP on the session's Ray, and the working directory
of a function's container (the folder that holds the app's module, as Modal's `/root` does).

The app lives in a module written to a temporary folder (outside the repository and Ray's own
working directory), so that "the container works where the app's file is" is observable."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

import modal
from modal.exception import InvalidError

APP_SOURCE = """
import os
import subprocess
import sys
import threading

import modal

app = modal.App("test-server")
GATE = {gate!r}


@app.function(cpu=0.1)
def where() -> str:
    return os.getcwd()


@app.server(port=18741, unauthenticated=True, cpu=0.1, startup_timeout=60)
class Files:
    @modal.enter()
    def start(self) -> None:
        # Serves the container's working directory, as Modal's example server does.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", "18741", "--bind", "127.0.0.1"]
        )

    @modal.exit()
    def stop(self) -> None:
        self.proc.terminate()


@app.server(port=18742, unauthenticated=True, cpu=0.1, startup_timeout=120)
class Gated:
    @modal.enter()
    def start(self) -> None:
        def serve_when_open() -> None:
            import http.server
            import time

            while not os.path.exists(GATE):
                time.sleep(0.05)

            class Hello(http.server.BaseHTTPRequestHandler):
                def do_GET(self) -> None:
                    body = b"up at last"
                    self.send_response(200)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *args: object) -> None:
                    pass

            http.server.ThreadingHTTPServer(("127.0.0.1", 18742), Hello).serve_forever()

        threading.Thread(target=serve_when_open, daemon=True).start()


@app.server(port=18743, cpu=0.1, name="private-files", min_containers=0)
class Private:
    @modal.enter()
    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", "18743", "--bind", "127.0.0.1"]
        )

    @modal.exit()
    def stop(self) -> None:
        self.proc.terminate()
"""


@pytest.fixture(scope="module")
def server_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("server-app")
    (folder / "server_test_app.py").write_text(APP_SOURCE.format(gate=str(folder / "gate")))
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module("server_test_app")
        with module.app.run():
            yield module
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("server_test_app", None)


def _get_when_up(url: str, deadline_s: float = 90.0, **kwargs: Any) -> httpx.Response:
    """GET until the server is no longer starting (503 with Retry-After), as Modal's clients
    retry."""
    deadline = time.monotonic() + deadline_s
    while True:
        r = httpx.get(url, timeout=60, **kwargs)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        assert r.headers.get("retry-after") == "1"
        time.sleep(0.2)


def _folder(module: ModuleType) -> str:
    return str(Path(module.__file__).parent)


def test_function_runs_in_the_folder_of_its_app_file(server_app: ModuleType) -> None:
    assert server_app.where.remote() == _folder(server_app)


def test_server_serves_its_container_working_directory(server_app: ModuleType) -> None:
    url = server_app.Files.get_url()
    assert url is not None
    assert url.startswith("http://127.0.0.1:")
    r = _get_when_up(url + "/server_test_app.py")
    assert r.status_code == 200
    assert r.text == Path(server_app.__file__).read_text()
    assert isinstance(server_app.Files, modal.Server)


def test_server_answers_503_while_starting_then_serves(server_app: ModuleType) -> None:
    url = server_app.Gated.get_url()
    r = httpx.get(url + "/", timeout=60)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    (Path(_folder(server_app)) / "gate").touch()
    r = _get_when_up(url + "/")
    assert r.status_code == 200
    assert r.text == "up at last"


def test_servers_need_proxy_auth_unless_unauthenticated(server_app: ModuleType) -> None:
    url = server_app.Private.get_url()
    assert url not in (server_app.Files.get_url(), server_app.Gated.get_url())
    assert httpx.get(url + "/", timeout=60).status_code == 401
    token_id, secret = modal_proxy_token()
    try:
        r = _get_when_up(url + "/", headers={"Modal-Key": token_id, "Modal-Secret": secret})
        assert r.status_code == 200
    finally:
        from modal_ray.web import proxy_tokens

        proxy_tokens("delete", token_id)


def modal_proxy_token() -> tuple[str, str]:
    from modal_ray.web import proxy_tokens

    token_id, secret = proxy_tokens("create")
    return str(token_id), str(secret)


def test_update_autoscaler_applies_and_is_shown(server_app: ModuleType) -> None:
    server = server_app.Private
    assert server.autoscaler.min_containers == 0
    settings = server.update_autoscaler(min_containers=1, max_containers=2)
    assert (settings.min_containers, settings.max_containers) == (1, 2)
    assert server.autoscaler == settings
    assert server.hydrate() is server


# -- bad input -------------------------------------------------------------------------------


def test_server_decorator_input_is_checked() -> None:
    bad = modal.App("test-server-bad")
    with pytest.raises(InvalidError, match="decorates a class"):
        bad.server()(lambda: None)
    with pytest.raises(InvalidError, match="port number"):

        @bad.server(port=0)
        class NoPort:
            pass

    with pytest.raises(InvalidError, match="do not apply to a Server's methods"):

        @bad.server()
        class WithEndpoint:
            @modal.fastapi_endpoint()
            def get(self) -> str:
                return "x"

    @bad.server()
    @modal.sessioned()
    class Sticky:
        pass

    assert Sticky._web.sessioned

    with pytest.raises(InvalidError, match="max_concurrency"):
        bad.server(max_concurrency=0)(type("Zero", (), {}))
    with pytest.raises(InvalidError, match="sessioned"):

        @bad.cls()
        @modal.sessioned()
        class NotAServer:
            pass

    # `@modal.concurrent` on a Server class: its concurrency per container, as on Modal.
    @bad.server(port=18745)
    @modal.concurrent(max_inputs=7, target_inputs=3)
    class Concurrent:
        pass

    assert Concurrent._cls._options.max_inputs_concurrent == 7
    assert Concurrent.autoscaler.target_concurrency == 3
