"""A sandbox's network: always its own namespace; outbound access through slirp4netns.

Every isolated sandbox gets a network namespace of its own (bubblewrap's `--unshare-net`), so
its loopback is its own: the node's loopback services (Ray's GCS, raylet, dashboard, the
registry, anything else listening on 127.0.0.1) are not there. With `block_network=True` that
namespace has nothing else. Without it, the supervisor attaches `slirp4netns` to the namespace
before the sandbox's first process runs (bubblewrap waits on `--block-fd` until then):
- slirp4netns is a user-space TCP/IP stack: the sandbox's connections become ordinary sockets
  of the node, opened by slirp4netns (which runs with its own seccomp filter and sandbox);
- `--disable-host-loopback`: the gateway address does not lead to the node's loopback;
- routes inside the namespace refuse (`prohibit`) the node's own addresses and the addresses
  of the cluster's nodes the engine passes in, so that the node IP cannot stand in for the
  loopback: Ray's ports on every node are out of reach (as is anything else on those hosts).
  They are added from outside (`nsenter` + `ip`); root in the sandbox has no capabilities to
  remove them.

Operators who cannot install slirp4netns set `MODAL_RAY_SANDBOX_NETWORK=host` to let sandboxes
without `block_network` share the node's network on purpose; without it such a sandbox refuses
to start, with an error naming what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

from modal_ray import config
from modal_ray.exception import ExecutionError, InvalidError

NETWORK_ENV = "MODAL_RAY_SANDBOX_NETWORK"
TOOLS = ("slirp4netns", "nsenter", "ip")
PACKAGES = {"slirp4netns": "slirp4netns", "nsenter": "util-linux", "ip": "iproute2"}
ATTACH_TIMEOUT_S = 30.0
NS_GET_USERNS = 0xB701  # ioctl on a namespace file: the user namespace that owns it
GATEWAY = "10.0.2.2"  # slirp4netns's gateway in the namespace (its default network 10.0.2.0/24)


def network_mode() -> str:
    """`MODAL_RAY_SANDBOX_NETWORK` on this node: `slirp4netns` (default) or `host`."""
    return config.settings().sandbox_network


@dataclass(frozen=True)
class Tools:
    slirp4netns: str
    nsenter: str
    ip: str


def check_network(node: str = "this node") -> Tools | None:
    """The programs that give a sandbox outbound networking, or None where the operator chose
    to share the node's network; raises if they are needed and missing."""
    if network_mode() == "host":
        return None
    found = {name: shutil.which(name) for name in TOOLS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = " ".join(dict.fromkeys(PACKAGES[name] for name in missing))
        raise ExecutionError(
            f"A sandbox without `block_network=True` reaches the network through slirp4netns in"
            f" its own network namespace, and {', '.join(f'`{m}`' for m in missing)} is not"
            f" installed on {node}. Install it (Debian/Ubuntu: `apt-get install {packages}`;"
            " `scripts/setup.sh` does), create the sandbox with `block_network=True`, or set"
            f" {NETWORK_ENV}=host on the cluster's nodes to let sandboxes share the node's"
            " network (its loopback services and Ray's ports included) on purpose."
        )
    return Tools(**{name: str(path) for name, path in found.items()})


_ADDRESSES_TTL_S = 30.0
_addresses: tuple[float, list[str]] | None = None


def node_addresses() -> list[str]:
    """This node's own IPv4 addresses, loopback excluded (looked up at most every 30 s)."""
    global _addresses
    now = time.monotonic()
    if _addresses is None or now - _addresses[0] > _ADDRESSES_TTL_S:
        _addresses = (now, _lookup_addresses())
    return list(_addresses[1])


def _lookup_addresses() -> list[str]:
    ip = shutil.which("ip")
    if ip is None:
        return []
    try:
        out = subprocess.run(
            [ip, "-j", "-4", "addr", "show"], capture_output=True, timeout=10, check=True
        ).stdout
        links = json.loads(out or b"[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    found: list[str] = []
    for link in links if isinstance(links, list) else []:
        for info in link.get("addr_info", []) if isinstance(link, dict) else []:
            local = info.get("local") if isinstance(info, dict) else None
            if isinstance(local, str):
                found.append(local)
    return found


def denied_routes(extra: list[str]) -> list[str]:
    """The IPv4 networks a sandbox's routes refuse: this node's addresses and `extra` (the
    cluster's nodes), as `a.b.c.d/32`; loopback and anything unparsable left out."""
    nets: dict[str, None] = {}
    for text in [*node_addresses(), *extra]:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if addr.version == 4 and not addr.is_loopback and not addr.is_unspecified:
            nets[f"{addr}/32"] = None
    return list(nets)


class Attached:
    """slirp4netns serving one sandbox's namespace; `close` stops it."""

    def __init__(self, proc: asyncio.subprocess.Process, exit_w: int) -> None:
        self._proc = proc
        self._exit_w: int | None = exit_w

    async def close(self) -> None:
        if self._exit_w is not None:
            os.close(self._exit_w)  # slirp4netns exits when this pipe closes
            self._exit_w = None
        if self._proc.returncode is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._proc.wait(), timeout=2)
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL)
            await self._proc.wait()


async def attach(
    tools: Tools, pid: int, deny: list[str], allow: list[str] | None = None
) -> Attached:
    """Give the network namespace of process `pid` (the sandbox's first process, held by
    bubblewrap's `--block-fd`) outbound networking without the node's loopback, and routes that
    refuse `deny`. With `allow` (IPv4 networks), outbound traffic goes only there: the default
    route is replaced by one route per network (the refusing routes, more specific, still win)."""
    # The namespaces are held by descriptor from here on: the user namespace is the one that
    # owns the network namespace (bubblewrap's `--disable-userns` moves the sandbox's process
    # into a nested one, which has no power over its network; joining that would fail).
    await _loopback_up(pid)
    net_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        user_fd = fcntl.ioctl(net_fd, NS_GET_USERNS)
    except BaseException:
        os.close(net_fd)
        raise
    try:
        return await _attach(tools, net_fd, user_fd, deny, allow)
    finally:
        os.close(net_fd)
        os.close(user_fd)


async def _attach(
    tools: Tools, net_fd: int, user_fd: int, deny: list[str], allow: list[str] | None
) -> Attached:
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    os.set_inheritable(exit_w, False)
    try:
        proc = await asyncio.create_subprocess_exec(
            tools.slirp4netns,
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--enable-seccomp",
            f"--ready-fd={ready_w}",
            f"--exit-fd={exit_r}",
            f"--userns-path=/proc/self/fd/{user_fd}",
            "--netns-type=path",
            f"/proc/self/fd/{net_fd}",
            "tap0",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            pass_fds=(ready_w, exit_r, net_fd, user_fd),
            start_new_session=True,
        )
    except BaseException:
        for fd in (ready_r, ready_w, exit_r, exit_w):
            os.close(fd)
        raise
    os.close(ready_w)
    os.close(exit_r)
    attached = Attached(proc, exit_w)
    try:
        # The refusing routes need no interface: they go in while slirp4netns starts.
        ready, _ = await asyncio.wait_for(
            asyncio.gather(read_fd(ready_r, 1), _deny_routes(tools, net_fd, user_fd, deny)),
            timeout=ATTACH_TIMEOUT_S,
        )
        if ready != b"1":
            raise ExecutionError("slirp4netns could not configure the sandbox's network.")
        if allow is not None:
            # slirp4netns made the default route when it configured the interface.
            only = ["route del default", *(f"route add {net} via {GATEWAY}" for net in allow)]
            await _ip_batch(tools, net_fd, user_fd, only, "allowed routes")
    except BaseException:
        await attached.close()
        raise
    finally:
        os.close(ready_r)
    return attached


async def _deny_routes(tools: Tools, net_fd: int, user_fd: int, deny: list[str]) -> None:
    """`prohibit` routes for `deny`, added from outside the sandbox (`nsenter` + `ip`)."""
    if deny:
        routes = [f"route add prohibit {net}" for net in deny]
        await _ip_batch(tools, net_fd, user_fd, routes, "refusing routes")


async def _ip_batch(
    tools: Tools, net_fd: int, user_fd: int, commands: list[str], what: str
) -> None:
    """Run `ip` commands in the sandbox's network namespace, from outside the sandbox."""
    enter = [tools.nsenter, f"--net=/proc/self/fd/{net_fd}"]
    if os.geteuid() != 0:
        enter += [f"--user=/proc/self/fd/{user_fd}", "--preserve-credentials"]
    done = await asyncio.create_subprocess_exec(
        *enter,
        tools.ip,
        "-batch",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        pass_fds=(net_fd, user_fd),
    )
    _, err = await done.communicate("".join(f"{c}\n" for c in commands).encode())
    if done.returncode != 0:
        raise ExecutionError(
            f"Could not add the sandbox's {what}: " + err.decode(errors="replace").strip()
        )


def allowed_networks(cidrs: list[str]) -> list[str]:
    """`cidr_allowlist` checked: IPv4 networks in CIDR form (the sandbox's network is IPv4
    only, through slirp4netns); anything else is an InvalidError naming it."""
    nets: dict[str, None] = {}
    for text in cidrs:
        try:
            net = ipaddress.ip_network(text, strict=False) if isinstance(text, str) else None
        except ValueError:
            net = None
        if net is None or net.version != 4:
            raise InvalidError(
                f"Invalid CIDR {text!r} in the sandbox's allowlist: use IPv4 networks such as"
                " '10.0.0.0/8' or '203.0.113.7/32' (sandboxes have IPv4 networking only)."
            )
        nets[str(net)] = None
    return list(nets)


async def _loopback_up(pid: int) -> None:
    """Wait until bubblewrap has brought up the namespace's loopback. (It does so over netlink
    after reporting the pid; configuring the namespace at the same time makes that fail now and
    then, and the sandbox with it.) The namespace's local routes show it."""
    deadline = asyncio.get_running_loop().time() + ATTACH_TIMEOUT_S
    while asyncio.get_running_loop().time() < deadline:
        if _has_loopback(pid):
            return
        await asyncio.sleep(0.001)
    raise ExecutionError("bubblewrap did not bring up the sandbox's loopback in time.")


def _has_loopback(pid: int) -> bool:
    """Whether the namespace of `pid` has its loopback address (True where that cannot be read:
    attaching then reports whatever fails)."""
    try:
        with open(f"/proc/{pid}/net/fib_trie", "rb") as f:
            return b"127.0.0.1" in f.read()
    except OSError:
        return True


def child_pid(info: bytes) -> int | None:
    """The pid in bubblewrap's `--info-fd` report, or None while the report is incomplete."""
    try:
        parsed = json.loads(info)
    except ValueError:
        return None
    pid = parsed.get("child-pid") if isinstance(parsed, dict) else None
    if not isinstance(pid, int) or pid <= 0:
        raise ExecutionError(f"bubblewrap reported no process: {info[:200]!r}")
    return pid


async def read_fd(fd: int, size: int) -> bytes:
    """One read from a pipe, waiting on the loop (not a thread) until it is readable."""
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
