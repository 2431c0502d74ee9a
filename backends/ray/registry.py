"""The app registry on Ray: one detached named actor per environment, pinned to the head.

The rules (apps, versions, objects, packages) are engine-neutral
(`modal_ray.storage.registry_server`); this module hosts the server and carries calls to it,
and keeps the code deployed apps need available to the engine.

Invariants:
- The actor is named `modal-registry` in the environment's namespace, detached (it outlives
  every client), restarted by Ray if it dies (its state is the SQLite file, so a restarted actor
  has it all), and pinned to the head node, whose state store (`MODAL_RAY_STATE` of the head's
  processes; `~/.modal-ray` if unset) holds `registry/<environment>.sqlite`.
- Code packages: a deployment's source goes to the cluster as content-addressed `gcs://`
  packages (as Ray's `py_modules` does for a job), and their bytes go into the registry too.
  Ray may drop a package once the job that uploaded it ends and no worker uses it; before a
  process calls a deployed object it restores any missing package from the registry
  (`restore_code`), and that process's job then holds it while it runs.
- A deployment's container pools are never the janitor's: `is_deployment(prefix)` tells them
  apart from runs, and `serve.watch_driver` / the janitor's sweep skip them.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Mapping
from typing import Any

import ray
import ray.exceptions as rex

from modal_ray import config, exception, naming, storage
from modal_ray.exception import Error
from modal_ray.storage.registry_server import RegistryServer, registry_path

from . import app_versions, runtime
from .errors import translate
from .store import _Failure, _request, unpack_reply

REGISTRY_NAME = "modal-registry"
CALL_ATTEMPTS = 12
_HEAD = {"node:__internal_head__": 0.001}


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, resources=_HEAD)
class _RegistryHost:
    """Hosts the registry server of one environment; a call is request bytes in, reply out."""

    def __init__(self, environment: str) -> None:
        path = registry_path(config.state_root(), environment)
        self._server = RegistryServer(path, environment=environment, sync=storage.store_sync())
        self._environment = environment
        from . import scheduler  # deployed schedules fire again after a head restart

        scheduler.revive(environment, self._server.call("active_schedules", True, ()))
        app_versions.publish_all(environment, self._server.call("list_apps", True, ()))

    def call(self, request: bytes) -> bytes:
        method, create, args = pickle.loads(request)
        try:
            result = self._server.call(method, create, args)
        except Error as exc:
            result = _Failure(type(exc).__name__, str(exc))
        else:  # handles looked up by name see the new version (`app_versions`)
            app_versions.publish(self._environment, method, result)
        return pickle.dumps(result, protocol=5)


_handles: dict[str, Any] = {}


def _handle(environment: str) -> Any:
    handle = _handles.get(environment)
    if handle is None:
        runtime.connect(environment)
        handle = _RegistryHost.options(  # type: ignore[attr-defined]
            name=REGISTRY_NAME,
            namespace=config.namespace_for(environment),
            lifetime="detached",
            get_if_exists=True,
        ).remote(environment)
        _handles[environment] = handle
    return handle


def _retry_delay(exc: BaseException, method: str, attempt: int) -> float:
    if isinstance(exc, rex.ActorDiedError | rex.ActorUnavailableError) and (
        attempt < CALL_ATTEMPTS - 1
    ):
        return float(min(0.05 * 2.0**attempt, 1.0))
    raise translate(exc, f"the app registry's {method}") from exc


async def call(environment: str, method: str, args: tuple[Any, ...]) -> Any:
    """One registry operation (`RegistryServer.<method>(create, *args)`)."""
    for attempt in range(CALL_ATTEMPTS):
        handle: Any = _handles.get(environment)
        if handle is None:
            handle = await asyncio.to_thread(_handle, environment)
        try:
            reply = await handle.call.remote(_request(method, True, args))
        except rex.RayError as exc:
            _handles.pop(environment, None)
            await asyncio.sleep(_retry_delay(exc, method, attempt))
            continue
        result = unpack_reply(reply)
        if method in _SCHEDULE_CHANGES:
            await asyncio.to_thread(_schedules_changed, environment, method, result)
        return result
    raise AssertionError("unreachable")  # pragma: no cover


# Operations after which the environment's scheduler re-reads the registry (`scheduler`).
_SCHEDULE_CHANGES = frozenset({"deploy", "rollback", "stop"})


def _schedules_changed(environment: str, method: str, result: Any) -> None:
    from . import scheduler

    scheduler.changed(environment, method, result)


def call_sync(environment: str, method: str, args: tuple[Any, ...]) -> Any:
    """`call` for a blocking caller, in the caller's thread."""
    import time

    for attempt in range(CALL_ATTEMPTS):
        handle = _handle(environment)
        try:
            reply = ray.get(handle.call.remote(_request(method, True, args)))
        except rex.RayError as exc:
            _handles.pop(environment, None)
            time.sleep(_retry_delay(exc, method, attempt))
            continue
        result = unpack_reply(reply)
        if method in _SCHEDULE_CHANGES:
            _schedules_changed(environment, method, result)
        return result
    raise AssertionError("unreachable")  # pragma: no cover


# -- deployments and the janitor -----------------------------------------------------------------

_deployments: set[str] = set()  # prefixes known to be deployments (they stay so until stopped)


def is_deployment(prefix: str) -> bool:
    """Are the pools under run prefix `prefix` a deployed app's (not a run's)? Asks the
    environment's registry if one runs; a cluster with no registry has no deployments."""
    if prefix in _deployments:
        return True
    try:
        environment, app_id = naming.parse_run_prefix(prefix)
    except ValueError:
        return False
    try:
        ray.get_actor(REGISTRY_NAME, namespace=config.namespace_for(environment))
    except ValueError:
        return False
    if call_sync(environment, "is_deployed", (app_id,)):
        _deployments.add(prefix)
        return True
    return False


def forget_deployment(prefix: str) -> None:
    """The app was stopped: its pools are ordinary again for this process."""
    _deployments.discard(prefix)


# -- code packages ---------------------------------------------------------------------------


def _package_uris(runtime_env: Mapping[str, Any]) -> list[str]:
    uris = [m for m in runtime_env.get("py_modules") or [] if isinstance(m, str)]
    working_dir = runtime_env.get("working_dir")
    if isinstance(working_dir, str):
        uris.append(working_dir)
    return [u for u in uris if u.startswith("gcs://")]


def pin_code(
    runtime_env: Mapping[str, Any], target: Any
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The runtime env of a deployed object: the module that defines `target` (a
    `FunctionRef`) and every local package uploaded as `gcs://` packages; with the packages'
    bytes, for the registry."""
    from ray.experimental.internal_kv import _internal_kv_get

    from .tasks import _source_path, _upload_local_packages

    env = dict(runtime_env)
    if getattr(target, "module", None):
        path = _source_path(target)
        if path and "site-packages" not in path and "dist-packages" not in path:
            modules = list(env.get("py_modules") or [])
            if path not in modules:
                modules.append(path)
            env["py_modules"] = modules
    env = _upload_local_packages(env)
    packages: dict[str, bytes] = {}
    for uri in _package_uris(env):
        data = _internal_kv_get(uri)
        if data:
            packages[uri] = bytes(data)
    return env, packages


def restore_code(environment: str, runtime_env: Mapping[str, Any]) -> None:
    """Upload again, from the registry, any package of `runtime_env` that Ray dropped."""
    from ray._private.runtime_env.packaging import (
        package_exists,
        pin_runtime_env_uri,
        upload_package_to_gcs,
    )

    for uri in _package_uris(runtime_env):
        if package_exists(uri):
            continue
        data = call_sync(environment, "package", (uri,))
        if data is None:
            raise exception.NotFoundError(
                f"The code package {uri} of a deployed app is neither on the cluster nor in the"
                " registry; deploy the app again."
            )
        upload_package_to_gcs(uri, data)
        pin_runtime_env_uri(uri)


__all__ = [
    "REGISTRY_NAME",
    "call",
    "call_sync",
    "forget_deployment",
    "is_deployment",
    "pin_code",
    "restore_code",
]
