"""Sandboxes on Ray: one supervisor actor per node and namespace, owning many sandboxes.

The supervisor's rules live in `modal_ray.sandbox_runtime.supervisor`; this module only:
- finds or starts the supervisor of a node: a detached named actor
  (`modal-ray-sandboxes-<node prefix>`) pinned to that node, with no CPU of its own, so that it
  outlives the client that created a sandbox (`Sandbox.from_id` from another process works);
- places a sandbox: with `cpu`/`memory`/`gpu` requested, a one-bundle placement group reserves
  them (so Ray schedules nothing else onto them) and its node hosts the sandbox; the group is
  removed when the sandbox ends. Without a request, the sandbox runs on the caller's node (or the
  head) and reserves nothing;
- names sandboxes so that the id says which supervisor owns it (`sb-<node prefix><random>`), so
  that finding a sandbox by id is one named-actor lookup;
- tells the supervisor the cluster's node addresses (and the GCS's), which a sandbox with
  network access is refused routes to (`sandbox_runtime.network`), looked up at most every
  `ADDRESSES_TTL_S`;
- carries errors back: the supervisor's Modal errors travel as (name, message) and are raised
  again here; a dead supervisor reads as `SandboxTerminatedError`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import ray
import ray.exceptions as rex
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from modal_ray import config, exception
from modal_ray.sandbox_runtime.supervisor import Supervisor

NODE_PREFIX = 16  # hex digits of the node id in sandbox ids and supervisor names
ACTOR_PREFIX = "modal-ray-sandboxes-"
PLACEMENT_TIMEOUT_S = 60.0
ADDRESSES_TTL_S = 30.0


class _Host:
    """The supervisor of one node, as a Ray async actor."""

    def __init__(self, node_id: str) -> None:
        namespace = ray.get_runtime_context().namespace
        self._supervisor = Supervisor(
            node=f"node {node_id[:NODE_PREFIX]}", owner=f"{namespace}-{node_id[:NODE_PREFIX]}"
        )
        self._addresses: list[str] = []
        self._addresses_at = -ADDRESSES_TTL_S

    async def create(self, sid: str, kwargs: dict[str, Any], pg_hex: str | None) -> Any:
        if pg_hex is not None:
            kwargs["on_finish"] = lambda: _remove_group(pg_hex)
        if not kwargs.get("block_network"):
            kwargs["deny_addresses"] = await self._cluster_addresses()
        return await self.call("create", (sid,), kwargs)

    async def _cluster_addresses(self) -> list[str]:
        """Every node's address and the GCS's host: what sandboxes must not reach."""
        if time.monotonic() - self._addresses_at > ADDRESSES_TTL_S:
            nodes = await asyncio.get_running_loop().run_in_executor(None, ray.nodes)
            found = [str(n.get("NodeManagerAddress", "")) for n in nodes if n.get("Alive")]
            gcs = ray.get_runtime_context().gcs_address or ""
            found.append(gcs.rsplit(":", 1)[0])
            self._addresses = [a for a in dict.fromkeys(found) if a]
            self._addresses_at = time.monotonic()
        return self._addresses

    async def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if method.startswith("_") or method == "shutdown":
            return ("err", "InvalidError", f"unknown sandbox operation {method!r}")
        try:
            return ("ok", await getattr(self._supervisor, method)(*args, **kwargs))
        except exception.Error as exc:
            return ("err", type(exc).__name__, str(exc))
        except ValueError as exc:
            return ("value", "ValueError", str(exc))

    def ping(self) -> bool:
        return True


_ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0, "max_concurrency": 10000}
_HostActor = ray.remote(**_ACTOR_OPTIONS)(_Host)
_handles: dict[tuple[str, str], Any] = {}


def _remove_group(pg_hex: str) -> None:
    from ray._raylet import PlacementGroupID

    remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_hex))))


def _supervisor(namespace: str, node_prefix: str, node_id: str | None = None) -> Any:
    key = (namespace, node_prefix)
    handle = _handles.get(key)
    if handle is not None:
        return handle
    name = ACTOR_PREFIX + node_prefix
    try:
        handle = ray.get_actor(name, namespace=namespace)
    except ValueError:
        if node_id is None:
            raise exception.NotFoundError(
                "No sandboxes run on that node (its supervisor is gone); the sandbox has ended."
            ) from None
        handle = _HostActor.options(  # type: ignore[attr-defined]
            name=name,
            namespace=namespace,
            lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(node_id)
    _handles[key] = handle
    return handle


def _raise(reply: Any) -> Any:
    if reply[0] == "ok":
        return reply[1]
    _, name, message = reply
    if name == "ValueError":
        raise ValueError(message)
    cls = getattr(exception, name, None)
    if not (isinstance(cls, type) and issubclass(cls, exception.Error)):
        cls = exception.ExecutionError
    raise cls(message)


def _node_of(sid: str) -> str:
    body = sid[3:] if sid.startswith("sb-") else ""
    prefix = body[:NODE_PREFIX]
    if len(prefix) != NODE_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
        raise exception.InvalidError(f"{sid!r} is not a sandbox id (ids look like `sb-...`).")
    return prefix


async def _place(resources: dict[str, float] | None) -> tuple[str, str | None]:
    """(node id, placement group hex or None) for a new sandbox."""
    if resources:
        group = placement_group([resources], strategy="STRICT_PACK")
        ready, _ = await asyncio.get_running_loop().run_in_executor(
            None, lambda: ray.wait([group.ready()], timeout=PLACEMENT_TIMEOUT_S)
        )
        if not ready:
            remove_placement_group(group)
            raise exception.ResourceExhaustedError(
                f"No node of the cluster could reserve {resources} for a sandbox within"
                f" {PLACEMENT_TIMEOUT_S:.0f} s; ask for less, or add nodes."
            )
        table = ray.util.placement_group_table(group)
        node_id = table["bundles_to_node_id"][0]
        return node_id, group.id.hex()
    node_id = ray.get_runtime_context().get_node_id()
    return node_id, None


async def create(
    environment: str, kwargs: dict[str, Any], resources: dict[str, float] | None
) -> Any:
    namespace = config.namespace_for(environment)
    name = kwargs.get("name")
    if name is not None:
        taken = await list_all(environment, {"name": name, "app_id": kwargs.get("app_id")})
        if taken:
            raise exception.AlreadyExistsError(
                f"A running sandbox named {name!r} already exists in this app"
                f" ({taken[0]['sandbox_id']}); pick another `name=` or terminate it first."
            )
    node_id, pg_hex = await _place(resources)
    prefix = node_id[:NODE_PREFIX]
    sid = f"sb-{prefix}{secrets.token_hex(6)}"
    handle = _supervisor(namespace, prefix, node_id)
    try:
        reply = await handle.create.remote(sid, kwargs, pg_hex)
    except rex.RayError as exc:
        if pg_hex is not None:
            _remove_group(pg_hex)
        raise exception.ExecutionError(f"Could not start a sandbox supervisor: {exc}") from None
    if reply[0] != "ok" and pg_hex is not None:
        _remove_group(pg_hex)
    return _raise(reply)


async def call(
    environment: str, sid: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    handle = _supervisor(config.namespace_for(environment), _node_of(sid))
    try:
        reply = await handle.call.remote(method, (sid, *args), kwargs)
    except rex.RayActorError:
        _handles.pop((config.namespace_for(environment), _node_of(sid)), None)
        raise exception.SandboxTerminatedError(
            f"Sandbox {sid} is gone: the supervisor of its node stopped."
        ) from None
    return _raise(reply)


async def list_all(environment: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
    namespace = config.namespace_for(environment)
    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == namespace and a["name"].startswith(ACTOR_PREFIX)
    ]
    replies = []
    for name in names:
        handle = _supervisor(namespace, name[len(ACTOR_PREFIX) :])
        replies.append(handle.call.remote("list", (), filters))
    out: list[dict[str, Any]] = []
    for ref in replies:
        try:
            out.extend(_raise(await ref))
        except rex.RayActorError:
            continue
    return sorted(out, key=lambda d: d["created_at"])
