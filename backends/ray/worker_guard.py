"""Ray's worker in an environment that an image's packages changed.

An image's packages are installed into a copy of the workers' environment (Ray's `pip`/`uv`
runtime_env), and Ray's worker imports some packages there that Ray does not require, only
because they are installed: pyarrow, to register Ray Data's serializers, as the worker first
(de)serializes anything. The image's pins can leave such a package installed but unimportable
(pyarrow 26 refuses NumPy 1.x, which an image pinning `numpy<2` installs). Ray catches only a
missing package, so the worker died before any of the user's code ran, and every call of the
function failed with a dead worker, even when the user's code never imports pyarrow.

`install` (run by Ray as the worker process starts: `HOOK` is the worker setup hook of every
runtime_env that installs packages) lets Ray's optional
registration fail with an `ImportError` and says so on the worker's stderr, naming the package
and its error. The package stays as it is: the user's own import of it fails with that error.
Packages Ray requires are not covered: an image that breaks those still fails, with Ray's error.
"""

from __future__ import annotations

import sys
from typing import Any

HOOK = "modal_ray.backends.ray.worker_guard.install"


def install() -> None:
    """Make Ray's registration of its optional Arrow serializers tolerate an unimportable
    pyarrow (idempotent)."""
    from ray._private import arrow_serialization

    register = arrow_serialization._register_custom_datasets_serializers
    if getattr(register, "_modal_ray_guarded", False):
        return

    def guarded(context: Any) -> None:
        try:
            register(context)
        except ImportError as exc:
            print(
                "modal-ray: pyarrow is installed in this worker's environment but cannot be"
                f" imported ({exc}); Ray's Arrow serializers are off in this worker. The"
                " image's packages pin versions that this pyarrow does not support; add a"
                " pyarrow version that supports them to the image if the code needs it.",
                file=sys.stderr,
                flush=True,
            )

    guarded._modal_ray_guarded = True  # type: ignore[attr-defined]
    arrow_serialization._register_custom_datasets_serializers = guarded


def with_guard(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """`runtime_env` with the hook when it installs packages (others are left alone: they run
    in the workers' own environment, and a hook would give them workers of their own).

    Ray turns a `worker_process_setup_hook` into its worker variable only for the job's
    runtime_env; a task's or actor's sets the variable itself."""
    from ray._private.ray_constants import WORKER_PROCESS_SETUP_HOOK_ENV_VAR

    if not (runtime_env.get("pip") or runtime_env.get("uv")):
        return runtime_env
    env_vars = dict(runtime_env.get("env_vars") or {})
    env_vars.setdefault(WORKER_PROCESS_SETUP_HOOK_ENV_VAR, HOOK)
    return {**runtime_env, "env_vars": env_vars}
