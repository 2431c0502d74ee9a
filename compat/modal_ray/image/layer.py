"""An image's packages in a layer of their own, for images that cannot share the worker's.

Normally an image's packages are installed together with the worker runtime's requirements
(`runtime_requirements.py`) into the environment the Ray worker runs from. When the installer
refuses that (`streamlit~=1.35` needs `protobuf<5`; Ray's worker needs `protobuf>=7.35.1`), the
backend switches the image to a layer (`ImageSetup.layered`): the worker runs in the cluster's
own environment, and each package step is installed as asked, unconstrained, with
`python -m pip install --target <layer>/<n>/site-packages` once per node. While an input runs,
the layer comes FIRST for the processes the function starts (`PATH=<site-packages>/bin:...`,
`PYTHONPATH=<site-packages>:...`, later steps first), so `streamlit run` in a subprocess gets the
image's versions, and it is importable by the function itself AFTER the runtime's own packages
(appended to `sys.path`), so the worker keeps Ray's protobuf. Both are undone after the input,
like secrets (a container's process is its own: there they stay).

Invariants: a layer is installed once per node and folder (under a node lock, into a scratch
folder renamed into place only after every step succeeded, so a failed install is retried and
never half-used); the folder is given by the backend (`root`), inside Ray's session folder, so it
goes with the session (an embedded Ray's is removed when the run ends; on a long-lived cluster it
lives as long as the cluster's Ray session, like Ray's own package environments). Scripts
that pip writes to `<site-packages>/bin` start the node's interpreter (the one that installed
them), which finds the layer through `PYTHONPATH`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from modal_ray.exception import ImageBuildError

INSTALL_TIMEOUT_S = 1800.0
# Each step's folder is named like an environment's: packages tell an installed copy from a
# source checkout by it (Streamlit runs in development mode, refusing `--server.port`, outside
# a `site-packages` folder).
_SITE = "site-packages"

# One package step: (requirements, installer options such as `--index-url URL`).
Step = tuple[tuple[str, ...], tuple[str, ...]]


def layer_key(steps: Sequence[Step]) -> str:
    return hashlib.sha256(repr([tuple(s) for s in steps]).encode()).hexdigest()[:24]


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


def install_steps(steps: Sequence[Step], folder: Path, where: str) -> list[str]:
    """Install each step as asked, unconstrained, into `folder/<n>/site-packages` (emptied
    first); returns those folders in step order. `where` ends the error messages ("into their
    own layer", "for sandboxes on node x")."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o755)
    out = []
    for n, step in enumerate(steps):
        target = folder / str(n) / _SITE
        try:
            done = subprocess.run(
                _pip_argv(step, target),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise ImageBuildError(
                f"Installing the image's packages {list(step[0])} {where} took more than"
                f" {INSTALL_TIMEOUT_S:.0f} s."
            ) from None
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise ImageBuildError(
                f"Installing the image's packages {list(step[0])} {where} failed (pip exited"
                f" with {done.returncode}):\n{tail}"
            )
        out.append(str(target))
    return out


def install(steps: Sequence[Step], root: str) -> list[str]:
    """The folders (one per step, in step order) holding `steps`' packages under `root`,
    installed now unless this node has them already."""
    folder = Path(root) / "modal-ray-layers" / layer_key(steps)
    if not folder.is_dir():
        from .setup import _node_lock

        with _node_lock(folder.with_name(folder.name + ".lock")):
            if not folder.is_dir():
                scratch = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
                try:
                    install_steps(steps, scratch, "into their own layer")
                    scratch.rename(folder)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
    return [str(folder / str(n) / _SITE) for n in range(len(steps))]


def enter(folders: Sequence[str]) -> Callable[[], None]:
    """Put the layer first on `PATH`/`PYTHONPATH` and last on `sys.path`; returns the undo."""
    saved = {k: os.environ.get(k) for k in ("PATH", "PYTHONPATH")}
    later_first = list(reversed(folders))
    bins = [os.path.join(f, "bin") for f in later_first if os.path.isdir(os.path.join(f, "bin"))]
    os.environ["PATH"] = os.pathsep.join([*bins, *([saved["PATH"]] if saved["PATH"] else [])])
    python_path = [*later_first, *([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else [])]
    os.environ["PYTHONPATH"] = os.pathsep.join(python_path)
    added = [f for f in later_first if f not in sys.path]
    sys.path.extend(added)

    def undo() -> None:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        for f in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(f)

    return undo


__all__ = ["Step", "enter", "install", "install_steps", "layer_key"]
