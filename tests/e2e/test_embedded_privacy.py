"""The embedded Ray of `modal run` is private to the run: loopback only, a token of its own.

One `modal run` of a small app (a class, so Serve's proxy starts too, and a function that holds
the run open) while the test lists the sockets of every process of that run's tree, reads the
address the node advertises, checks the token the run uses and that a process without it is
refused, then checks what the run leaves behind.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import MODAL

APP = textwrap.dedent(
    """
    import json, pathlib, time
    import modal

    app = modal.App("privacy-probe-app")
    SIGNALS = pathlib.Path({signals!r})

    @app.cls()
    class PrivacyPool:
        @modal.method()
        def ping(self) -> str:
            return "pong"

    @app.function()
    def hold_the_run_open() -> str:
        import ray

        info = {{
            "gcs": ray.get_runtime_context().gcs_address,
            "node_ip": ray.util.get_node_ip_address(),
            "nodes": [node["NodeManagerAddress"] for node in ray.nodes()],
        }}
        (SIGNALS / "ready.json").write_text(json.dumps(info))
        deadline = time.monotonic() + 240
        while not (SIGNALS / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return "released"

    @app.local_entrypoint()
    def main():
        print(PrivacyPool().ping.remote())
        print(hold_the_run_open.remote())
    """
)

APP_NAMES = ("privacy-probe-app", "PrivacyPool", "hold_the_run_open")

# What a process without this run's token would try: the user-wide token file.
USER_TOKEN = "0123456789abcdef0123456789abcdef"

REFUSED_PROBE = textwrap.dedent(
    """
    import sys
    from ray._raylet import GcsClient

    try:
        client = GcsClient(address=sys.argv[1])
        client.internal_kv_get(b"session_name", b"session")
    except Exception as exc:
        print("REFUSED", type(exc).__name__, exc)
    else:
        print("ACCEPTED")
    """
)


def _bound(proc: psutil.Process) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket and unconnected UDP socket of a process."""
    try:
        conns = proc.net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
    return [
        (conn.laddr.ip, conn.laddr.port)
        for conn in conns
        if conn.status == psutil.CONN_LISTEN or (conn.type == socket.SOCK_DGRAM and not conn.raddr)
    ]


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _label(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:100] or proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return f"pid {proc.pid}"


def _metrics(listeners: list[tuple[str, str, int]]) -> dict[str, list[str]]:
    """Endpoints among the listeners that serve Prometheus metrics: url -> names of the app's
    own objects that they give away."""
    import httpx

    served = {}
    for _, ip, port in listeners:
        address = ipaddress.ip_address(ip)
        if address.is_unspecified:  # a wildcard listener answers on loopback too
            address = ipaddress.ip_address("127.0.0.1" if address.version == 4 else "::1")
        address = getattr(address, "ipv4_mapped", None) or address
        host = f"[{address}]" if address.version == 6 else str(address)
        url = f"http://{host}:{port}/metrics"
        try:
            response = httpx.get(url, timeout=2)
        except httpx.HTTPError:
            continue
        if response.status_code == 200 and "# TYPE" in response.text:
            served[url] = [name for name in APP_NAMES if name in response.text]
    return served


def _probe(gcs: str, **auth: str) -> str:
    """What another process of this machine, with these token settings, gets from the GCS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(auth)
    probe = subprocess.run(
        [sys.executable, "-c", REFUSED_PROBE, gcs],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return probe.stdout + probe.stderr[-2000:]


@dataclass
class Observed:
    """What the test saw of one held-open embedded run, and after it ended."""

    listeners: list[tuple[str, str, int]] = field(default_factory=list)
    metrics: dict[str, list[str]] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)
    node_ip_flags: list[tuple[str, str]] = field(default_factory=list)
    ray_env: dict[str, str] = field(default_factory=dict)
    token_envs: dict[str, str | None] = field(default_factory=dict)
    token_mode: int = 0
    token_dir_mode: int = 0
    token: str = ""
    probe_user_token: str = ""
    probe_no_token: str = ""
    probe_run_token: str = ""
    exit_code: int | None = None
    output: str = ""
    left_alive: list[str] = field(default_factory=list)
    token_dir_left: bool = True
    session_dir: str = ""
    home: Path = Path()


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    """`modal run` of the app, held open while its process tree is inspected."""
    tmp = tmp_path_factory.mktemp("privacy")
    signals = tmp / "signals"
    signals.mkdir()
    (tmp / "app.py").write_text(APP.format(signals=str(signals)))
    # A home that already holds a user-wide Ray token, as after `ray start`.
    home = tmp / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(USER_TOKEN)
    (home / ".ray" / "auth_token").chmod(0o644)
    state = tmp / "state"
    state.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RAY_AUTH")
        and k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS", "MODAL_TRACEBACK", "MODAL_ENVIRONMENT")
    }
    env.update(
        HOME=str(home),
        MODAL_RAY_STATE=str(state),
        MODAL_RAY_NUM_CPUS="4",
        RAY_USAGE_STATS_ENABLED="0",
        NO_COLOR="1",
        PYTHONUNBUFFERED="1",
    )
    seen = Observed(home=home)
    with (tmp / "out.txt").open("w") as out:
        proc = subprocess.Popen(
            [str(MODAL), "run", "app.py"],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        root = psutil.Process(proc.pid)
        tree: list[psutil.Process] = [root]
        try:
            deadline = time.monotonic() + 240
            while not (signals / "ready.json").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            else:
                time.sleep(1)
                tree.extend(root.children(recursive=True))
                seen.info = json.loads((signals / "ready.json").read_text())
                seen.listeners = [(_label(p), ip, port) for p in tree for ip, port in _bound(p)]
                seen.metrics = _metrics(seen.listeners)
                for p in tree:
                    try:
                        args = p.cmdline()
                        # The driver's own environ in /proc is the one it started with;
                        # a long process title (setproctitle) overwrites an agent's.
                        if p is not root and (proc_env := p.environ()):
                            seen.token_envs[_label(p)] = proc_env.get("RAY_AUTH_TOKEN_PATH")
                        if "gcs_server" in p.name():
                            seen.ray_env = p.environ()
                            seen.session_dir = next(
                                (
                                    str(Path(a.split("=", 1)[1]).parent)
                                    for a in args
                                    if a.startswith("--log_dir=")
                                ),
                                "",
                            )
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    seen.node_ip_flags += [
                        (_label(p), a)
                        for a in args
                        if a.split("=")[0].lstrip("-").replace("-", "_")
                        in ("node_ip_address", "ray_node_ip_address")
                    ]
                token_file = seen.ray_env.get("RAY_AUTH_TOKEN_PATH")
                if token_file:
                    seen.token_mode = stat.S_IMODE(os.stat(token_file).st_mode)
                    seen.token_dir_mode = stat.S_IMODE(os.stat(Path(token_file).parent).st_mode)
                    seen.token = Path(token_file).read_text().strip()
                gcs = str(seen.info["gcs"])
                seen.probe_user_token = _probe(gcs, RAY_AUTH_MODE="token", HOME=str(home))
                seen.probe_no_token = _probe(gcs, RAY_AUTH_MODE="disabled", HOME=str(tmp))
                seen.probe_run_token = _probe(
                    gcs, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file)
                )
        finally:
            (signals / "release").touch()
            try:
                seen.exit_code = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)
            # Whatever of the run is still alive now was left behind: note it, stop it by pid.
            _, alive = psutil.wait_procs(tree, timeout=30)
            seen.left_alive = [_label(p) for p in alive]
            for p in alive:
                p.kill()
            psutil.wait_procs(alive, timeout=10)
    seen.output = (tmp / "out.txt").read_text()
    token_file = seen.ray_env.get("RAY_AUTH_TOKEN_PATH")
    seen.token_dir_left = bool(token_file) and Path(token_file).parent.exists()
    return seen


def _ready(seen: Observed) -> None:
    assert seen.info, f"the run never got ready (exit {seen.exit_code}):\n{seen.output[-4000:]}"


def test_every_socket_of_the_run_is_on_loopback(observed: Observed) -> None:
    _ready(observed)
    assert observed.listeners, "the run's processes listen nowhere; the probe is broken"
    exposed = [entry for entry in observed.listeners if not _loopback(entry[1])]
    assert not exposed, "listening beyond loopback:\n" + "\n".join(map(str, exposed))
    # Serve's HTTP proxy (the class runs on Serve) is among them.
    assert any("ProxyActor" in label for label, _, _ in observed.listeners), observed.listeners


def test_the_node_advertises_loopback(observed: Observed) -> None:
    _ready(observed)
    assert observed.info["node_ip"] == "127.0.0.1"
    assert str(observed.info["gcs"]).startswith("127.0.0.1:")
    assert observed.info["nodes"] == ["127.0.0.1"]
    assert observed.node_ip_flags, "no Ray process named its node address; the probe is broken"
    assert all(flag.endswith("=127.0.0.1") for _, flag in observed.node_ip_flags), (
        observed.node_ip_flags
    )


def test_no_metrics_endpoint_names_the_app(observed: Observed) -> None:
    """Ray's per-node metrics exporter (every task, actor and Serve app by name) is off; what
    metrics remain (the dashboard head's and the autoscaler's own) are on loopback only."""
    _ready(observed)
    assert not {url: names for url, names in observed.metrics.items() if names}
    assert all("//127.0.0.1:" in url or "//[::1]:" in url for url in observed.metrics)


def test_the_run_has_its_own_token_and_refuses_others(observed: Observed) -> None:
    _ready(observed)
    env = observed.ray_env  # the GCS's environment, as the run set it up
    assert env, "no GCS process found; the probe is broken"
    assert env.get("RAY_AUTH_MODE") == "token"
    assert "RAY_AUTH_TOKEN" not in env  # a file, not a variable every child can print
    token_file = Path(env.get("RAY_AUTH_TOKEN_PATH", "/nonexistent"))
    assert not token_file.is_relative_to(observed.home)
    assert observed.token_mode == 0o600
    assert observed.token_dir_mode == 0o700
    assert observed.token
    assert observed.token != USER_TOKEN
    # The GCS, raylet and workers all use that token.
    others = {label: path for label, path in observed.token_envs.items() if path != str(token_file)}
    assert not others
    # A process with the user-wide token, or with none, is refused; with the run's, it is not.
    assert "REFUSED AuthenticationError" in observed.probe_user_token, observed.probe_user_token
    assert "REFUSED AuthenticationError" in observed.probe_no_token, observed.probe_no_token
    assert "ACCEPTED" in observed.probe_run_token, observed.probe_run_token


def test_the_run_leaves_nothing_behind(observed: Observed) -> None:
    _ready(observed)
    assert observed.exit_code == 0, observed.output[-4000:]
    assert "released" in observed.output
    assert not observed.left_alive
    assert observed.ray_env.get("RAY_AUTH_TOKEN_PATH"), "the run had no token file of its own"
    assert not observed.token_dir_left
    # Ray's session folder of the run (logs naming every task, the node's sockets) is gone too.
    assert observed.session_dir, "the run's session folder was not found"
    assert not Path(observed.session_dir).exists()
    # The user's own token is neither used, replaced nor joined by anything of ours.
    user_token = observed.home / ".ray" / "auth_token"
    assert user_token.read_text() == USER_TOKEN
    assert stat.S_IMODE(user_token.stat().st_mode) == 0o644
    assert sorted(p.name for p in (observed.home / ".ray").iterdir()) == ["auth_token"]
