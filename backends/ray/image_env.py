"""Building an image's package environment before its functions run, and the layer fallback.

A task that needs an image's packages gets Ray's `RuntimeEnvSetupError` (the installer's own
report: which package conflicts with what) and `errors.translate` turns it into
`ImageBuildError`. A Serve pool does not: a replica whose environment cannot be built only marks
its deployment failed, and `serve.run` answers "Failed to update the deployments", with the
reason left in the Serve controller's log. So before a pool or a task function whose runtime_env
installs packages is first used, `prepare()` runs one empty task in that environment: Ray
installs it (once per node and package list; the workers that follow on that node use the same
environment).

When the installer refuses the image's packages beside the worker runtime's requirements
(`runtime_requirements.py`: `streamlit~=1.35` needs `protobuf<5`, Ray's worker
`protobuf>=7.35.1`), the image is not refused: as on Modal, where the image's Python environment
is the user's, its package steps are installed as asked into a layer of their own on each node
(`modal_ray.image.layer`), inside Ray's session folder (removed with an embedded Ray's session;
on a long-lived cluster it lives as long as the cluster's session, like Ray's own package
environments). The worker then runs in the cluster's environment, and the function's
subprocesses see the layer first. A warning says so, naming the conflict. Only if the layer
cannot be installed either does the deployer get `ImageBuildError`, with both reports.

Invariants: an environment is checked once per process (keyed by its installer settings); only
the installer fields and `env_vars` (which Ray may expand into the package list, and which carry
the worker guard's hook) are used; the tasks take no CPU, so they never wait behind the pools;
the fast path (the joint install succeeds) is unchanged.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import ray
import ray.exceptions as rex

from modal_ray.exception import ImageBuildError
from modal_ray.image.setup import ImageSetup
from modal_ray.warn import warn_once

from .errors import translate

_built: dict[str, bool] = {}  # key -> whether the image's packages need a layer
_lock = threading.Lock()
# The lines of pip's and uv's resolver reports that name the two sides of a conflict.
_CONFLICT = re.compile(r"depends on|user requested|you require|unsatisfiable", re.IGNORECASE)
_FRAME = " \u2570\u2500\u25b6\u2502\u00d7"  # uv's report frame


@ray.remote(num_cpus=0, max_retries=0)
def _ready() -> None:
    """Runs in the image's environment once Ray has built it."""


@ray.remote(num_cpus=0, max_retries=0)
def _install_layer(setup: ImageSetup) -> str:
    """Installs the image's package layer on this node; the installer's report if it fails."""
    try:
        setup.install_layer()
    except ImageBuildError as exc:
        return str(exc)
    return ""


def layer_root() -> str:
    """Where this node keeps package layers: the Ray session's folder (see the module doc)."""
    worker = ray._private.worker.global_worker
    node = getattr(worker, "node", None) or getattr(ray._private.worker, "_global_node", None)
    if node is None:  # pragma: no cover - a worker always has its node
        raise ImageBuildError("This process is not part of a Ray session: no layer folder.")
    return str(node.get_session_dir_path())


def _conflict(report: str) -> str:
    found = [ln for ln in report.splitlines() if _CONFLICT.search(ln)]
    lines = [re.sub(r"^(cause|error):\s*", "", ln.strip(_FRAME)).rstrip(".") for ln in found]
    text = "; ".join(dict.fromkeys(ln for ln in lines if ln)) or report.strip().splitlines()[-1]
    return text if len(text) <= 600 else text[:600] + "..."


def _installer_env(runtime_env: dict[str, Any]) -> dict[str, Any]:
    return {k: runtime_env[k] for k in ("pip", "uv", "env_vars") if runtime_env.get(k)}


def prepare(runtime_env: dict[str, Any], setup: Any, what: str) -> tuple[dict[str, Any], Any]:
    """Install `runtime_env`'s packages now. Returns (runtime_env, setup) to run with: as given,
    or, where the installer refuses the image's packages beside the worker runtime and `setup`
    carries them, without them and with the setup installing them in a layer. Raises
    `ImageBuildError` if neither installs."""
    env = _installer_env(runtime_env)
    if not (env.get("pip") or env.get("uv")):
        return runtime_env, setup
    key = json.dumps(env, sort_keys=True, default=str)
    with _lock:
        layered = _built.get(key)
        if layered is None:
            layered = _built[key] = _check(env, setup, what)
    if not layered:
        return runtime_env, setup
    return _without_packages(runtime_env), setup.layered(layer_root)


def _without_packages(runtime_env: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in runtime_env.items() if k not in ("pip", "uv")}


def _check(env: dict[str, Any], setup: Any, what: str) -> bool:
    """False if the joint environment builds; True if only a layer does (warned)."""
    try:
        ray.get(_ready.options(runtime_env=env).remote())
        return False
    except rex.RuntimeEnvSetupError as exc:
        joint = translate(exc, what)
        if not (isinstance(setup, ImageSetup) and setup.steps):
            raise joint from None
        report = str(exc)
    except rex.RayError as exc:
        raise translate(exc, what) from None
    layered = setup.layered(layer_root)
    rest = _without_packages(env)
    try:
        failure = ray.get(_install_layer.options(runtime_env=rest or None).remote(layered))
    except rex.RayError as exc:
        raise translate(exc, what) from None
    if failure:
        raise ImageBuildError(f"{joint}\n\nInstalled on their own, they fail too: {failure}")
    warn_once(
        f"image.layer.{hash(report)}",
        f"The image used by {what} asks for packages that cannot be installed beside the worker "
        f"runtime's (Ray and modal-ray): {_conflict(report)}. They are installed as the image "
        "asks in a separate layer on each node: processes the function starts (such as "
        "`streamlit run`) see the image's versions first, while the function itself imports "
        "the runtime's versions first and the image's other packages after them.",
    )
    return True
