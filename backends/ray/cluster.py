"""A long-lived local Ray head to deploy apps to (`modal-ray cluster start|stop|status`).

The embedded Ray dies with the process that started it, so deployed apps need a cluster that
outlives their deploying process. `start()` runs `ray start --head --block` as the leader of a
new session, bound to 127.0.0.1 (every Ray listener on loopback, as the embedded Ray is), token
authentication on with a token of its own, and the head's environment carrying the state store
(`MODAL_RAY_STATE`) so that the registry and the Dict/Queue servers it hosts persist there.

Invariants:
- What `start()` launched is recorded in `<state root>/cluster/head.json` (0600): the address,
  the pid of `ray start` (its session id is that pid), the token file and the Ray session
  folder. `stop()` ends exactly those processes by id: every process of that session, SIGTERM
  and then SIGKILL after a grace period (never `ray stop`, which would end any Ray of the user).
- A client that connects to the recorded address (`connect_args`) uses the recorded token and
  keeps 127.0.0.1 as its node address (Ray would otherwise rewrite a loopback address to the
  machine's outward one, where nothing listens).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from modal_ray import config
from modal_ray.exception import ConnectionError as ModalConnectionError
from modal_ray.exception import InvalidError

HEAD_FILE = "head.json"
TOKEN_FILE = "auth_token"
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 3.0  # Ray's own daemons (gcs_server, raylet) ignore SIGTERM under `--block`


@dataclass(frozen=True, slots=True)
class HeadInfo:
    """A head started by `start()`, as recorded in the state store."""

    address: str
    pid: int  # `ray start --block`, leader of the session every Ray process of the head is in
    token_path: str
    session_dir: str
    state_root: str
    log_path: str
    started_at: float


def cluster_dir(root: Path | None = None) -> Path:
    return (root or config.state_root()) / "cluster"


def read_head(root: Path | None = None) -> HeadInfo | None:
    path = cluster_dir(root) / HEAD_FILE
    try:
        data = json.loads(path.read_text())
        return HeadInfo(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_head(info: HeadInfo) -> None:
    from modal_ray.state import write_json_private

    write_json_private(cluster_dir(Path(info.state_root)) / HEAD_FILE, asdict(info))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def session_pids(leader: int) -> list[int]:
    """Every live process of the session led by `leader` (the head's Ray processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        # fields: state, ppid, pgrp, session, ...
        if int(fields[3]) == leader and fields[0] != "Z":
            pids.append(int(entry.name))
    return sorted(pids)


def is_running(info: HeadInfo) -> bool:
    return _alive(info.pid)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gcs_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _write_token(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path


def start(*, num_cpus: float | None = None, port: int | None = None) -> HeadInfo:
    """Start a head on 127.0.0.1 and record it; `InvalidError` if one is already running."""
    root = config.state_root()
    existing = read_head(root)
    if existing is not None and is_running(existing):
        raise InvalidError(
            f"A modal-ray cluster is already running at {existing.address} (pid {existing.pid})."
            " Stop it first with `modal-ray cluster stop`."
        )
    folder = cluster_dir(root)
    token = _write_token(folder)
    port = port or _free_port()
    log_path = folder / "head.log"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    env.pop("RAY_AUTH_TOKEN", None)
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
        # Keep 127.0.0.1 as the node address: every Ray listener then binds loopback.
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        MODAL_RAY_STATE=str(root),
    )
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=false",
        # Every other port of the head is a free one, so that heads (and embedded Rays) of other
        # state stores on this machine never collide on Ray's fixed defaults.
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        "--disable-usage-stats",
    ]
    if num_cpus is not None:
        command.append(f"--num-cpus={int(num_cpus)}")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(folder),
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _gcs_answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            _terminate(proc.pid)
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise ModalConnectionError(f"The Ray head did not start (see {log_path}):\n{tail}")
        time.sleep(0.2)
    info = HeadInfo(
        address=f"127.0.0.1:{port}",
        pid=proc.pid,
        token_path=str(token),
        session_dir="",
        state_root=str(root),
        log_path=str(log_path),
        started_at=time.time(),
    )
    _write_head(info)  # recorded at once, so that `stop` finds a head that fails to get ready
    info = replace(info, session_dir=_wait_ready(info, deadline))
    _write_head(info)
    _revive_schedules(info, root)
    return info


def _revive_schedules(info: HeadInfo, root: Path) -> None:
    """A restarted head: deployed schedules fire again without waiting for a client."""
    from .scheduler import environments_with_schedules

    environments = environments_with_schedules(root)
    if environments:
        env = {**os.environ, **client_env(info), "MODAL_RAY_ADDRESS": info.address}
        command = [sys.executable, "-m", "modal_ray.backends.ray.scheduler", *environments]
        subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True)


_PROBE = """
import logging, sys, ray
ray.init(address=sys.argv[1], logging_level=logging.ERROR, _node_ip_address="127.0.0.1")
print("SESSION", ray._private.worker._global_node.get_session_dir_path())
ray.shutdown()
"""


def _wait_ready(info: HeadInfo, deadline: float) -> str:
    """Wait until a driver can connect (the raylet is registered), in a throwaway process;
    returns the head's Ray session folder."""
    env = dict(os.environ)
    env.update(client_env(info))
    while True:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, info.address],
            env=env,
            capture_output=True,
            text=True,
            timeout=max(5.0, deadline - time.monotonic()),
            stdin=subprocess.DEVNULL,
        )
        if result.returncode == 0:
            lines = [x for x in result.stdout.splitlines() if x.startswith("SESSION ")]
            return lines[-1].split(" ", 1)[1].strip() if lines else ""
        if time.monotonic() > deadline or not is_running(info):
            raise ModalConnectionError(
                f"The Ray head at {info.address} does not accept drivers: {result.stderr[-2000:]}"
            )
        time.sleep(0.5)


def client_env(info: HeadInfo) -> dict[str, str]:
    """The variables a raw Ray client needs for this head (modal-ray finds them itself)."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": info.token_path,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }


def _terminate(leader: int, grace: float = STOP_GRACE_S) -> list[int]:
    """End every process of the session led by `leader`: SIGTERM, then SIGKILL after `grace`."""
    pids = session_pids(leader)
    if leader not in pids and _alive(leader):
        pids.append(leader)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        left = [p for p in session_pids(leader) if _alive(p)]
        if not left:
            break
        time.sleep(0.2)
    for pid in session_pids(leader):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(leader, os.WNOHANG)
    return pids


def stop() -> HeadInfo | None:
    """Stop the recorded head (by process id) and forget it; None if none is recorded."""
    root = config.state_root()
    info = read_head(root)
    if info is None:
        return None
    _terminate(info.pid)
    deadline = time.monotonic() + STOP_GRACE_S
    while session_pids(info.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if info.session_dir and Path(info.session_dir).name.startswith("session_"):
        session = Path(info.session_dir)
        shutil.rmtree(session, ignore_errors=True)
        latest = session.parent / "session_latest"
        with contextlib.suppress(OSError):
            if latest.is_symlink() and Path(os.readlink(latest)) == session:
                latest.unlink()
    with contextlib.suppress(FileNotFoundError):
        (cluster_dir(root) / HEAD_FILE).unlink()
    with contextlib.suppress(FileNotFoundError):
        Path(info.token_path).unlink()
    return info


def connect_args(address: str) -> dict[str, Any] | None:
    """For a client connecting to `address`: if it is the head recorded in this state store,
    set up its token and return the extra `ray.init` arguments (loopback node address)."""
    info = read_head()
    if info is None or info.address != address.strip() or not is_running(info):
        return None
    own_token = "RAY_AUTH_TOKEN" in os.environ or "RAY_AUTH_TOKEN_PATH" in os.environ
    if not own_token and os.environ.get("RAY_AUTH_MODE", "token").strip().lower() == "token":
        from ray._private.authentication.authentication_token_setup import (
            _enable_token_auth,
        )
        from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

        os.environ["RAY_AUTH_TOKEN_PATH"] = info.token_path
        _enable_token_auth()
        AuthenticationTokenLoader.instance().reset_cache()
    return {"_node_ip_address": "127.0.0.1"}


__all__ = ["HeadInfo", "client_env", "connect_args", "read_head", "start", "status", "stop"]


def status() -> tuple[HeadInfo | None, bool]:
    """The recorded head and whether it is running."""
    info = read_head()
    return info, info is not None and is_running(info)
