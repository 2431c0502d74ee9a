"""Operations on a cluster: its shared state (secrets, environments), the containers of deployed
apps, their output, and Ray's dashboard.

Invariants:
- The cluster's secrets and environment list are served by one detached actor
  (`modal-cluster-state` in the namespace `_modal_ray`), pinned to the head and restarted by Ray
  if it dies; its state is files in the head's state store (`storage.cluster_state`), so a
  restarted actor has it all. Secret values cross the wire only as the reply to
  `secret_values`, never in a runtime env, an actor's name or a log line.
- A container is a Serve replica actor of one of the app's pools (`SERVE_REPLICA::<pool>#...`,
  pools named by `naming.pool_name`). Its id is `ta-<Ray actor id>`: stable while it lives,
  and a replica Serve starts in its place gets a new one. The actor table is read from the GCS,
  so this works with Ray's dashboard off.
- Output is read from the workers' log files on each node by a zero-CPU task pinned to that
  node. Ray's worker log files mark which actor or task each stretch of output belongs to
  (`:actor_name:` / `:task_name:` lines), and a replica's marker names its pool, so the app's
  stretches are told apart from other apps' on shared workers. A plain function of a deployed
  app runs as Ray tasks named after the function, in the caller's workers: its stretches are
  matched by that name.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
import ray.exceptions as rex

from modal_ray import config
from modal_ray.exception import Error, NotFoundError
from modal_ray.storage.cluster_state import ClusterState

from . import runtime
from .errors import translate
from .store import _Failure, unpack_reply

STATE_NAME = "modal-cluster-state"
STATE_NAMESPACE = "_modal_ray"
CALL_ATTEMPTS = 12
_HEAD = {"node:__internal_head__": 0.001}
REPLICA_PREFIX = "SERVE_REPLICA::"
CONTAINER_PREFIX = "ta-"


# -- the cluster's state: secrets and environments ----------------------------------------------


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, resources=_HEAD)
class _StateHost:
    """Hosts the cluster's `ClusterState` over the head's state store; bytes in, bytes out."""

    def __init__(self) -> None:
        self._state = ClusterState(config.state_root())

    def call(self, request: bytes) -> bytes:
        method, args = pickle.loads(request)
        try:
            result = self._state.call(method, args)
        except Error as exc:
            result = _Failure(type(exc).__name__, str(exc))
        return pickle.dumps(result, protocol=5)


_state_handle: Any = None


def _state() -> Any:
    global _state_handle
    if _state_handle is None:
        runtime.connect(config.environment_name())
        _state_handle = _StateHost.options(  # type: ignore[attr-defined]
            name=STATE_NAME,
            namespace=STATE_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
        ).remote()
    return _state_handle


def state_call(method: str, args: tuple[Any, ...]) -> Any:
    """One `ClusterState` operation on the cluster's state actor."""
    global _state_handle
    request = pickle.dumps((method, args), protocol=5)
    for attempt in range(CALL_ATTEMPTS):
        try:
            reply = ray.get(_state().call.remote(request))
        except (rex.ActorDiedError, rex.ActorUnavailableError) as exc:
            _state_handle = None
            if attempt == CALL_ATTEMPTS - 1:
                raise translate(exc, "the cluster's state") from exc
            time.sleep(min(0.05 * 2.0**attempt, 1.0))
            continue
        except rex.RayError as exc:
            raise translate(exc, "the cluster's state") from exc
        return unpack_reply(reply)
    raise AssertionError("unreachable")  # pragma: no cover


def stop_environment(environment: str) -> None:
    """End the environment's registry actor (before its file is removed)."""
    from .registry import REGISTRY_NAME, _handles

    _handles.pop(environment, None)
    try:
        actor = ray.get_actor(REGISTRY_NAME, namespace=config.namespace_for(environment))
    except ValueError:
        return
    ray.kill(actor, no_restart=True)


# -- containers --------------------------------------------------------------------------------


def _replicas(prefix: str) -> list[dict[str, Any]]:
    """Live Serve replica actors whose pool name starts with `prefix` (from the GCS)."""
    from ray._private.state import state

    table = state.actor_table(None, actor_state_name="ALIVE")  # type: ignore[no-untyped-call]
    out = []
    for actor_id, actor in table.items():
        name = str(actor.get("Name", ""))
        if not name.startswith(REPLICA_PREFIX + prefix):
            continue
        pool, _, rest = name[len(REPLICA_PREFIX) :].partition("#")
        deployment = rest.partition("#")[0]
        address = actor.get("Address") or {}
        out.append(
            {
                "container_id": CONTAINER_PREFIX + str(actor_id),
                "actor_name": name,
                "pool": pool,
                "deployment": deployment,
                "node": str(address.get("NodeID", "")),
                "node_ip": str(address.get("IPAddress", "")),
                "pid": int(actor.get("Pid") or 0),
                "started_at": float(actor.get("StartTime") or 0) / 1000.0,
            }
        )
    out.sort(key=lambda c: (c["started_at"], c["container_id"]))
    return out


def containers(environment: str, app_id: str | None) -> list[dict[str, Any]]:
    """The running containers of the environment's apps (or of `app_id`; every environment's
    if `environment` is empty)."""
    from modal_ray import naming

    runtime.connect(environment or config.environment_name())
    if not environment:
        prefix = naming.POOL_PREFIX
    elif app_id:
        prefix = naming.run_prefix(environment, app_id)
    else:
        prefix = f"{naming.POOL_PREFIX}{environment}-{naming.APP_ID_PREFIX}-"
    out = []
    for replica in _replicas(prefix):
        try:
            env, found_app = naming.parse_run_prefix(replica["pool"])
        except ValueError:
            continue
        if environment and env != environment:
            continue
        out.append({**replica, "environment": env, "app_id": found_app})
    return out


def stop_container(environment: str, container_id: str) -> dict[str, Any]:
    """Kill one replica actor (of any environment if `environment` is empty); Serve starts
    another in its place if the pool wants one."""
    found = [c for c in containers(environment, None) if c["container_id"] == container_id]
    if not found:
        raise NotFoundError(
            f"No running container {container_id!r} in environment {environment!r}; see"
            " `modal container list`."
        )
    container = found[0]
    try:
        actor = ray.get_actor(container["actor_name"], namespace="serve")
    except ValueError:
        raise NotFoundError(f"Container {container_id!r} has already stopped.") from None
    ray.kill(actor, no_restart=True)
    return container


# -- output ------------------------------------------------------------------------------------


@ray.remote(num_cpus=0, max_retries=0)
def _read_node(
    match: dict[str, Any], cursors: dict[str, tuple[int, str, str]], limit: int
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, str, str]]]:
    """On one node: the wanted lines of its workers' log files, from `cursors`."""
    from modal_ray import worker_logs

    node: Any = ray._private.worker.global_worker.node
    logs = Path(node.get_logs_dir_path())
    pids = set(match.get("pids") or ())
    out: list[dict[str, Any]] = []
    new: dict[str, tuple[int, str, str]] = {}
    for path in sorted(logs.glob("worker-*")):
        if path.suffix not in (".out", ".err"):
            continue
        pid = worker_logs.worker_pid(path)
        if pids and pid not in pids:
            continue
        cursor = cursors.get(path.name, worker_logs.START)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if size <= cursor[0]:
            new[path.name] = cursor
            continue
        lines: list[tuple[str, str]] = []
        while cursor[0] < size:  # the whole file, `limit` bytes at a time
            more, after = worker_logs.read_lines(path, cursor, match, limit)
            lines.extend(more)
            if after[0] == cursor[0]:
                break  # a line still being written
            cursor = after
        new[path.name] = cursor
        mtime = path.stat().st_mtime
        source = "stdout" if path.suffix == ".out" else "stderr"
        out.extend(
            {"name": name, "line": line, "pid": pid, "source": source, "mtime": mtime}
            for name, line in lines
        )
    return out, new


def read_output(
    match: Mapping[str, Any], cursors: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Wanted lines of every alive node (`match`: `actor_prefixes`, `task_names`, `pids`,
    `nodes`), from `cursors` (per node, per file); with the new cursors."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    runtime.connect(config.environment_name())
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    if match.get("nodes"):
        nodes = [n for n in nodes if n in match["nodes"]]
    refs = {
        node: _read_node.options(  # type: ignore[attr-defined]
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        ).remote(dict(match), cursors.get(node, {}), 16 * 1024 * 1024)
        for node in nodes
    }
    lines: list[dict[str, Any]] = []
    new = dict(cursors)
    for node, ref in refs.items():
        try:
            node_lines, new[node] = ray.get(ref, timeout=60)
        except (rex.RayError, TimeoutError) as exc:
            raise translate(exc, f"reading the output of node {node[:12]}") from exc
        lines.extend({**line, "node": node} for line in node_lines)
    return lines, new


def dashboard_url() -> str | None:
    """Ray's dashboard URL as the cluster records it (None when it runs without one)."""
    from ray._private.services import get_webui_url_from_internal_kv

    runtime.connect(config.environment_name())
    override = os.environ.get("RAY_OVERRIDE_DASHBOARD_URL")
    url = override or get_webui_url_from_internal_kv()  # type: ignore[no-untyped-call]
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


__all__ = [
    "CONTAINER_PREFIX",
    "STATE_NAME",
    "STATE_NAMESPACE",
    "containers",
    "dashboard_url",
    "read_output",
    "state_call",
    "stop_container",
    "stop_environment",
]
