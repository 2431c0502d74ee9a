"""The Python packages of a sandbox's image (`Image.pip_install` and its kin).

A sandbox runs the node's interpreter without its virtual environment, so an image's packages
are installed for it as asked (`modal_ray.image.layer.install_steps`: `pip install --target`,
one folder per package step) into a folder of the supervisor, which its sandboxes see read-only
at `PACKAGES_PATH/<n>` on their `PYTHONPATH` (later steps first, as later layers of an image
shadow earlier ones).

Invariants: one set of steps is installed once per supervisor (keyed by the steps, under a
per-key lock, remembered only after every step succeeded), so a failed install is retried by
the next sandbox; the folders live in the supervisor's own directory and go with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from modal_ray.image.layer import Step, install_steps, layer_key

PACKAGES_PATH = "/opt/modal-ray/packages"  # where a sandbox sees its image's packages


def _install(steps: Sequence[Step], folder: Path, node: str) -> list[str]:
    return install_steps(steps, folder, f"for sandboxes on {node}")


class PackageCache:
    """The installed package folders of one supervisor's sandboxes."""

    def __init__(self, base: Path, node: str) -> None:
        self._base = base / "packages"
        self._node = node
        self._locks: dict[str, asyncio.Lock] = {}
        self._done: dict[str, list[str]] = {}

    async def folders(self, steps: Sequence[Step]) -> list[str]:
        """The node folders holding `steps`' packages, one per step, in step order (installed
        now unless an earlier sandbox installed the same steps)."""
        if not steps:
            return []
        key = layer_key(steps)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._done:
                loop = asyncio.get_running_loop()
                self._done[key] = await loop.run_in_executor(
                    None, _install, steps, self._base / key, self._node
                )
        return self._done[key]


def python_path(folders: Sequence[str], inside: bool, existing: str | None) -> str:
    """The sandbox's `PYTHONPATH`: the image's package folders (later steps first) as the
    sandbox sees them, then whatever the image's own `env` set."""
    seen = [f"{PACKAGES_PATH}/{n}" if inside else f for n, f in enumerate(folders)]
    parts = list(reversed(seen))
    if existing:
        parts.append(existing)
    return ":".join(parts)


__all__ = ["PACKAGES_PATH", "PackageCache", "Step", "python_path"]
