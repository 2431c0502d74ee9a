"""The sandbox supervisor: owns every sandbox of one node, on one asyncio loop.

A sandbox is one `bwrap` process tree (see `isolation`) whose first process is the agent (see
`agent`); the supervisor holds the other end of the agent's control socket and of every stdio
pipe of every process started inside. The backend hosts one supervisor per node (a Ray actor)
and forwards calls to it; nothing here knows about the engine.

Invariants:
- Output is pulled, never pushed: each stdout/stderr pipe is read into a bounded buffer
  (`STREAM_LIMIT`; reading pauses when it is full) only as fast as a client asks for chunks, so
  a process writing gigabytes nobody reads blocks on its pipe instead of filling memory.
- A sandbox's files are only ever touched through the agent, inside the sandbox's namespaces;
  the supervisor receives opened descriptors, never paths to resolve on the node.
- A sandbox ends exactly once (`_finish`): its entrypoint exited, its `timeout` or
  `idle_timeout` passed, it was terminated, or its agent died. Ending kills the whole tree
  (bubblewrap's `--die-with-parent` and the PID namespace take every process with it) and
  removes its private root. Its record (return code, buffered output) stays for `KEEP_FINISHED_S`
  so that `wait`, `poll` and late readers still get answers.
- Every request the agent answers is bounded in size; its answers are parsed as plain JSON and
  trusted for nothing but their shape (the agent shares the sandbox with untrusted code).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import functools
import itertools
import os
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from modal_ray import exception
from modal_ray.exception import InvalidError, NotFoundError, SandboxTerminatedError

from . import agent as agent_module
from . import isolation, network
from .files import File, FileOps, check_path
from .limits import Limits, make_limits, sweep_stale_cgroups
from .mounts import commit_volumes, volume_copies
from .owners import OWNER_LOCK, remove_tree, sandboxes_root, sweep_dead_owners
from .packages import PACKAGES_PATH, PackageCache, python_path
from .relay import Relay
from .snapshot import snapshot_tar

STREAM_LIMIT = 256 * 1024  # bytes buffered per output stream before the pipe is left to fill
CHUNK = 64 * 1024  # largest chunk one read returns
KEEP_FINISHED_S = 600.0  # how long a finished sandbox still answers poll / wait / reads
TERMINATED_CODE = 137  # what Modal reports for a sandbox that was terminated or timed out
EXEC_TIMEOUT_CODE = -1  # what Modal reports for an exec killed by its timeout
ENTRYPOINT = 0  # the exec id of a sandbox's entrypoint process
WATCH_QUEUE = 10_000  # events one watch holds for its reader
AGENT_TIMEOUT_S = 60.0  # longest the agent may take to answer one request (or start a process)


def _pty_size(pty: dict[str, int] | None) -> dict[str, int] | None:
    if pty is None:
        return None
    size = {}
    for key, default in (("rows", 24), ("cols", 80)):
        value = pty.get(key, default)
        if not isinstance(value, int) or not 0 < value < 65536:
            raise InvalidError(f"A terminal's {key} must be a number from 1 to 65535.")
        size[key] = value
    return size


def _sandbox_relpath(path: str) -> str:
    """An absolute sandbox path as a relative path under the sandbox's root (creation time)."""
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise InvalidError(f"{path!r} must be an absolute path without `..`.")
    return str(pure.relative_to("/"))


@dataclass
class _Stream:
    reader: asyncio.StreamReader | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Exec:
    xid: int
    streams: dict[int, _Stream]
    stdin: asyncio.StreamWriter | None
    stdin_closed: bool = False
    returncode: int | None = None
    error: tuple[str, str] | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    deadline: asyncio.TimerHandle | None = None
    timed_out: bool = False
    transports: list[asyncio.BaseTransport] = field(default_factory=list)

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        self.transports.clear()


@dataclass
class _Sandbox:
    sid: str
    name: str | None
    app_id: str | None
    tags: dict[str, str]
    env: dict[str, str]
    workdir: str
    directory: Path
    isolated: bool
    created_at: float = field(default_factory=time.time)
    proc: asyncio.subprocess.Process | None = None
    sock: socket.socket | None = None
    execs: dict[int, _Exec] = field(default_factory=dict)
    files: dict[int, File] = field(default_factory=dict)
    replies: dict[int, asyncio.Future[tuple[dict[str, Any], list[int]]]] = field(
        default_factory=dict
    )
    returncode: int | None = None
    status: str = "running"  # running | exited | timeout | terminated
    done: asyncio.Event = field(default_factory=asyncio.Event)  # ending has begun
    cleaned: asyncio.Event = field(default_factory=asyncio.Event)  # ...and is complete
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    last_active: float = field(default_factory=time.monotonic)
    finished_at: float | None = None
    on_finish: Callable[[], None] | None = None
    relays: dict[int, Relay] = field(default_factory=dict)
    raw_ports: set[int] = field(default_factory=set)
    limits: Limits = field(default_factory=Limits)
    volumes: list[Any] = field(default_factory=list)  # working copies, bound at their paths
    watches: dict[int, asyncio.Queue[dict[str, Any]]] = field(default_factory=dict)
    network: network.Attached | None = None  # slirp4netns serving its namespace
    wake: int | None = None  # write end of the pipe that starts a lazy agent (with an entrypoint)


class Supervisor(FileOps):
    """All sandboxes of one node. Every public method is a coroutine run on one loop."""

    def __init__(
        self, node: str = "this node", base_dir: str | None = None, owner: str | None = None
    ) -> None:
        """`owner` names the one supervisor of this node that may use the directory (e.g. the
        engine's name for it): whatever a previous holder of that name left there (its process
        died with its sandboxes) is removed now."""
        self._node = node
        base = sandboxes_root(base_dir)
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(base, 0o700)
        self._lock: int | None = None
        if owner is not None:
            sweep_dead_owners(base_dir)
            base = base / owner
            if base.exists():
                remove_tree(base)
            base.mkdir(mode=0o700, parents=True)
            # Held for the supervisor's life: a folder whose lock is free belongs to no one.
            # Locked before it gets its name, so a sweeper never sees it unlocked.
            pending = base / f"{OWNER_LOCK}.new"
            self._lock = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            os.rename(pending, base / OWNER_LOCK)
            sweep_stale_cgroups()
        self._base = base
        self._packages = PackageCache(base, node)
        self._sandboxes: dict[str, _Sandbox] = {}
        self._ids = itertools.count(1)
        self._agent = agent_module.__file__
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def create(
        self,
        sid: str,
        *,
        entrypoint: list[str] | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        block_network: bool = False,
        name: str | None = None,
        app_id: str | None = None,
        tags: dict[str, str] | None = None,
        files: list[tuple[str, bytes, int]] | None = None,
        ports: list[int] | None = None,
        raw_ports: list[int] | None = None,
        tunnel_host: str | None = None,
        memory_limit: int | None = None,
        cpu_limit: float | None = None,
        mounts: tuple[Any, ...] = (),
        on_finish: Callable[[], None] | None = None,
        deny_addresses: list[str] | None = None,
        cidr_allowlist: list[str] | None = None,
        packages: list[tuple[list[str], list[str]]] | None = None,
    ) -> dict[str, Any]:
        """Start a sandbox; returns its description (see `describe`). `deny_addresses`: the
        cluster's node addresses, refused by the routes of a sandbox that has network access
        (this node's own addresses always are). `cidr_allowlist`: the only networks its
        outbound traffic may reach (None: any but the refused ones). `packages`: the image's
        package steps (requirements, pip options), installed for the sandbox's Python."""
        bwrap = isolation.check_isolation(self._node)
        tools = None
        if bwrap is not None and not block_network:
            tools = network.check_network(self._node)
        allow = None
        if cidr_allowlist is not None and not block_network:
            allow = network.allowed_networks(cidr_allowlist)
            if tools is None:
                raise exception.ExecutionError(
                    f"`cidr_allowlist` cannot be enforced on {self._node}: its sandboxes share"
                    " the node's network (unisolated, or MODAL_RAY_SANDBOX_NETWORK=host), so"
                    " nothing would restrict them. Use `block_network=True`, or run sandboxes"
                    " with their own network (bubblewrap and slirp4netns)."
                )
        if name is not None and self.find_name(app_id, name) is not None:
            raise exception.AlreadyExistsError(
                f"A running sandbox named {name!r} already exists in this app; pick another"
                " `name=` or terminate it first."
            )
        workdir = workdir or "/"
        _sandbox_relpath(workdir)
        folders = await self._packages.folders([(tuple(p), tuple(o)) for p, o in packages or ()])
        env = dict(env or {})
        if folders:
            env["PYTHONPATH"] = python_path(folders, bwrap is not None, env.get("PYTHONPATH"))
        package_binds = tuple((f, f"{PACKAGES_PATH}/{n}", True) for n, f in enumerate(folders))
        cgroups = make_limits(sid, memory_limit=memory_limit, cpu_limit=cpu_limit)
        directory = Path(tempfile.mkdtemp(prefix=f"{sid}-", dir=self._base))
        root = directory / "root"
        for sub in ("tmp", "root", "etc", "var/tmp", "home", _sandbox_relpath(workdir)):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root / "tmp", 0o1777)
        try:
            copies = (
                await asyncio.get_running_loop().run_in_executor(
                    None, volume_copies, mounts, directory / "volumes"
                )
                if mounts
                else []
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            cgroups.remove()
            raise
        for path, data, mode in files or ():
            target = root / _sandbox_relpath(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.chmod(target, mode & 0o777)
        path = isolation.SANDBOX_PATH if bwrap is not None else isolation.host_path()
        base_env = {"PATH": path, "HOME": "/root", "LANG": "C.UTF-8"}
        box = _Sandbox(
            sid=sid,
            name=name,
            app_id=app_id,
            tags=dict(tags or {}),
            env={**base_env, **env},
            workdir=workdir,
            directory=directory,
            isolated=bwrap is not None,
            on_finish=on_finish,
            limits=cgroups,
            volumes=copies,
        )
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # With an entrypoint, it is the sandbox's main command (bubblewrap's child, started at
        # once; the agent starts beside it), so that its first output does not wait for the
        # agent; its stdio are bubblewrap's own, and bubblewrap exits with its exit code.
        stdio: list[int] = []
        # With network access: info fd (ours, bwrap's), block fd (bwrap's, ours).
        sync: list[int] = []
        entry: _Exec | None = None
        wake: list[int] = []  # the agent's wake pipe (read end, write end)
        if entrypoint:
            entry, stdio = await self._stdio(ENTRYPOINT, ("pipe", "pipe"))
            box.execs[ENTRYPOINT] = entry
            entry.started.set()
            wake = list(os.pipe())
        try:
            if bwrap is not None:
                layout = isolation.Layout(
                    root=str(root),
                    workdir=workdir,
                    block_network=block_network,
                    agent=self._agent,
                    binds=(
                        *package_binds,
                        *((wc.dir, wc.spec.path, wc.spec.read_only) for wc in copies),
                    ),
                    host_network=tools is None,
                )
                if tools is not None:
                    sync = [*os.pipe(), *os.pipe()]
                argv = isolation.bwrap_argv(
                    bwrap,
                    layout,
                    child.fileno(),
                    entrypoint,
                    (sync[1], sync[2]) if sync else None,
                    wake[0] if wake else None,
                )
                cwd = str(directory)
            else:
                argv = isolation.unisolated_argv(
                    self._agent, child.fileno(), entrypoint, wake[0] if wake else None
                )
                cwd = str(root / _sandbox_relpath(workdir))
            box.proc = await asyncio.create_subprocess_exec(
                *cgroups.join_command(),
                *argv,
                stdin=stdio[0] if stdio else asyncio.subprocess.DEVNULL,
                stdout=stdio[1] if stdio else asyncio.subprocess.DEVNULL,
                stderr=stdio[2] if stdio else asyncio.subprocess.PIPE,
                pass_fds=(child.fileno(), *sync[1:3], *wake[:1]),
                cwd=cwd,
                env=box.env,  # the sandbox's whole environment (bubblewrap passes it on)
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            if entry is not None:
                entry.close()
            for fd in [*((sync[0], sync[3]) if sync else ()), *wake[1:]]:
                os.close(fd)
            shutil.rmtree(directory, ignore_errors=True)
            cgroups.remove()
            raise
        finally:
            child.close()
            for fd in [*stdio, *sync[1:3], *wake[:1]]:
                os.close(fd)
        parent.setblocking(False)
        box.sock = parent
        box.wake = wake[1] if wake else None
        self._sandboxes[sid] = box
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_message, box)
        self._spawn(self._watch(box, entry))
        if sync:
            await self._attach_network(box, tools, sync[0], sync[3], deny_addresses or [], allow)
        try:
            if entry is None:
                # Nothing runs until the agent answers. (With an entrypoint, requests queue on
                # the socket until the agent reads them, and a bubblewrap that failed shows as
                # the entrypoint failing, with bubblewrap's message on its stderr.)
                await asyncio.wait_for(self._request(box, {"op": "ping"}), timeout=60)
        except (asyncio.TimeoutError, SandboxTerminatedError, exception.ExecutionError) as exc:
            why = await self._startup_error(box)
            await self._finish(box, "terminated", TERMINATED_CODE)
            raise exception.ExecutionError(
                f"Sandbox {sid} could not start on {self._node}: {why or exc}"
            ) from None
        box.raw_ports = set(raw_ports or ())
        for port in dict.fromkeys([*(ports or ()), *box.raw_ports]):
            if not isinstance(port, int) or not 0 < port < 65536:
                await self._finish(box, "terminated")
                raise InvalidError(f"Invalid port {port!r}: use a number from 1 to 65535.")
            relay = Relay(functools.partial(self._connect_inside, box, port))
            box.relays[port] = await relay.start(tunnel_host)
        loop = asyncio.get_running_loop()
        if timeout is not None:
            box.timers.append(
                loop.call_later(timeout, lambda: self._spawn(self._finish(box, "timeout")))
            )
        if idle_timeout is not None:
            self._spawn(self._idle_watch(box, idle_timeout))
        return self.describe_box(box)

    async def _attach_network(
        self,
        box: _Sandbox,
        tools: network.Tools | None,
        info_fd: int,
        block_fd: int,
        deny: list[str],
        allow: list[str] | None = None,
    ) -> None:
        """Attach slirp4netns to the sandbox's network namespace while bubblewrap holds its
        first process, then let it run. On failure the sandbox ends before anything ran in it
        (it is killed before the block fd closes: bubblewrap goes on at EOF too)."""
        assert tools is not None
        try:
            info = b""
            while True:
                chunk = await asyncio.wait_for(
                    network.read_fd(info_fd, 4096), timeout=network.ATTACH_TIMEOUT_S
                )
                if not chunk:
                    raise exception.ExecutionError(
                        "bubblewrap ended before it reported the sandbox's process:"
                        f" {await self._startup_error(box)}"
                    )
                info += chunk
                pid = network.child_pid(info)
                if pid is not None:
                    break
            routes = network.denied_routes(deny)  # node addresses: cached, rarely a lookup
            box.network = await network.attach(tools, pid, routes, allow)
            os.write(block_fd, b"1")
        except BaseException as exc:
            await self._finish(box, "terminated", TERMINATED_CODE)
            if isinstance(exc, Exception):
                raise exception.ExecutionError(
                    f"Sandbox {box.sid} could not start on {self._node}: its network could not"
                    f" be set up: {exc}"
                ) from None
            raise
        finally:
            os.close(info_fd)
            os.close(block_fd)

    async def _connect_inside(self, box: _Sandbox, port: int) -> socket.socket:
        reply, fds = await self._request(box, {"op": "connect", "port": port})
        if (
            reply.get("ok") is not True
            or len(fds) != 1
            or not stat.S_ISSOCK(os.fstat(fds[0]).st_mode)
        ):
            for fd in fds:
                os.close(fd)
            raise ConnectionRefusedError(str(reply.get("message", "refused")))
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        return sock

    async def _startup_error(self, box: _Sandbox) -> str:
        if box.proc is None or box.proc.stderr is None:
            return ""
        with contextlib.suppress(asyncio.TimeoutError):
            data = await asyncio.wait_for(box.proc.stderr.read(4096), timeout=2)
            return data.decode(errors="replace").strip()
        return ""

    async def _watch(self, box: _Sandbox, entry: _Exec | None) -> None:
        """The sandbox's tree ended by itself: its entrypoint exited (bubblewrap exits with its
        code), or the agent died. Either way the sandbox is over."""
        assert box.proc is not None
        if entry is None and box.proc.stderr is not None:
            # Drain bubblewrap's own messages so that it never blocks on them.
            with contextlib.suppress(Exception):
                while await box.proc.stderr.read(4096):
                    pass
        code = await box.proc.wait()
        if entry is not None and not box.done.is_set():
            code = code if code >= 0 else 128 - code
            entry.returncode = code
            entry.done.set()
            await self._finish(box, "exited", code)
        else:
            await self._finish(box, "terminated", TERMINATED_CODE)

    async def _idle_watch(self, box: _Sandbox, idle_timeout: float) -> None:
        while not box.done.is_set():
            busy = any(not e.done.is_set() for x, e in box.execs.items() if x != ENTRYPOINT)
            if busy:
                box.last_active = time.monotonic()
            elif time.monotonic() - box.last_active >= idle_timeout:
                await self._finish(box, "timeout")
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(box.done.wait(), timeout=min(1.0, idle_timeout))

    async def _finish(self, box: _Sandbox, status: str, code: int | None = None) -> None:
        if box.done.is_set():
            return
        box.status = status
        box.returncode = TERMINATED_CODE if code is None else code
        box.finished_at = time.monotonic()
        box.done.set()
        for timer in box.timers:
            timer.cancel()
        loop = asyncio.get_running_loop()
        if box.sock is not None:
            loop.remove_reader(box.sock.fileno())
            box.sock.close()
        for future in box.replies.values():
            if not future.done():
                future.set_exception(self._gone(box))
        if box.proc is not None and box.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(box.proc.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(box.proc.wait()), timeout=10)
        if box.network is not None:
            await box.network.close()
            box.network = None
        if box.wake is not None:
            os.close(box.wake)
            box.wake = None
        for ex in box.execs.values():
            if not ex.done.is_set():
                ex.returncode = box.returncode if ex.returncode is None else ex.returncode
                ex.started.set()
                ex.done.set()
            if ex.deadline is not None:
                ex.deadline.cancel()
            if ex.stdin is not None and not ex.stdin_closed:
                ex.stdin.close()
                ex.stdin_closed = True
        for f in box.files.values():
            with contextlib.suppress(OSError):
                os.close(f.fd)
        box.files.clear()
        for relay in box.relays.values():
            await relay.close()
        # What the sandbox wrote into its volumes is committed, as a container's is at stop.
        await loop.run_in_executor(None, commit_volumes, box.volumes)
        await loop.run_in_executor(None, remove_tree, box.directory)
        box.limits.remove()
        if box.on_finish is not None:
            with contextlib.suppress(Exception):
                box.on_finish()
        box.cleaned.set()
        self._forget_old()

    def _forget_old(self) -> None:
        now = time.monotonic()
        for sid, box in list(self._sandboxes.items()):
            if box.finished_at is not None and now - box.finished_at > KEEP_FINISHED_S:
                del self._sandboxes[sid]
                for ex in box.execs.values():
                    ex.close()

    def _unresponsive(self, box: _Sandbox) -> Exception:
        return exception.ExecutionError(
            f"Sandbox {box.sid} did not answer within {AGENT_TIMEOUT_S:.0f} s: its agent is not"
            " running (the sandbox may lack `python`, or its code interfered with the agent)."
        )

    def _gone(self, box: _Sandbox) -> Exception:
        if not box.done.is_set():
            return SandboxTerminatedError(
                f"Sandbox {box.sid} can no longer run commands or file operations: its agent"
                " exited (its entrypoint still runs)."
            )
        return SandboxTerminatedError(
            f"Sandbox {box.sid} has already finished ({box.status}); create a new one."
        )

    def _spawn(self, coro: Any) -> None:
        """Run `coro` in the background, held until it ends (the loop keeps weak references)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the agent's channel ------------------------------------------------------------------

    def _on_message(self, box: _Sandbox) -> None:
        assert box.sock is not None
        while True:
            try:
                message, fds = agent_module.recv(box.sock)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, fds = None, []
            if message is None:
                self._agent_gone(box)
                return
            self._dispatch(box, message, fds)

    def _agent_gone(self, box: _Sandbox) -> None:
        """The agent's end of the channel closed. Without an entrypoint the agent *is* the
        sandbox, which is over. With one, the sandbox lasts as long as its entrypoint (and
        `_watch` ends it with the entrypoint's code); what needed the agent now fails."""
        assert box.sock is not None
        asyncio.get_running_loop().remove_reader(box.sock.fileno())
        box.sock.close()
        box.sock = None
        for future in box.replies.values():
            if not future.done():
                future.set_exception(self._gone(box))
        if ENTRYPOINT not in box.execs:
            self._spawn(self._finish(box, "terminated"))

    def _dispatch(self, box: _Sandbox, message: dict[str, Any], fds: list[int]) -> None:
        rid = message.get("rid")
        if isinstance(rid, int) and rid in box.replies:
            future = box.replies.pop(rid)
            if not future.done():
                future.set_result((message, fds))
                return
        for fd in fds:
            os.close(fd)
        if message.get("event") == "watch":
            queue = box.watches.get(message.get("wid"))  # type: ignore[arg-type]
            paths = message.get("paths")
            if queue is not None and isinstance(paths, list):
                if queue.full():  # a watcher that does not keep up loses the oldest events
                    queue.get_nowait()
                queue.put_nowait(
                    {"paths": [str(p) for p in paths], "type": str(message.get("type"))}
                )
            return
        xid = message.get("xid")
        ex = box.execs.get(xid) if isinstance(xid, int) else None
        if ex is None:
            return
        event = message.get("event")
        if event == "started":
            ex.started.set()
        elif event == "exec_error":
            ex.error = (str(message.get("kind", "")), str(message.get("message", "")))
            ex.returncode = 127
            ex.started.set()
            ex.done.set()
        elif event == "exit" and isinstance(message.get("code"), int):
            ex.returncode = EXEC_TIMEOUT_CODE if ex.timed_out else message["code"]
            ex.done.set()
            if ex.deadline is not None:
                ex.deadline.cancel()
            box.last_active = time.monotonic()
            if xid == ENTRYPOINT:
                self._spawn(self._finish(box, "exited", message["code"]))

    async def _send(self, box: _Sandbox, message: dict[str, Any], fds: list[int] = ()) -> None:  # type: ignore[assignment]
        if box.done.is_set() or box.sock is None:
            raise self._gone(box)
        self._wake(box)
        for _ in range(1000):
            try:
                agent_module.send(box.sock, message, fds)
                return
            except BlockingIOError:
                await asyncio.sleep(0.005)
            except OSError:
                raise self._gone(box) from None
        raise self._gone(box)

    def _wake(self, box: _Sandbox) -> None:
        """Start the sandbox's agent if it waits for its first request (see `isolation`)."""
        if box.wake is None:
            return
        with contextlib.suppress(OSError):  # the sandbox ended: requests fail as it ended
            os.write(box.wake, b"\n")
        os.close(box.wake)
        box.wake = None

    async def _request(
        self, box: _Sandbox, message: dict[str, Any]
    ) -> tuple[dict[str, Any], list[int]]:
        rid = next(self._ids)
        future: asyncio.Future[tuple[dict[str, Any], list[int]]] = (
            asyncio.get_running_loop().create_future()
        )
        box.replies[rid] = future
        try:
            await self._send(box, {**message, "rid": rid})
            try:
                return await asyncio.wait_for(future, AGENT_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise self._unresponsive(box) from None
        finally:
            box.replies.pop(rid, None)

    # -- processes ----------------------------------------------------------------------------

    def _box(self, sid: str) -> _Sandbox:
        box = self._sandboxes.get(sid)
        if box is None:
            raise NotFoundError(f"Sandbox {sid!r} not found (it may have finished long ago).")
        box.last_active = time.monotonic()
        return box

    def _running(self, sid: str) -> _Sandbox:
        box = self._box(sid)
        if box.done.is_set():
            raise self._gone(box)
        return box

    async def exec(
        self,
        sid: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
        stdout: str = "pipe",
        stderr: str = "pipe",
        pty: dict[str, int] | None = None,
    ) -> int:
        """Start a process in the sandbox; returns its exec id once it runs (or failed to).
        `pty` (`{"rows", "cols"}`): run it on a new pseudo-terminal inside the sandbox, whose
        output is its stdout (stderr merged) and whose input is its stdin."""
        box = self._running(sid)
        if not argv:
            raise InvalidError("`Sandbox.exec` needs a command to run.")
        xid = next(self._ids)
        ex = await self._start_exec(
            box, xid, argv, env or {}, workdir, (stdout, stderr), timeout, pty
        )
        try:
            await asyncio.wait_for(ex.started.wait(), AGENT_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise self._unresponsive(box) from None
        if ex.error is not None:
            _, message = ex.error
            raise exception.ExecutionError(
                f"Could not run {argv[0]!r} in sandbox {sid}: {message}. Check the command and"
                " that the sandbox has it."
            )
        return xid

    async def _stdio(self, xid: int, outputs: tuple[str, str]) -> tuple[_Exec, list[int]]:
        """A process record with its stdio pipes; returns it and the three descriptors (stdin,
        stdout, stderr) the process gets, which the caller closes once they are handed over."""
        loop = asyncio.get_running_loop()
        send: list[int] = []
        streams: dict[int, _Stream] = {}
        transports: list[asyncio.BaseTransport] = []
        try:
            stdin_r, stdin_w = os.pipe()
            send.append(stdin_r)
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, os.fdopen(stdin_w, "wb", buffering=0)
            )
            transports.append(transport)
            writer = asyncio.StreamWriter(transport, protocol, None, loop)
            for number, kind in zip((1, 2), outputs, strict=True):
                if kind == "devnull":
                    send.append(os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC))
                    streams[number] = _Stream(None)
                    continue
                r, w = os.pipe()
                send.append(w)
                reader = asyncio.StreamReader(limit=STREAM_LIMIT // 2, loop=loop)
                read_transport, _ = await loop.connect_read_pipe(
                    functools.partial(asyncio.StreamReaderProtocol, reader, loop=loop),
                    os.fdopen(r, "rb", buffering=0),
                )
                transports.append(read_transport)
                streams[number] = _Stream(reader)
        except BaseException:
            for fd in send:
                os.close(fd)
            for t in transports:
                t.close()
            raise
        return _Exec(xid=xid, streams=streams, stdin=writer, transports=transports), send

    async def _start_exec(
        self,
        box: _Sandbox,
        xid: int,
        argv: list[str],
        env: dict[str, str],
        workdir: str | None,
        outputs: tuple[str, str],
        timeout: float | None,
        pty: dict[str, int] | None = None,
    ) -> _Exec:
        ex, send = await self._stdio(xid, outputs)
        box.execs[xid] = ex
        cwd = workdir
        if cwd is not None and not box.isolated and PurePosixPath(cwd).is_absolute():
            cwd = str(box.directory / "root" / _sandbox_relpath(cwd))
        try:
            await self._send(
                box,
                {
                    "op": "exec",
                    "xid": xid,
                    "argv": [str(a) for a in argv],
                    "env": {**box.env, **env},
                    "cwd": cwd,
                    "pty": _pty_size(pty),
                },
                send,
            )
        finally:
            for fd in send:
                os.close(fd)
        if timeout is not None:
            ex.deadline = asyncio.get_running_loop().call_later(timeout, self._expire, box, ex)
        return ex

    def _expire(self, box: _Sandbox, ex: _Exec) -> None:
        if ex.done.is_set() or box.done.is_set():
            return
        ex.timed_out = True
        self._spawn(self._send(box, {"op": "kill", "xid": ex.xid, "signal": int(signal.SIGKILL)}))

    def _exec(self, sid: str, xid: int) -> tuple[_Sandbox, _Exec]:
        box = self._box(sid)
        ex = box.execs.get(xid)
        if ex is None:
            if xid == ENTRYPOINT:  # a sandbox without an entrypoint: empty streams
                ex = _Exec(xid=xid, streams={1: _Stream(None), 2: _Stream(None)}, stdin=None)
                ex.stdin_closed = True
                ex.done.set()
                box.execs[xid] = ex
                return box, ex
            raise NotFoundError(f"Process {xid} not found in sandbox {sid}.")
        return box, ex

    async def read(self, sid: str, xid: int, fd: int, max_bytes: int = CHUNK) -> bytes:
        """The next chunk of a process's stdout (1) or stderr (2): waits for at least one byte;
        `b""` at end of stream."""
        _, ex = self._exec(sid, xid)
        stream = ex.streams.get(fd)
        if stream is None or stream.reader is None:
            return b""
        async with stream.lock:
            return await stream.reader.read(max(1, min(max_bytes, CHUNK)))

    async def write(self, sid: str, xid: int, data: bytes, eof: bool = False) -> None:
        """Write to a process's stdin (waits while its pipe is full); `eof` closes it after."""
        box, ex = self._exec(sid, xid)
        if ex.stdin_closed or ex.stdin is None:
            if data or not eof:
                raise ValueError("Stdin of this process was already closed by `write_eof()`.")
            return
        if box.done.is_set():
            raise self._gone(box)
        try:
            if data:
                ex.stdin.write(data)
                await ex.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the process is gone or closed its stdin: what it did not read is dropped
        finally:
            if eof and not ex.stdin_closed:
                ex.stdin_closed = True
                ex.stdin.close()

    async def exec_wait(self, sid: str, xid: int, timeout: float | None = None) -> int | None:
        _, ex = self._exec(sid, xid)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ex.done.wait(), timeout)
        return ex.returncode if ex.done.is_set() else None

    async def wait(self, sid: str, timeout: float | None = None) -> tuple[int | None, str]:
        """(return code, status) once finished, or (None, "running") after `timeout`."""
        box = self._box(sid)
        # Answer once the sandbox is gone for good: its processes, files and reservations.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(box.cleaned.wait(), timeout)
        return (box.returncode, box.status) if box.cleaned.is_set() else (None, "running")

    async def terminate(self, sid: str) -> None:
        box = self._box(sid)
        await self._finish(box, "terminated")

    # -- identity -----------------------------------------------------------------------------

    def find_name(self, app_id: str | None, name: str) -> _Sandbox | None:
        for box in self._sandboxes.values():
            if box.name == name and box.app_id == app_id and not box.done.is_set():
                return box
        return None

    def describe_box(self, box: _Sandbox) -> dict[str, Any]:
        return {
            "sandbox_id": box.sid,
            "name": box.name,
            "app_id": box.app_id,
            "tags": dict(box.tags),
            "created_at": box.created_at,
            "returncode": box.returncode,
            "status": box.status,
            "isolated": box.isolated,
            "tunnels": {
                port: [r.host, r.port, port in box.raw_ports] for port, r in box.relays.items()
            },
        }

    async def describe(self, sid: str) -> dict[str, Any]:
        return self.describe_box(self._box(sid))

    async def set_tags(self, sid: str, tags: dict[str, str]) -> None:
        self._box(sid).tags = dict(tags)

    async def get_tags(self, sid: str) -> dict[str, str]:
        return dict(self._box(sid).tags)

    async def list(
        self,
        app_id: str | None = None,
        tags: dict[str, str] | None = None,
        name: str | None = None,
        include_finished: bool = False,
    ) -> list[dict[str, Any]]:
        self._forget_old()
        out = []
        for box in self._sandboxes.values():
            if box.done.is_set() and not include_finished:
                continue
            if app_id is not None and box.app_id != app_id:
                continue
            if name is not None and box.name != name:
                continue
            if tags and any(box.tags.get(k) != v for k, v in tags.items()):
                continue
            out.append(self.describe_box(box))
        return sorted(out, key=lambda d: d["created_at"])

    # -- files --------------------------------------------------------------------------------

    async def watch_start(self, sid: str, path: str, recursive: bool = False) -> int:
        """Start watching a path inside the sandbox; returns the watch's id."""
        box = self._running(sid)
        wid = next(self._ids)
        box.watches[wid] = asyncio.Queue(maxsize=WATCH_QUEUE)
        try:
            await self._file_request(
                box, {"op": "watch", "path": check_path(path), "wid": wid, "recursive": recursive}
            )
        except BaseException:
            box.watches.pop(wid, None)
            raise
        return wid

    async def watch_next(
        self, sid: str, wid: int, timeout: float
    ) -> builtins.list[dict[str, Any]] | None:
        """The watch's next events (waits up to `timeout` for one); None once the sandbox or
        the watch has ended."""
        box = self._box(sid)
        queue = box.watches.get(wid)
        if queue is None or box.done.is_set():
            return None
        events: builtins.list[dict[str, Any]] = []
        with contextlib.suppress(asyncio.TimeoutError):
            events.append(await asyncio.wait_for(queue.get(), timeout))
        while not queue.empty() and len(events) < 1000:
            events.append(queue.get_nowait())
        return events

    async def watch_stop(self, sid: str, wid: int) -> None:
        box = self._box(sid)
        if box.watches.pop(wid, None) is not None and not box.done.is_set():
            with contextlib.suppress(Exception):
                await self._send(box, {"op": "unwatch", "wid": wid})

    async def snapshot(self, sid: str) -> bytes:
        """A tar of what the sandbox wrote into its own root (see `snapshot.snapshot_tar`)."""
        box = self._running(sid)
        paths = [wc.spec.path for wc in box.volumes]
        return await asyncio.get_running_loop().run_in_executor(
            None, snapshot_tar, box.directory / "root", paths
        )

    async def reload_volumes(self, sid: str) -> None:
        """Bring the sandbox's volumes to their latest committed versions."""
        box = self._running(sid)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: [wc.reload() for wc in box.volumes]
        )

    async def shutdown(self) -> None:
        """End every sandbox and let go of everything (the supervisor is being stopped)."""
        for box in list(self._sandboxes.values()):
            await self._finish(box, "terminated")
            for ex in box.execs.values():
                ex.close()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, timeout=5)
        self._sandboxes.clear()
        if self._lock is not None:
            remove_tree(self._base)
            os.close(self._lock)
            self._lock = None
