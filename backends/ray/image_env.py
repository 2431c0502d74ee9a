"""Building an image's package environment before a container pool is deployed on it.

A task that needs an image's packages gets Ray's `RuntimeEnvSetupError` (the installer's own
report: which package conflicts with what) and `errors.translate` turns it into
`ImageBuildError`. A Serve pool does not: a replica whose environment cannot be built only marks
its deployment failed, and `serve.run` answers "Failed to update the deployments", with the
reason left in the Serve controller's log. So before a pool whose runtime_env installs packages
is deployed, `build()` runs one empty task in that environment: Ray installs it (once per node
and package list; the replicas that follow on that node use the same environment) and a failure
reaches the deployer as `ImageBuildError`, naming what the installer reported.

Invariants: an environment is built once per process (keyed by its installer settings); only
the installer fields and `env_vars` (which Ray may expand into the package list, and which carry
the worker guard's hook) are used; the task takes no CPU, so it never waits behind the pools.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import ray
import ray.exceptions as rex

from .errors import translate

_built: set[str] = set()
_lock = threading.Lock()


@ray.remote(num_cpus=0, max_retries=0)
def _ready() -> None:
    """Runs in the image's environment once Ray has built it."""


def build(runtime_env: dict[str, Any], what: str) -> None:
    """Install `runtime_env`'s packages now; `ImageBuildError` if the installer refuses."""
    env = {k: runtime_env[k] for k in ("pip", "uv", "env_vars") if runtime_env.get(k)}
    if not (env.get("pip") or env.get("uv")):
        return
    key = json.dumps(env, sort_keys=True, default=str)
    with _lock:
        if key in _built:
            return
        try:
            ray.get(_ready.options(runtime_env=env).remote())
        except rex.RayError as exc:
            raise translate(exc, what) from None
        _built.add(key)
