"""The Python packages of a sandbox's image (`Image.pip_install` and its kin).

A sandbox runs the node's interpreter without its virtual environment, so an image's packages
are installed for it: `pip install --target` into a folder of the supervisor, one folder per
package step, which its sandboxes see read-only at `PACKAGES_PATH/<n>` on their `PYTHONPATH`
(later steps first, as later layers of an image shadow earlier ones).

Invariants: one set of steps is installed once per supervisor (keyed by the steps, under a
per-key lock, marked complete only after every step succeeded), so a failed install is retried
by the next sandbox; the folders live in the supervisor's own directory and go with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from modal_ray.exception import ImageBuildError

PACKAGES_PATH = "/opt/modal-ray/packages"  # where a sandbox sees its image's packages
INSTALL_TIMEOUT_S = 1800.0
_DONE = ".complete"

# One package step: (requirements, installer options such as `--index-url URL`).
Step = tuple[tuple[str, ...], tuple[str, ...]]


def _pip_argv(step: Step, target: Path) -> list[str]:
    packages, options = step
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(target),
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        *options,
        *packages,
    ]


def _install(steps: Sequence[Step], folder: Path, node: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
    folder.mkdir(parents=True, mode=0o755)
    for n, step in enumerate(steps):
        argv = _pip_argv(step, folder / str(n))
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise ImageBuildError(
                f"Installing the sandbox image's packages {list(step[0])} on {node} took more"
                f" than {INSTALL_TIMEOUT_S:.0f} s."
            ) from None
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise ImageBuildError(
                f"Installing the sandbox image's packages {list(step[0])} on {node} failed"
                f" (pip exited with {done.returncode}):\n{tail}"
            )
    (folder / _DONE).touch()


class PackageCache:
    """The installed package folders of one supervisor's sandboxes."""

    def __init__(self, base: Path, node: str) -> None:
        self._base = base / "packages"
        self._node = node
        self._locks: dict[str, asyncio.Lock] = {}

    async def folders(self, steps: Sequence[Step]) -> list[str]:
        """The node folders holding `steps`' packages, one per step, in step order (installed
        now unless an earlier sandbox installed the same steps)."""
        if not steps:
            return []
        key = hashlib.sha256(repr([tuple(s) for s in steps]).encode()).hexdigest()[:24]
        folder = self._base / key
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if not (folder / _DONE).exists():
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, _install, steps, folder, self._node)
        return [str(folder / str(n)) for n in range(len(steps))]


def python_path(folders: Sequence[str], inside: bool, existing: str | None) -> str:
    """The sandbox's `PYTHONPATH`: the image's package folders (later steps first) as the
    sandbox sees them, then whatever the image's own `env` set."""
    seen = [f"{PACKAGES_PATH}/{n}" if inside else f for n, f in enumerate(folders)]
    parts = list(reversed(seen))
    if existing:
        parts.append(existing)
    return ":".join(parts)


__all__ = ["PACKAGES_PATH", "PackageCache", "Step", "python_path"]
