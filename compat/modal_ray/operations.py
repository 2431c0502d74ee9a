"""Operations on the cluster a client is connected to: its shared state (named secrets, the list
of environments), the containers and output of deployed apps, and Ray's dashboard.

Where the shared state lives:
- connected to a cluster (`MODAL_RAY_ADDRESS` / `RAY_ADDRESS`, a Ray the user initialised, or
  inside a worker): in the cluster's state store, through the actor on its head, so every
  machine connected to the cluster sees the same secrets and environments;
- otherwise (the embedded Ray, or a one-shot command with no cluster configured): in this
  machine's state store, read in-process (no Ray is started for it).

Both run the same rules (`modal_ray.storage.cluster_state.ClusterState`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from modal_ray.exception import InvalidError, NotFoundError

from . import config, naming

if TYPE_CHECKING:
    from modal_ray.backends import Backend

NEEDS_CLUSTER = (
    "it needs a Ray cluster that outlives this command, and none is configured (the embedded Ray"
    " stops with its process). Start one with `modal-ray cluster start` and export the"
    " MODAL_RAY_ADDRESS it prints, or set MODAL_RAY_ADDRESS to an existing cluster."
)


def cluster_backend() -> Backend | None:
    """The backend, connected, if this process uses a cluster; None for the local state store."""
    if "ray" not in sys.modules and config.ray_address() is None:
        return None  # nothing can have connected this process yet, and nothing will
    from modal_ray.backends import get_backend

    backend = get_backend()
    mode = backend.connection_mode()
    if mode == "embedded" or (mode is None and config.ray_address() is None):
        return None
    if mode is None:
        backend.connect(config.environment_name())
    return backend


def state_call(method: str, *args: Any) -> Any:
    """One operation on the shared state (`ClusterState.<method>(*args)`), wherever it lives."""
    backend = cluster_backend()
    if backend is not None:
        return backend.cluster_state_call(method, args)
    from modal_ray.storage.cluster_state import ClusterState

    return ClusterState(config.state_root()).call(method, args)


def require_cluster(what: str) -> Backend:
    """The connected backend of a cluster; `InvalidError` saying what to run otherwise."""
    backend = cluster_backend()
    if backend is None:
        raise InvalidError(f"{what}: {NEEDS_CLUSTER}")
    return backend


# -- environments --------------------------------------------------------------------------------


def deployed_apps(backend: Backend, environment: str) -> list[str]:
    """Names of the apps deployed in `environment` (none if it never had a registry)."""
    known = {e["name"]: e for e in backend.cluster_state_call("env_list", ())}
    if not known.get(environment, {}).get("registry"):
        return []
    apps = backend.registry_call_sync(environment, "list_apps", ())
    return [a["name"] for a in apps if a["state"] == "deployed"]


# -- apps, containers and output -----------------------------------------------------------------


def app_entry(backend: Backend, environment: str, name_or_id: str) -> dict[str, Any]:
    """A deployed app's registry entry, with the tags of its current objects."""
    info: dict[str, Any] = backend.registry_call_sync(environment, "lookup_app", (name_or_id,))
    info["objects"] = backend.registry_call_sync(environment, "app_objects", (info["app_id"],))
    return info


def output_match(environment: str, app: dict[str, Any], tag: str | None = None) -> dict[str, Any]:
    """What to read of the workers' output for an app (or one of its functions / classes)."""
    prefix = naming.run_prefix(environment, app["app_id"])
    objects = [o for o in app["objects"] if tag is None or o["tag"] == tag]
    if tag is not None and not objects:
        raise NotFoundError(f"{tag!r} not found in app {app['name']!r}.")
    if tag is None:
        actor_prefixes = [f"ServeReplica:{prefix}"]
    else:
        safe = "".join(c if c.isalnum() else "-" for c in tag)  # as `naming.pool_name`
        actor_prefixes = [f"ServeReplica:{prefix}{safe}-"]
    tasks = [o["tag"] for o in objects if o["kind"] == "function"]
    return {"actor_prefixes": actor_prefixes, "task_names": tasks}


__all__ = [
    "NEEDS_CLUSTER",
    "app_entry",
    "cluster_backend",
    "deployed_apps",
    "output_match",
    "require_cluster",
    "state_call",
]
