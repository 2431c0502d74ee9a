"""Sticky sessions of `@modal.sessioned()` Servers over real HTTP, with two replicas.

A Server puts one container per node (its containers listen on the same port), so the module
adds a second node to the session's Ray for its own time (removed at the end). Both nodes are
on this machine and share its loopback: the two containers' servers listen on the same port
with SO_REUSEPORT, and the kernel may hand a container's forwarded request to either server.
So the test server answers with the pid of the process that *connected* to it, which is the
container (Serve replica) that forwarded the request: the replica the request was routed to.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest

import modal
from modal.exception import InvalidError

APP_SOURCE = """
import json
import os
import socket
import threading

import modal

app = modal.App("test-server-sessions")


@app.server(port=18761, unauthenticated=True, cpu=0.1, min_containers=2, startup_timeout=60)
@modal.sessioned()
class Sticky:
    @modal.enter()
    def start(self) -> None:
        import http.server

        import psutil

        def replica_of(peer) -> int:
            for c in psutil.net_connections(kind="tcp4"):
                if c.laddr and (c.laddr.ip, c.laddr.port) == peer[:2] and c.pid:
                    return c.pid
            return -1

        class Who(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"replica": replica_of(self.client_address)}).encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def server_bind(self) -> None:
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                super().server_bind()

        threading.Thread(
            target=Server(("127.0.0.1", 18761), Who).serve_forever, daemon=True
        ).start()
"""


@pytest.fixture(scope="module")
def second_node() -> Iterator[None]:
    """A second node in the session's Ray (on this machine), for this module only."""
    import ray
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    params = RayParams(
        gcs_address=ray.get_runtime_context().gcs_address,
        num_cpus=2,
        num_gpus=0,
        object_store_memory=100 * 1024 * 1024,
        min_worker_port=0,
        max_worker_port=0,
        include_log_monitor=False,
        node_manager_port=0,
        node_ip_address=ray.util.get_node_ip_address(),
        env_vars={"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"},
    )
    params.dashboard_agent_listen_port = None
    node = Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
    try:
        deadline = time.monotonic() + 60
        while not ({n["NodeID"] for n in ray.nodes() if n["Alive"]} - before):
            assert time.monotonic() < deadline, "the second node did not join"
            time.sleep(0.2)
        yield
    finally:
        node.kill_all_processes(check_alive=False, allow_graceful=True, wait=True)


@pytest.fixture(scope="module")
def sticky_app(second_node: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("sessions-app")
    (folder / "sessions_test_app.py").write_text(APP_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module("sessions_test_app")
        with module.app.run():
            yield module
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("sessions_test_app", None)


def _replica(url: str, token: str, deadline_s: float = 90.0) -> int:
    """GET as the session `token` (retrying while its container's server starts): the pid of
    the container that served it."""
    deadline = time.monotonic() + deadline_s
    while True:
        r = httpx.get(url, headers={"Modal-Authorization": f"Bearer {token}"}, timeout=60)
        if r.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
            continue
        assert r.status_code == 200, r.text
        replica: Any = r.json()["replica"]
        assert isinstance(replica, int)
        assert replica > 0
        return replica


def test_requests_of_a_session_stay_on_one_replica(sticky_app: ModuleType) -> None:
    server = sticky_app.Sticky
    url = server.get_url()
    assert url is not None

    # Without a live session token, a sessioned Server refuses the request.
    assert httpx.get(url, timeout=60).status_code == 401
    bogus = {"Modal-Authorization": "Bearer not-a-session"}
    assert httpx.get(url, headers=bogus, timeout=60).status_code == 401

    first = server.sessions.start(idle_timeout=300)
    assert isinstance(first.token, str)
    home = _replica(url, first.token)
    assert {_replica(url, first.token) for _ in range(12)} == {home}

    # Further sessions spread over the replicas; each stays on its own.
    seen = {home}
    other = None
    for _ in range(6):
        session = server.sessions.start()
        replica = _replica(url, session.token)
        assert {_replica(url, session.token) for _ in range(6)} == {replica}
        seen.add(replica)
        if replica != home:
            other = session
            break
    assert other is not None, f"every session landed on one replica: {seen}"
    assert len(seen) == 2

    # The first session still has its replica; a terminated session is refused.
    assert {_replica(url, first.token) for _ in range(6)} == {home}
    assert server.sessions.terminate(first.token) is True
    assert server.sessions.terminate(first.token) is False
    gone = {"Modal-Authorization": f"Bearer {first.token}"}
    assert httpx.get(url, headers=gone, timeout=60).status_code == 401


def test_sessions_need_a_sessioned_server(sticky_app: ModuleType) -> None:
    plain_app = modal.App("test-server-sessions-plain")

    @plain_app.server(port=18762)
    class Plain:
        pass

    with pytest.raises(InvalidError, match="sessioned"):
        Plain.sessions.start()
    assert isinstance(sticky_app.Sticky, modal.Server)
    with pytest.raises(InvalidError, match="idle_timeout"):
        sticky_app.Sticky.sessions.start(idle_timeout=0)
