"""Deployed apps, client side: `App.deploy` / `modal deploy`, and lookups by name or id.

Deploying compiles each Function and Cls of the app into its record (`records`) under the app's
stable id (the registry's, `reserve`), rewrites the records so that they need nothing of the
deploying process, and registers them as one new version (`deploy`). A lookup fetches a record
and rebuilds a callable object from it (`Function._from_record` / `Cls._from_record`).

Invariants of a deployed record:
- its code is in `gcs://` packages named by its runtime env (`Backend.pin_code`), whose bytes the
  registry keeps; the `FunctionRef` carries no local file or folder, so a worker imports the
  deployed copy, never a file edited since; `include_source` is off, so a caller ships nothing;
- its container pools are named under the app id with the deployment's id in their variant:
  each deploy gets new pools, and the previous deploy's pools are removed (in-flight calls end
  within Serve's graceful shutdown), so new calls run the new code;
- the records carry the app's resolved secrets: the registry's file is in the state store, next
  to the secrets themselves (mode 0600).
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import cloudpickle

from modal_ray.exception import InvalidError, NotFoundError

from . import config, freshness, naming
from .ids import new_id
from .records import ClassRecord, FunctionRecord, PoolSpec
from .runtime.worker import FunctionRef
from .state import check_object_name

if TYPE_CHECKING:
    from modal_ray.backends import Backend

NO_CLUSTER = (
    "Deployed apps need a Ray cluster that outlives this process, and none is configured: the"
    " embedded Ray stops when this process exits. Start one with `modal-ray cluster start` and"
    " export the MODAL_RAY_ADDRESS it prints, or set MODAL_RAY_ADDRESS (or RAY_ADDRESS) to an"
    " existing cluster."
)


@dataclass(frozen=True, slots=True)
class Deployed:
    """What `deploy_app` registered."""

    name: str
    app_id: str
    version: int
    environment: str
    functions: tuple[str, ...]
    classes: tuple[str, ...]


def _backend_for(environment: str, what: str) -> Backend:
    """The backend, connected to a cluster that can hold deployments (never the embedded
    Ray); `InvalidError` for `what` otherwise."""
    from modal_ray.backends import get_backend

    backend = get_backend()
    mode = backend.connection_mode()
    if mode == "embedded" or (mode is None and config.ray_address() is None):
        raise InvalidError(f"{what}: {NO_CLUSTER}")
    backend.connect(environment)
    return backend


# -- deploying ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeployedCodeFirst:
    """A worker setup for deployed code: the deployment's packages (`py_modules` /
    `working_dir`, extracted by the engine) go first on `sys.path` before the user's module is
    imported, so that a caller's folder (which the engine also puts on its workers' path) never
    shadows the deployed copy with a file edited since. Then the image's own setup, if any."""

    inner: Any = None

    def apply(self) -> None:
        marker = ("py_modules_files", "working_dir_files")
        ours = [p for p in sys.path if any(m in p for m in marker)]
        if ours and sys.path[: len(ours)] != ours:
            sys.path[:] = ours + [p for p in sys.path if p not in ours]
            importlib.invalidate_caches()
        if self.inner is not None:
            self.inner.apply()


def _strip(target: Any) -> Any:
    """A `FunctionRef` that imports the deployed package, never a local file or folder."""
    if isinstance(target, FunctionRef):
        return replace(target, root="", file="")
    return target


def _pin_pool(
    backend: Backend, pool: PoolSpec, name: str | None, packages: dict[str, bytes]
) -> PoolSpec:
    env, pkgs = backend.pin_code(pool.service.runtime_env, pool.container.target)
    packages.update(pkgs)
    service = replace(pool.service, runtime_env=env, include_source=False)
    if name is not None:
        service = replace(service, name=name)
    container = replace(
        pool.container,
        target=_strip(pool.container.target),
        setup=DeployedCodeFirst(pool.container.setup),
    )
    return PoolSpec(service, container)


def _for_deployment(
    backend: Backend,
    record: FunctionRecord | ClassRecord,
    deployment_id: str,
    packages: dict[str, bytes],
) -> FunctionRecord | ClassRecord:
    """`record` made independent of this process, its pools named for this deployment."""
    from .server import ServerRecord

    if isinstance(record, ServerRecord):  # a Server: its class's pool
        return replace(record, cls=_for_deployment(backend, record.cls, deployment_id, packages))
    spec = replace(record.spec, include_source=False)
    if isinstance(record, ClassRecord):
        pool = _pin_pool(backend, record.pool, None, packages)
        return replace(record, spec=spec, pool=pool, variant=f"{record.variant}|{deployment_id}")
    if record.pool is not None:
        app = record.app
        name = naming.pool_name(app.environment, app.app_id, record.tag, {}, deployment_id)
        return replace(record, spec=spec, pool=_pin_pool(backend, record.pool, name, packages))
    assert record.invocation is not None
    env, pkgs = backend.pin_code(record.spec.runtime_env, record.invocation.target)
    packages.update(pkgs)
    invocation = replace(
        record.invocation,
        target=_strip(record.invocation.target),
        setup=DeployedCodeFirst(record.invocation.setup),
    )
    return replace(record, spec=replace(spec, runtime_env=env), invocation=invocation)


def _compile_all(
    objects: list[tuple[str, str, FunctionRecord | ClassRecord]],
    backend: Backend,
    deployment_id: str,
) -> tuple[list[tuple[str, str, bytes]], dict[str, bytes]]:
    out: list[tuple[str, str, bytes]] = []
    packages: dict[str, bytes] = {}
    for tag, kind, record in objects:
        deployed = _for_deployment(backend, record, deployment_id, packages)
        out.append((tag, kind, cloudpickle.dumps(deployed)))
    return out, packages


async def deploy_app(
    name: str | None,
    environment_name: str | None,
    tag: str,
    start: Callable[[str, str, str], list[tuple[str, str, FunctionRecord | ClassRecord]]],
    schedules: dict[str, str] | None = None,
) -> Deployed:
    """Register a new version of the deployed app `name`. `start(environment, app_id, name)`
    (the App's) enters the deployed state and returns each object's (tag, kind, record),
    kind "function" or "class". `schedules` (function tag -> spec JSON, see
    `schedules.deploy_schedules`) go with the version; the cluster's scheduler fires them."""
    if not name:
        raise InvalidError(
            "A deployed app needs a name: give one with `modal.App(name)`, or"
            " `app.deploy(name=...)` / `modal deploy --name ...`."
        )
    check_object_name(name, "app")
    environment = config.environment_name(environment_name)
    loop = asyncio.get_running_loop()
    backend = await loop.run_in_executor(
        None, _backend_for, environment, f"Cannot deploy app {name!r}"
    )
    app_id = await backend.registry_call(environment, "reserve", (name,))
    deployment_id = new_id("dp")

    def compile_all() -> tuple[list[tuple[str, str, bytes]], dict[str, bytes]]:
        return _compile_all(start(environment, app_id, name), backend, deployment_id)

    objects, packages = await loop.run_in_executor(None, compile_all)
    from .web import plan_deployment, serve_deployment

    endpoints = await loop.run_in_executor(
        None, plan_deployment, backend, environment, app_id, name, objects
    )
    # The previous deploy's pools go first: they run old code (calls in flight end in Serve's
    # graceful shutdown). The new deploy's pools are made on their first call; its web
    # endpoints' now, on the ports they had.
    await loop.run_in_executor(None, backend.stop_deployment, environment, app_id)
    result = await backend.registry_call(
        environment,
        "deploy",
        (name, app_id, tag, deployment_id, objects, packages, dict(schedules or {})),
    )
    await loop.run_in_executor(None, serve_deployment, backend, environment, app_id, endpoints)
    return Deployed(
        name=name,
        app_id=app_id,
        version=int(result["version"]),
        environment=environment,
        functions=tuple(t for t, k, _ in objects if k == "function"),
        classes=tuple(t for t, k, _ in objects if k == "class"),
    )


# -- lookups --------------------------------------------------------------------------------------


def _restore(backend: Backend, environment: str, record: FunctionRecord | ClassRecord) -> None:
    pool = record.pool
    env = pool.service.runtime_env if pool is not None else record.spec.runtime_env
    backend.restore_code(environment, env)


def _lookup_backend(environment: str, what: str) -> Backend:
    try:
        return _backend_for(environment, what)
    except InvalidError as exc:
        raise NotFoundError(str(exc)) from None


def lookup(
    app_name: str, tag: str, kind: str, environment_name: str | None, version: int | None = None
) -> tuple[FunctionRecord | ClassRecord, str]:
    """The current record of `tag` (a "function" or "class") in the deployed app `app_name`,
    with its object id; `NotFoundError` naming what is missing."""
    environment = config.environment_name(environment_name)
    what = "Function" if kind == "function" else "Cls"
    backend = _lookup_backend(environment, f"{what}.from_name({app_name!r}, {tag!r})")
    info = backend.registry_call_sync(environment, "lookup", (app_name, tag, kind, version))
    freshness.note(environment, info["app_id"], info["version"], version is not None)
    record = pickle.loads(info["record"])
    _restore(backend, environment, record)
    return record, str(info["object_id"])


@dataclass(frozen=True, slots=True)
class NamedLookup:
    """A lookup by name, run on first use (as Modal hydrates `from_name` objects lazily)."""

    app_name: str
    tag: str
    kind: str
    environment_name: str | None = None
    version: int | None = None

    def __call__(self) -> tuple[Any, str]:
        return lookup(self.app_name, self.tag, self.kind, self.environment_name, self.version)


@dataclass(frozen=True, slots=True)
class IdLookup:
    """A lookup of a deployed Function by object id, run on first use."""

    object_id: str

    def __call__(self) -> tuple[Any, str]:
        record, kind = lookup_id(self.object_id)
        if kind != "function":
            raise NotFoundError(f"{self.object_id!r} is the id of a Cls, not of a Function.")
        return record, self.object_id


def lookup_id(object_id: str, environment_name: str | None = None) -> tuple[Any, str]:
    """The current record of a deployed object by id, and its kind."""
    environment = config.environment_name(environment_name)
    backend = _lookup_backend(environment, f"Function.from_id({object_id!r})")
    info = backend.registry_call_sync(environment, "lookup_id", (object_id,))
    freshness.note(environment, info["app_id"], info["version"], False)
    record = pickle.loads(info["record"])
    _restore(backend, environment, record)
    return record, str(info["kind"])


async def lookup_app(
    name: str, environment_name: str | None, create_if_missing: bool
) -> dict[str, Any]:
    """A deployed app's registry entry (`name`, `app_id`, `version`); with `create_if_missing`
    an empty app is deployed under `name` first."""
    check_object_name(name, "app")
    environment = config.environment_name(environment_name)
    loop = asyncio.get_running_loop()
    what = f"App.lookup({name!r})"
    backend = await loop.run_in_executor(None, _lookup_backend, environment, what)
    try:
        info: dict[str, Any] = await backend.registry_call(environment, "lookup_app", (name,))
    except NotFoundError:
        if not create_if_missing:
            raise
        app_id = await backend.registry_call(environment, "reserve", (name,))
        await backend.registry_call(environment, "deploy", (name, app_id, "", new_id("dp"), [], {}))
        info = await backend.registry_call(environment, "lookup_app", (name,))
    return {**info, "environment": environment}


async def list_apps(environment_name: str | None) -> list[dict[str, Any]]:
    environment = config.environment_name(environment_name)
    loop = asyncio.get_running_loop()
    backend = await loop.run_in_executor(None, _backend_for, environment, "Listing deployed apps")
    apps: list[dict[str, Any]] = await backend.registry_call(environment, "list_apps", ())
    return apps


async def stop_app(name_or_id: str, environment_name: str | None) -> dict[str, Any]:
    """Stop a deployed app: the registry forgets it for lookups, and its pools are removed."""
    environment = config.environment_name(environment_name)
    loop = asyncio.get_running_loop()
    what = f"Cannot stop app {name_or_id!r}"
    backend = await loop.run_in_executor(None, _backend_for, environment, what)
    info: dict[str, Any] = await backend.registry_call(environment, "stop", (name_or_id,))
    # Its spawned calls still running stop with it (first: none starts on a removed pool).
    await backend.cancel_app_calls(environment, info["app_id"])
    await loop.run_in_executor(None, backend.stop_deployment, environment, info["app_id"])
    return info


async def app_history(name: str, environment_name: str | None) -> list[dict[str, Any]]:
    """The versions of a deployed app, oldest first."""
    environment = config.environment_name(environment_name)
    loop = asyncio.get_running_loop()
    backend = await loop.run_in_executor(None, _backend_for, environment, "App history")
    history: list[dict[str, Any]] = await backend.registry_call(environment, "history", (name,))
    return history


async def rollback_app(
    name: str, version: int | None, environment_name: str | None
) -> dict[str, Any]:
    """Deploy an earlier version again (default: the one before the current) as a new version;
    the current version's pools are removed, the restored version's are made on first call."""
    environment = config.environment_name(environment_name)
    loop = asyncio.get_running_loop()
    what = f"Cannot roll back app {name!r}"
    backend = await loop.run_in_executor(None, _backend_for, environment, what)
    info = await backend.registry_call(environment, "lookup_app", (name,))
    await loop.run_in_executor(None, backend.stop_deployment, environment, info["app_id"])
    result: dict[str, Any] = await backend.registry_call(environment, "rollback", (name, version))
    from .web import serve_current_version

    await loop.run_in_executor(None, serve_current_version, backend, environment, name)
    return result


__all__ = [
    "app_history",
    "rollback_app",
    "NO_CLUSTER",
    "Deployed",
    "IdLookup",
    "NamedLookup",
    "deploy_app",
    "list_apps",
    "lookup",
    "lookup_app",
    "stop_app",
]
