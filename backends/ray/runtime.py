"""Connecting to Ray: the user's own `ray.init`, a cluster address, or an embedded local Ray.

Order of preference:
1. Ray is already initialised in this process (a notebook user called `ray.init(...)`, or we
   are inside a worker): use it as it is.
2. `MODAL_RAY_ADDRESS` or `RAY_ADDRESS` names a cluster: check first, within
   `MODAL_RAY_CONNECT_TIMEOUT`, that the name resolves and that something speaking gRPC answers
   there, and only then `ray.init` (Ray itself retries an unreachable address for minutes,
   printing its C++ retry lines all along).
3. Otherwise start an embedded Ray private to this process (see `_start_embedded`): never
   attached to another Ray on the machine, every listener and the advertised node address on
   127.0.0.1, metrics collection off, dashboard off, Ray's own logging at ERROR, and token
   authentication on with a token of this run's own (a 0600 file in a 0700 temporary folder,
   removed when the process exits; never `~/.ray/auth_token`). Ray shuts it down when the
   process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ray

from modal_ray import config
from modal_ray.exception import ConnectionError as ModalConnectionError

_lock = threading.Lock()
_mode: str | None = None  # "user" | "address" | "embedded"

_TOKEN_DIR_PREFIX = "modal-ray-token-"


def _quiet_ray_loggers() -> None:
    for name in ("ray", "ray.serve", "ray._private", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


# -- a cluster at an address ----------------------------------------------------------------


def _unreachable(address: str, why: str) -> ModalConnectionError:
    return ModalConnectionError(
        f"Could not connect to the Ray cluster at {address!r}: {why}. Check that the cluster is "
        "running and that MODAL_RAY_ADDRESS / RAY_ADDRESS names its GCS address (`host:port`, "
        "port 6379 unless the head was started with another `--port`) or its Ray Client "
        "address (`ray://host:10001`), and that this machine can reach it; or unset both to "
        "use an embedded local Ray. MODAL_RAY_CONNECT_TIMEOUT sets how long to wait "
        f"(now {config.connect_timeout():g} s)."
    )


def _dial_target(address: str) -> tuple[str, int]:
    """The host and port that `ray.init(address=...)` will dial for this address."""
    from ray._private import services

    if address.startswith("ray://"):
        target: str | None = address[len("ray://") :].split("/", 1)[0]
    else:
        try:
            # Ray's own reading: `auto` is the latest `ray start` of this machine, and a
            # loopback host becomes the machine's address.
            target = services.canonicalize_bootstrap_address(address)
        except ValueError as exc:
            raise _unreachable(address, f"not an address ({exc})") from exc
    if target is None:
        raise _unreachable(address, "no running Ray cluster was found on this machine")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise _unreachable(address, "expected `host:port`")
    return host.strip("[]"), int(port)


def _resolve(address: str, host: str, port: int, deadline: float) -> list[tuple[object, ...]]:
    """getaddrinfo, bounded by the deadline (a stuck resolver must not hang the run)."""
    result: list[list[tuple[object, ...]]] = []
    failure: list[OSError] = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))  # type: ignore[arg-type]
        except OSError as exc:
            failure.append(exc)

    thread = threading.Thread(target=lookup, name="modal-ray-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if failure:
        raise _unreachable(address, f"the host name {host!r} does not resolve ({failure[0]})")
    if not result:
        raise _unreachable(address, f"resolving the host name {host!r} timed out")
    return result[0]


def _tcp_connect(
    address: str, infos: list[tuple[object, ...]], deadline: float, dialled_as: str = ""
) -> None:
    """Open (and close) one TCP connection; a refusal is final, silence waits to the deadline.

    `dialled_as` explains a target that is not the address as given (Ray dials a loopback
    address at the machine's own address)."""
    last: OSError | None = None
    while True:
        for family, kind, proto, _, sockaddr in infos:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock = socket.socket(family, kind, proto)  # type: ignore[arg-type]
            sock.settimeout(min(remaining, 5.0))
            try:
                sock.connect(sockaddr)  # type: ignore[arg-type]
                return
            except ConnectionRefusedError as exc:
                where = f"{sockaddr[0]}:{sockaddr[1]}"  # type: ignore[index]
                raise _unreachable(
                    address, f"nothing listens at {where} (refused{dialled_as})"
                ) from exc
            except OSError as exc:
                last = exc
            finally:
                sock.close()
        if time.monotonic() >= deadline:
            why = f" ({last})" if last and str(last) else ""
            raise _unreachable(address, f"no answer within {config.connect_timeout():g} s{why}")
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def _grpc_handshake(address: str, host: str, port: int, deadline: float) -> None:
    """The GCS and the Ray Client server both speak gRPC: an HTTP/2 handshake must succeed.

    A port that accepts TCP but fails the handshake (the dashboard's 8265, a web server) is
    reported at once instead of being retried.
    """
    import grpc

    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    channel = grpc.insecure_channel(target)
    states: list[grpc.ChannelConnectivity] = []
    settled = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        states.append(state)
        if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            settled.set()

    channel.subscribe(watch, try_to_connect=True)
    try:
        settled.wait(max(0.0, deadline - time.monotonic()))
    finally:
        channel.unsubscribe(watch)
        channel.close()
    if grpc.ChannelConnectivity.READY in states:
        return
    if grpc.ChannelConnectivity.TRANSIENT_FAILURE in states:
        raise _unreachable(
            address,
            f"{target} accepts connections but does not answer as Ray (gRPC); is it another "
            "service's port, such as the dashboard's 8265?",
        )
    raise _unreachable(address, f"{target} did not answer within {config.connect_timeout():g} s")


def _check_reachable(address: str) -> None:
    """Fail within MODAL_RAY_CONNECT_TIMEOUT, with a ConnectionError, if Ray cannot be there."""
    deadline = time.monotonic() + config.connect_timeout()
    host, port = _dial_target(address)
    given = address.removeprefix("ray://").split("/", 1)[0].rpartition(":")[0].strip("[]")
    dialled_as = ""
    if given and given != host:
        dialled_as = f"; Ray dials {given!r} as this machine's address {host!r}"
    infos = _resolve(address, host, port, deadline)
    _tcp_connect(address, infos, deadline, dialled_as)
    _grpc_handshake(address, host, port, deadline)


# -- the embedded Ray -----------------------------------------------------------------------


@contextlib.contextmanager
def _loopback_node_address() -> Iterator[None]:
    """Keep `_node_ip_address="127.0.0.1"` as given while the embedded Ray starts.

    On Linux `ray.init` rewrites a loopback node address to the machine's outward address
    (`services.resolve_ip_for_localhost`), and every Ray process then listens on all
    interfaces. Where Ray runs single-machine only (its macOS/Windows default,
    `ENABLE_RAY_CLUSTER` off) it keeps loopback, and then the GCS, raylet, core workers,
    agents and metrics servers all bind 127.0.0.1 (each checks `node_ip == "127.0.0.1"`).
    The flag is read only by that lookup, and only until the node exists; it is restored
    after the start.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def keep_replica_on_loopback() -> None:
    """In a Serve replica on a loopback node, bind Serve's replica gRPC server to loopback.

    Every Ray server follows the node address, except the inter-deployment gRPC server that
    each Serve 2.60 replica starts on `[::]:0` (token-checked, but on all interfaces). Its
    callers dial the replica's node address, so on a 127.0.0.1 node loopback is enough.
    Called from the replica's constructor, which Serve runs before it starts that server.
    """
    from ray.serve._private import replica

    node_ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    if node_ip not in ("127.0.0.1", "::1"):
        return
    loopback = "127.0.0.1" if node_ip == "127.0.0.1" else "[::1]"
    original: Callable[[object, str], int] = replica.add_port_to_grpc_server  # type: ignore[attr-defined]
    if getattr(original, "modal_ray_loopback", False):
        return

    def add_port_on_loopback(server: object, address: str) -> int:
        if address.startswith("[::]:"):
            address = f"{loopback}:{address.rsplit(':', 1)[1]}"
        return original(server, address)

    add_port_on_loopback.modal_ray_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port_on_loopback  # type: ignore[attr-defined]


def _sweep_stale_token_dirs() -> None:
    """Remove token folders of embedded runs that died without their exit hooks (SIGKILL).

    A live run holds an exclusive lock on `<folder>/lock` for its whole life (the lock goes
    with its process, whatever the PID namespace), so a folder whose lock can be taken is dead.
    """
    uid = os.getuid()
    for folder in Path(tempfile.gettempdir()).glob(f"{_TOKEN_DIR_PREFIX}*"):
        try:
            info = folder.lstat()
            if info.st_uid != uid or not stat.S_ISDIR(info.st_mode):
                continue
            lock = os.open(folder / "lock", os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue  # being created right now, or not ours to judge
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its run is alive
        finally:
            os.close(lock)
        shutil.rmtree(folder, ignore_errors=True)


_token_lock: int | None = None  # held open (and locked) while this process's run lives


def _private_token() -> Path | None:
    """Token authentication on, with a token of this run's own; returns its folder.

    Ray's default token is `~/.ray/auth_token`, one per user (0644, created if missing and
    shared by every Ray on the machine). The embedded Ray instead reads `RAY_AUTH_TOKEN_PATH`,
    a 0600 file in a fresh 0700 folder that the GCS, raylet and workers inherit. A
    `RAY_AUTH_TOKEN` in the environment would win over that file, so it is dropped from this
    process. `RAY_AUTH_MODE=disabled`, set by the user, is respected.
    """
    from ray._private.authentication.authentication_token_setup import _enable_token_auth
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

    if os.environ.get("RAY_AUTH_MODE", "token").strip().lower() != "token":
        return None
    _sweep_stale_token_dirs()
    folder = Path(tempfile.mkdtemp(prefix=f"{_TOKEN_DIR_PREFIX}{os.getpid()}-"))
    global _token_lock
    _token_lock = os.open(folder / "lock", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(_token_lock, fcntl.LOCK_EX)
    token_file = folder / "auth_token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    # Ray caches its config and the token at import: refresh both, or the driver and the GCS
    # disagree (the same steps Ray's own default path takes).
    _enable_token_auth()
    AuthenticationTokenLoader.instance().reset_cache()
    return folder


_session_dir: Path | None = None  # the embedded Ray's session folder (logs, sockets)
_made_temp_root = False  # whether Ray's temp root (`$TMPDIR/ray`) was made by this run


def _remove_session_dir() -> None:
    """The embedded Ray's session folder (`/tmp/ray/session_*`: logs that name every task, the
    node's sockets) is the run's own: remove it, and Ray's `session_latest` link if it points
    there, so that a run leaves nothing behind on the user's machine."""
    session = _session_dir
    if session is None:
        return
    shutil.rmtree(session, ignore_errors=True)
    latest = session.parent / "session_latest"
    with contextlib.suppress(OSError):
        if latest.is_symlink() and Path(os.readlink(latest)) == session:
            latest.unlink()
    if _made_temp_root:
        with contextlib.suppress(OSError):
            session.parent.rmdir()  # Ray's temp root, made by this run: only if now empty


def _stop_embedded(folder: Path | None) -> None:
    """At exit: stop the embedded Ray first (its processes read the token as they start),
    then remove the token folder and the session folder."""
    if _mode == "embedded" and ray.is_initialized():
        ray.shutdown(_exiting_interpreter=True)
        _remove_session_dir()
        # The run's sandbox supervisor died with its Ray: its folder goes too.
        from modal_ray.sandbox_runtime.owners import sweep_dead_owners

        sweep_dead_owners()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _start_embedded(namespace: str) -> None:
    token_folder = _private_token()
    # Registered after Ray's own exit hook, so it runs before it.
    atexit.register(_stop_embedded, token_folder)
    kwargs: dict[str, object] = {}
    if (cpus := config.embedded_num_cpus()) is not None:
        kwargs["num_cpus"] = cpus
    if (gpus := config.embedded_num_gpus()) is not None:
        kwargs["num_gpus"] = gpus
    temp_root = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray"
    existed = temp_root.exists()
    with _loopback_node_address():
        ray.init(
            address="local",
            namespace=namespace,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=True,
            _node_ip_address="127.0.0.1",
            # The metrics agent would serve every app, class and task name, unauthenticated.
            _system_config={"enable_metrics_collection": False},
            **kwargs,  # type: ignore[arg-type]
        )
    global _session_dir, _made_temp_root
    node = getattr(ray._private.worker, "_global_node", None)
    if node is not None:
        _session_dir = Path(node.get_session_dir_path())
        _made_temp_root = not existed and _session_dir.parent == temp_root


def connect(environment: str) -> str:
    """Make sure this process is connected; return how ("user", "address" or "embedded")."""
    global _mode
    if ray.is_initialized():
        if _mode is None:
            _mode = "user"
            _mark_if_started_here()
        return _mode
    with _lock:
        if ray.is_initialized():
            return _mode or "user"
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        namespace = config.namespace_for(environment)
        address = config.ray_address()
        try:
            if address:
                from . import cluster

                # A head of `modal-ray cluster start` (recorded in this state store): its token,
                # and 127.0.0.1 kept as this node's address while connecting.
                extra = cluster.connect_args(address)
                with _loopback_node_address() if extra else contextlib.nullcontext():
                    _check_reachable(address)
                    ray.init(
                        address=address,
                        namespace=namespace,
                        logging_level=logging.ERROR,
                        log_to_driver=True,
                        **(extra or {}),
                    )
                _mode = "address"
            else:
                _mode = "embedded"
                try:
                    _start_embedded(namespace)
                except BaseException:
                    _mode = None
                    raise
                _mark_if_started_here()
        except ray.exceptions.RayError as exc:
            raise ModalConnectionError(
                f"Could not connect to Ray ({address or 'embedded'}): {exc}"
            ) from exc
        except ConnectionError as exc:
            raise _unreachable(address or "embedded", str(exc)) from exc
        _quiet_ray_loggers()
        from . import logs

        logs.follow_output()  # workers' prints shown only while output is enabled, as on Modal
        return _mode


def mode() -> str | None:
    return _mode


def _mark_if_started_here() -> None:
    """A Ray this process started for itself (the embedded one, or a user's `ray.init()` with
    no address) ends with it: say so in the cluster, so its workers' spawned calls stay
    in-process too (`call_keeper.durable`)."""
    node = getattr(ray._private.worker, "_global_node", None)
    if node is not None and getattr(node, "head", False):
        from .call_keeper import mark_ephemeral

        mark_ephemeral()
