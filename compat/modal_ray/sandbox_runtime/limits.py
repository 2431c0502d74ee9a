"""Memory, CPU and process-count limits of a sandbox, through cgroups where the node allows.

A sandbox's limits are one cgroup per controller (cgroup v2: one directory with `memory.max`,
`cpu.max`, `pids.max`; cgroup v1: one directory in each of the `memory`, `cpu` and `pids`
hierarchies), made under the supervisor's own cgroup. The sandbox's command joins them before it
starts (`join_command` puts a shell in front of bubblewrap that writes its own PID into each
`cgroup.procs`, then becomes bubblewrap), so every process of the tree is counted from its first
instruction. The cgroups are removed when the sandbox ends.

Where no writable cgroup hierarchy exists (an unprivileged worker without delegation), limits
cannot be enforced: a sandbox that asks for a hard limit is refused with an error naming
`MODAL_RAY_SANDBOX_LIMITS=off`, the operator setting that accepts running without them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from modal_ray import config
from modal_ray.exception import ExecutionError

LIMITS_ENV = "MODAL_RAY_SANDBOX_LIMITS"
CGROUP = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000


def _own_cgroup(controller: str | None) -> str:
    """This process's cgroup path in a v1 hierarchy (`controller`) or in v2 (None)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            if controller is None and number == "0":
                return path
            if controller is not None and controller in controllers.split(","):
                return path
    return "/"


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _hierarchies() -> dict[str, Path] | None:
    """Where this process may make child cgroups: {"v2": dir} or {controller: dir} for v1."""
    v2 = CGROUP / "cgroup.controllers"
    if v2.exists():
        base = CGROUP / _own_cgroup(None).lstrip("/")
        controllers = (
            set((base / "cgroup.controllers").read_text().split()) if base.exists() else set()
        )
        if _writable(base) and {"memory", "pids"} <= controllers:
            return {"v2": base}
        return None
    found: dict[str, Path] = {}
    for controller in ("memory", "cpu", "pids"):
        base = CGROUP / controller / _own_cgroup(controller).lstrip("/")
        if _writable(base):
            found[controller] = base
    return found or None


@dataclass
class Limits:
    """The cgroups of one sandbox."""

    dirs: list[Path] = field(default_factory=list)

    def join_command(self) -> list[str]:
        """A prefix that runs the command inside these cgroups."""
        if not self.dirs:
            return []
        writes = " && ".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in self.dirs)
        return ["/bin/sh", "-c", f'{writes} && exec "$@"', "sh"]

    def remove(self) -> None:
        for d in self.dirs:
            with contextlib.suppress(OSError):
                d.rmdir()
        self.dirs.clear()


def sweep_stale_cgroups() -> None:
    """Remove sandbox cgroups left by a supervisor that died: only empty ones can go, so a
    live sandbox's cgroup (another supervisor's) is never touched."""
    places = _hierarchies()
    for base in (places or {}).values():
        with contextlib.suppress(OSError):
            for child in base.iterdir():
                if child.name.startswith("modal-ray-sb-") and child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def make_limits(
    sid: str,
    *,
    memory_limit: int | None = None,
    cpu_limit: float | None = None,
    pids_limit: int | None = None,
) -> Limits:
    """The cgroups of a new sandbox, with its limits set; empty where none are asked for or
    the node has no writable cgroups (refused if a hard limit was asked for)."""
    if memory_limit is None and cpu_limit is None and pids_limit is None:
        return Limits()
    mode = config.settings().sandbox_limits
    places = _hierarchies() if mode != "off" else None
    if places is None:
        if mode == "off" or (memory_limit is None and cpu_limit is None):
            return Limits()  # only the default process cap was asked for: best effort
        raise ExecutionError(
            "This sandbox asks for a memory or CPU limit, and this node has no writable cgroup"
            " hierarchy to enforce it (run the cluster's workers with cgroup delegation), or set"
            f" {LIMITS_ENV}=off on the nodes to accept sandboxes without enforced limits."
        )
    limits = Limits()
    name = f"modal-ray-{sid}"
    try:
        if "v2" in places:
            d = places["v2"] / name
            d.mkdir()
            limits.dirs.append(d)
            if memory_limit is not None:
                _write(d / "memory.max", str(memory_limit))
                with contextlib.suppress(OSError):
                    _write(d / "memory.swap.max", "0")
            if cpu_limit is not None and (d / "cpu.max").exists():
                _write(d / "cpu.max", f"{int(cpu_limit * CPU_PERIOD_US)} {CPU_PERIOD_US}")
            if pids_limit is not None:
                _write(d / "pids.max", str(pids_limit))
            return limits
        for controller, base in places.items():
            wanted = {"memory": memory_limit, "cpu": cpu_limit, "pids": pids_limit}[controller]
            if wanted is None:
                continue
            d = base / name
            d.mkdir()
            limits.dirs.append(d)
            if controller == "memory":
                _write(d / "memory.limit_in_bytes", str(memory_limit))
                with contextlib.suppress(OSError):
                    _write(d / "memory.memsw.limit_in_bytes", str(memory_limit))
            elif controller == "cpu":
                _write(d / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(d / "cpu.cfs_quota_us", str(int(float(wanted) * CPU_PERIOD_US)))
            else:
                _write(d / "pids.max", str(pids_limit))
    except OSError as exc:
        limits.remove()
        raise ExecutionError(f"Could not set up the sandbox's cgroup limits: {exc}") from None
    return limits
