"""How one sandbox is isolated: the `bwrap` command line, and the check that it can work here.

Each sandbox gets, from bubblewrap:
- new user, mount, PID, IPC, UTS (and cgroup, where the kernel allows) and network namespaces:
  with `block_network=True` the network namespace has nothing but its own loopback; without it,
  slirp4netns gives it outbound access that cannot reach the node's loopback or the cluster's
  nodes (see `network`), unless the operator chose `MODAL_RAY_SANDBOX_NETWORK=host`;
- every capability dropped and nested user namespaces refused, so root inside the sandbox cannot
  remount what it was given read-only;
- a private root: the sandbox's own writable directory on the node (its `/`, `/tmp`, `/root`,
  workdir...), with the host's system directories (`/usr`, `/bin`, `/lib*`, `/sbin`), a short
  list of `/etc` files programs need (no credentials: no `shadow`, no ssh keys) and the Python
  interpreter the cluster runs bound read-only on top; a fresh `/proc` and a minimal `/dev`;
- a cleared environment: bubblewrap is started with exactly the sandbox's environment (image
  env, secrets, `PATH`, `HOME`) and passes nothing else in. (Not `--setenv`: values on a
  command line are visible to every user of the node in `ps`.)

It cannot see anything else of the node: not the state store, volume cache, Ray's session
directory or token files (all under the host's `/tmp` or home, neither of which is mounted), nor
`$HOME`.

Operators who cannot install bubblewrap (or whose kernel forbids user namespaces) set
`MODAL_RAY_SANDBOX_ISOLATION=none` to run sandboxes as plain processes on purpose; without it a
sandbox refuses to start with an error naming what is missing.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from modal_ray import config
from modal_ray.exception import ExecutionError

ISOLATION_ENV = "MODAL_RAY_SANDBOX_ISOLATION"

AGENT_PATH = "/.modal-ray/agent.py"
PYTHON_PATH = "/opt/modal-ray/python"  # where the cluster's interpreter appears inside

# /etc entries most programs need; nothing secret (no shadow, gshadow, ssh, ssl private keys).
ETC_ENTRIES = (
    "passwd",
    "group",
    "hosts",
    "host.conf",
    "resolv.conf",
    "nsswitch.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "alternatives",
    "ssl/certs",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "debian_version",
    "inputrc",
    "bash.bashrc",
    "profile",
    "terminfo",
)
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
SANDBOX_PATH = f"{PYTHON_PATH}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def isolation_mode() -> str:
    """`MODAL_RAY_SANDBOX_ISOLATION` on this node: `bwrap` (default) or `none`."""
    return config.settings().sandbox_isolation


@functools.lru_cache(maxsize=4)
def _probe(bwrap: str) -> str | None:
    """None if `bwrap` can make this node's namespaces, else what went wrong."""
    argv = [bwrap, *_namespace_args(unshare_net=True), "--ro-bind", "/usr", "/usr"]
    argv += _system_links()
    argv += ["--", "/usr/bin/true" if os.path.exists("/usr/bin/true") else "/bin/true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"
    return None


def check_isolation(node: str = "this node") -> str | None:
    """The bubblewrap binary to use, or None in unisolated mode; raises if isolation is asked
    for and cannot be set up."""
    if isolation_mode() == "none":
        return None
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ExecutionError(
            f"Sandboxes are isolated with bubblewrap, and `bwrap` is not installed on {node}."
            " Install it (Debian/Ubuntu: `apt-get install bubblewrap`), or set"
            f" {ISOLATION_ENV}=none on the cluster's nodes to run sandboxes unisolated on purpose."
        )
    problem = _probe(bwrap)
    if problem is not None:
        raise ExecutionError(
            f"Sandboxes are isolated with bubblewrap, and `bwrap` cannot create namespaces on"
            f" {node}: {problem}. Allow unprivileged user namespaces (e.g. the sysctl"
            " `kernel.unprivileged_userns_clone=1`, or an AppArmor profile for bwrap), or set"
            f" {ISOLATION_ENV}=none on the cluster's nodes to run sandboxes unisolated on purpose."
        )
    return bwrap


def _namespace_args(*, unshare_net: bool) -> list[str]:
    args = [
        "--unshare-user",
        "--uid",
        "0",
        "--gid",
        "0",
        "--disable-userns",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "modal",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
    ]
    if unshare_net:
        args.append("--unshare-net")
    return args


def _system_links() -> list[str]:
    """The host's system directories: symlinks where the host has symlinks (merged /usr)."""
    args: list[str] = []
    for name in SYSTEM_DIRS:
        host = Path("/") / name
        if name == "usr" or not os.path.lexists(host):
            continue
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        else:
            args += ["--ro-bind", str(host), f"/{name}"]
    return args


def python_home() -> str:
    """The installation the node's interpreter belongs to (not a virtual environment)."""
    return sys.base_prefix


@dataclass(frozen=True)
class Layout:
    """Everything that shapes one sandbox's view."""

    root: str  # the sandbox's writable `/` on the node
    workdir: str
    block_network: bool
    agent: str  # the agent program on the node
    host_network: bool = False  # share the node's network (MODAL_RAY_SANDBOX_NETWORK=host)
    binds: tuple[tuple[str, str, bool], ...] = field(default=())  # (node path, sandbox path, ro)


# With an entrypoint, the sandbox's command is a shell that starts the agent in the background
# (its stdio away from the entrypoint's pipes, so that they reach EOF when the entrypoint ends)
# and then becomes the entrypoint. The agent starts lazily: its shell waits for a line on the
# wake pipe, which the supervisor writes before its first request (exec, file operation, tunnel,
# watch), so that the entrypoint's start does not compete with the agent's Python start. (The
# pipe is named through /proc: dash redirects only single-digit descriptors.)
_WITH_ENTRYPOINT = '{python} -I -S {agent} {fd} </dev/null >/dev/null 2>&1 & exec "$@"'
_WITH_ENTRYPOINT_LAZY = (
    "{{ read -r _ </proc/self/fd/{wake} && exec {python} -I -S {agent} {fd}; }}"
    ' </dev/null >/dev/null 2>&1 & exec "$@"'
)


def _command(
    python: str,
    agent: str,
    control_fd: int,
    entrypoint: list[str] | None,
    wake_fd: int | None = None,
) -> list[str]:
    if not entrypoint:
        return [python, "-I", "-S", agent, str(control_fd)]
    template = _WITH_ENTRYPOINT if wake_fd is None else _WITH_ENTRYPOINT_LAZY
    script = template.format(
        python=shlex.quote(python), agent=shlex.quote(agent), fd=control_fd, wake=wake_fd
    )
    return ["/bin/sh", "-c", script, "sh", *entrypoint]


def bwrap_argv(
    bwrap: str,
    layout: Layout,
    control_fd: int,
    entrypoint: list[str] | None = None,
    sync: tuple[int, int] | None = None,
    wake_fd: int | None = None,
) -> list[str]:
    """The full command that starts a sandbox (its agent, and its entrypoint if it has one)
    under bubblewrap. The environment bubblewrap is started with is the sandbox's. `sync`:
    (info fd, block fd): bubblewrap reports the sandbox's first process on the first and waits
    for a byte on the second before running anything (the network is attached meanwhile)."""
    unshare_net = layout.block_network or not layout.host_network
    argv = [bwrap, *_namespace_args(unshare_net=unshare_net)]
    if sync is not None:
        argv += ["--info-fd", str(sync[0]), "--block-fd", str(sync[1])]
    argv += ["--bind", layout.root, "/"]
    argv += ["--ro-bind", "/usr", "/usr", *_system_links()]
    for entry in ETC_ENTRIES:
        host = Path("/etc") / entry
        if os.path.lexists(host) and host.exists():
            argv += ["--ro-bind", str(host), str(host)]
    home = python_home()
    if not home.startswith("/usr/") and home != "/usr":
        argv += ["--ro-bind", home, PYTHON_PATH]
    for node_path, sandbox_path, ro in layout.binds:
        argv += ["--ro-bind" if ro else "--bind", node_path, sandbox_path]
    argv += ["--ro-bind", layout.agent, AGENT_PATH]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--chdir", layout.workdir]
    argv += ["--", *_command(sandbox_python(), AGENT_PATH, control_fd, entrypoint, wake_fd)]
    return argv


def sandbox_python() -> str:
    """The interpreter's path as the sandbox sees it."""
    home = python_home()
    exe = Path(sys.executable).resolve()
    name = exe.name if exe.name.startswith("python") else "python3"
    if home.startswith("/usr/") or home == "/usr":
        return str(Path(home) / "bin" / name)
    return f"{PYTHON_PATH}/bin/{name}"


def host_path() -> str:
    """`PATH` of an unisolated sandbox: the node's interpreter first, then the system's."""
    return os.pathsep.join(
        dict.fromkeys(
            [
                str(Path(sys.executable).parent),
                str(Path(python_home()) / "bin"),
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
        )
    )


def unisolated_argv(
    agent: str, control_fd: int, entrypoint: list[str] | None = None, wake_fd: int | None = None
) -> list[str]:
    return _command(sys.executable, agent, control_fd, entrypoint, wake_fd)
