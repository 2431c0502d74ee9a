"""How modal-ray finds its Ray: embedded and private by default, or the cluster at an address."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import modal_cli

PROBE = textwrap.dedent(
    """
    import json, os, sys
    import modal

    app = modal.App("probe")

    @app.function()
    def where():
        import os, sys
        print("probe-remote-log-out")
        print("probe-remote-log-err", file=sys.stderr)
        return os.environ.get("MODAL_IS_REMOTE")

    with app.run():
        remote_flag = where.remote()
        import ray
        ctx = ray.get_runtime_context()
        node = ray._private.worker.global_worker.node
        print(json.dumps({
            "gcs": ctx.gcs_address,
            "namespace": ctx.namespace,
            "remote_flag": remote_flag,
            "auth_mode": os.environ.get("RAY_AUTH_MODE"),
            "token_path": os.environ.get("RAY_AUTH_TOKEN_PATH"),
            "dashboard": node.address_info.get("webui_url"),
            "mode": __import__("modal_ray.backends.ray.runtime", fromlist=["x"]).mode(),
        }))
    """
)


@pytest.fixture(scope="module")
def foreign_cluster() -> Iterator[object]:
    """Some other Ray on this machine, started the way `ray start` would."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 2})
    yield cluster
    cluster.shutdown()


def _run_probe(tmp_path: Path, **env_overrides: str) -> dict[str, object]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS", "RAY_AUTH_MODE")
    }
    env.update(MODAL_RAY_NUM_CPUS="2", **env_overrides)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Token authentication is enabled" not in result.stderr
    # The script never enables output, so (as on Modal) the function's prints are not shown.
    assert "probe-remote-log" not in result.stdout + result.stderr, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@contextlib.contextmanager
def _token_folders() -> Iterator[tuple[Path, Path]]:
    """Token folders as embedded runs leave them: one whose run died (its lock is free), one
    whose run lives (this process holds its lock)."""
    folders = []
    for _ in range(2):
        folder = Path(tempfile.mkdtemp(prefix="modal-ray-token-0-"))
        (folder / "auth_token").write_text("0" * 64)
        (folder / "lock").touch()
        folders.append(folder)
    with (folders[1] / "lock").open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield folders[0], folders[1]
        finally:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)


def test_embedded_ray_is_private_and_keeps_token_auth(
    tmp_path: Path, foreign_cluster: object
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with _token_folders() as (dead, alive):
        info = _run_probe(tmp_path, MODAL_ENVIRONMENT="dev", HOME=str(home))
        # The token folder of a run killed before its exit hooks is swept; a live one is kept.
        assert not dead.exists()
        assert (alive / "auth_token").exists()
    assert info["mode"] == "embedded"
    assert info["gcs"] != foreign_cluster.address  # type: ignore[attr-defined]
    assert info["namespace"] == "modal-dev"
    assert info["remote_flag"] == "1"
    assert info["auth_mode"] == "token"
    assert not info["dashboard"]
    # The run's own token, gone with the run; nothing written into the user's home.
    assert info["token_path"]
    assert not Path(str(info["token_path"])).exists()
    assert not list(home.iterdir())


def test_address_connects_to_that_cluster(tmp_path: Path, foreign_cluster: object) -> None:
    address = foreign_cluster.address  # type: ignore[attr-defined]
    info = _run_probe(tmp_path, MODAL_RAY_ADDRESS=address, RAY_AUTH_MODE="disabled")
    assert info["mode"] == "address"
    assert info["gcs"] == address
    assert info["namespace"] == "modal-main"


# -- an address where no Ray answers ---------------------------------------------------------

APP = textwrap.dedent(
    """
    import modal

    app = modal.App("unreachable")

    @app.function()
    def f(x):
        return x + 1

    @app.local_entrypoint()
    def main():
        print(f.remote(1))
    """
)

# Ray's C++ core logs as "[2026-01-01 12:00:00,000 W 123 123] file.cc:42: ...".
_RAY_CORE_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\]")


def _http_server() -> Iterator[int]:
    """A port that accepts TCP but is not Ray (as the dashboard's 8265 would be)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def not_ray_port() -> Iterator[int]:
    yield from _http_server()


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("127.0.0.1:1", "refused"),
        ("ray://127.0.0.1:1", "refused"),
        ("no-such-host.invalid:6379", "does not resolve"),
        # TEST-NET-1 (RFC 5737): routed nowhere, so nothing ever answers.
        ("192.0.2.254:6379", "within 3 s"),
    ],
)
def test_unreachable_address_fails_with_connection_error(
    tmp_path: Path, cli_env: dict[str, str], address: str, says: str
) -> None:
    (tmp_path / "app.py").write_text(APP)
    env = {**cli_env, "MODAL_RAY_ADDRESS": address, "MODAL_RAY_CONNECT_TIMEOUT": "3"}
    # On a timeout here (Ray retrying for minutes) the test fails.
    result = modal_cli("run", "app.py", env=env, cwd=tmp_path, timeout=90)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines, result.stdout
    assert lines[-1].startswith("Error: Could not connect to the Ray cluster at"), lines
    assert repr(address) in lines[-1]
    assert says in lines[-1]
    if says == "refused" and not address.startswith("ray://"):
        # Ray dials a loopback address at the machine's address: the message says both.
        assert "Ray dials '127.0.0.1' as this machine's address" in lines[-1]
    assert "MODAL_RAY_ADDRESS" in lines[-1]
    assert "MODAL_RAY_CONNECT_TIMEOUT" in lines[-1]
    assert not [line for line in lines if _RAY_CORE_LINE.match(line)], lines


def test_address_of_something_else_fails_with_connection_error(
    tmp_path: Path, cli_env: dict[str, str], not_ray_port: int
) -> None:
    (tmp_path / "app.py").write_text(APP)
    address = f"127.0.0.1:{not_ray_port}"
    # A loopback address is dialled at the machine's address by Ray; ray:// is taken as given.
    env = {**cli_env, "MODAL_RAY_ADDRESS": f"ray://{address}", "MODAL_RAY_CONNECT_TIMEOUT": "20"}
    result = modal_cli("run", "app.py", env=env, cwd=tmp_path, timeout=90)
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "does not answer as Ray" in last, result.stderr
    assert not [line for line in result.stderr.splitlines() if _RAY_CORE_LINE.match(line)]


def test_connect_timeout_setting_is_checked(tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "app.py").write_text(APP)
    env = {**cli_env, "MODAL_RAY_ADDRESS": "127.0.0.1:1", "MODAL_RAY_CONNECT_TIMEOUT": "soon"}
    result = modal_cli("run", "app.py", env=env, cwd=tmp_path, timeout=90)
    assert result.returncode == 1
    assert "MODAL_RAY_CONNECT_TIMEOUT must be a positive number" in result.stderr
