"""`modal.forward` and `modal.Tunnel` without Ray: a relay in this process to a local server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

import modal
from modal.exception import InvalidError
from modal_ray.warn import reset_for_tests


@pytest.fixture
def plain_tunnel_warning() -> Iterator[None]:
    """Every forward warns (once per process) that tunnels are plain TCP; each test sees it."""
    reset_for_tests()
    with pytest.warns(UserWarning, match="no TLS"):
        yield


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the container"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.usefixtures("plain_tunnel_warning")
def test_forward_reaches_a_local_server(server_port: int) -> None:
    with modal.forward(server_port) as tunnel:
        assert isinstance(tunnel, modal.Tunnel)
        assert tunnel.port != server_port
        assert httpx.get(tunnel.url, timeout=30).text == "hello from the container"
        with pytest.raises(InvalidError):
            _ = tunnel.tcp_socket
    with pytest.raises(httpx.ConnectError):
        httpx.get(tunnel.url, timeout=5)


@pytest.mark.usefixtures("plain_tunnel_warning")
def test_forward_unencrypted_and_bad_port(server_port: int) -> None:
    with modal.forward(server_port, unencrypted=True) as tunnel:
        assert tunnel.tcp_socket == (tunnel.host, tunnel.port)
    with pytest.raises(InvalidError), modal.forward(0):
        pass


def test_tunnel_value() -> None:
    tunnel = modal.Tunnel("10.0.0.1", 4000, "10.0.0.1", 4000)
    assert tunnel.url == "http://10.0.0.1:4000"
    assert tunnel.tls_socket == ("10.0.0.1", 4000)
    assert tunnel.tcp_socket == ("10.0.0.1", 4000)
