"""Clustered functions (`@modal.experimental.clustered`, `@modal.clustered`): the core half.

A clustered function runs each input on `size` ranks at once, gang-scheduled (all or nothing),
each rank on its own node by default. The backend reserves the ranks together (on Ray: one
placement group of `size` bundles, `backends/ray/clustered.py`) and starts user code only once
every rank is placed. This module holds what needs no engine: the decorator's checks, the rank's
view of its cluster (`ClusterInfo`, `modal.Cluster`) and the operator settings.

Invariants:
- every input goes to every rank; the caller gets rank 0's value; a failure of any rank fails the
  call and the other ranks are stopped (stricter than Modal's guide, which ignores a non-leader's
  failure: on Ray the leader would otherwise wait for a dead peer until its timeout);
- a rank's `ClusterInfo` is set before the user's code runs and is the same for every input the
  gang runs; `get_cluster_info()` outside a clustered function raises `InvalidError`;
- addresses are the nodes' IP addresses as Ray reports them (IPv4 on most clusters, where Modal
  gives i6pn IPv6 addresses); each rank also gets a port that was free on its node when the gang
  started, rank 0's being the rendezvous port (`MASTER_PORT`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modal_ray.exception import InvalidError, NotFoundError, UnimplementedError

from .synchronizer import dual
from .warn import warn_once

# Ranks per cluster. Modal's beta allows clusters of up to 32 H100s (4 nodes of 8) with 64 planned;
# on a Ray cluster the bound is the number of nodes, checked when the function is first called.
MAX_CLUSTER_SIZE = 64

# Operator settings (`modal_ray.settings`), named in messages.
SHARE_NODES_ENV = "MODAL_RAY_CLUSTER_SHARE_NODES"
PLACEMENT_TIMEOUT_ENV = "MODAL_RAY_CLUSTER_PLACEMENT_TIMEOUT"


def check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise InvalidError(f"`clustered(size=...)` takes an int, not {type(size).__name__}.")
    if not 1 <= size <= MAX_CLUSTER_SIZE:
        raise InvalidError(
            f"Invalid cluster size {size}: `clustered(size=...)` must be between 1 and"
            f" {MAX_CLUSTER_SIZE} (one rank per node)."
        )
    return size


def decorator_options(size: Any, rdma: Any) -> dict[str, Any]:
    """The options `@clustered` leaves on the partial function (checked now)."""
    check_size(size)
    if not isinstance(rdma, bool):
        raise InvalidError(f"`clustered(rdma=...)` takes a bool, not {type(rdma).__name__}.")
    if rdma:
        warn_once(
            "clustered:rdma",
            "`clustered(rdma=True)` has no effect on Ray: ranks use the nodes' own network"
            " (NCCL picks InfiniBand/RoCE by itself where the nodes have it).",
        )
    return {"cluster_size": size}


def check_target(f: Any, options: Mapping[str, Any]) -> None:
    """Refuse what `@clustered` cannot decorate: a class (not supported yet), a method of a
    Modal class, a generator."""
    import inspect

    raw = getattr(f, "raw_f", f)
    if isinstance(raw, type):
        raise UnimplementedError(
            "`@clustered` on a class (`@app.cls`) is not supported by modal-ray yet; put it on an"
            " `@app.function`."
        )
    if options.get("method"):
        raise InvalidError(
            "`@clustered` cannot decorate a method of a Modal class (`@modal.method`): it applies"
            " to a whole Function. Use it under `@app.function()`."
        )
    if inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw):
        raise InvalidError(
            f"`@clustered` cannot decorate generator function {raw.__qualname__!r}: each input"
            " returns rank 0's value. Return a value (a list) instead of yielding."
        )


def check_function(tag: str, options: Any) -> None:
    """Refuse options that contradict a gang per input (`FunctionOptions` of a clustered
    function): generators, input concurrency, batching, web endpoints, warm containers."""
    if options.is_generator:
        raise InvalidError(
            f"Clustered function {tag!r} cannot be a generator: each input returns rank 0's"
            " value. Return a value (a list) instead of yielding."
        )
    clashing = [
        name
        for name, value in (
            ("@modal.concurrent", options.max_inputs_concurrent),
            ("@modal.batched", options.batch_max_size),
            ("a web endpoint decorator", options.web),
            ("min_containers=", options.min_containers),
        )
        if value
    ]
    if clashing:
        raise InvalidError(
            f"Clustered function {tag!r} cannot use {', '.join(clashing)}: each input runs on a"
            " gang of ranks started for it. Remove one of the two."
        )


def check_class(user_cls: type) -> None:
    """A Modal class whose methods carry `@clustered`: refused (see `check_target`)."""
    for klass in user_cls.__mro__:
        for name, value in vars(klass).items():
            opts = getattr(value, "_modal_options", None)
            if isinstance(opts, dict) and opts.get("cluster_size"):
                raise InvalidError(
                    f"`@clustered` cannot decorate method {user_cls.__name__}.{name} of a Modal"
                    " class: it applies to a whole Function. Use it under `@app.function()`."
                )


def share_nodes_allowed() -> bool:
    """`MODAL_RAY_CLUSTER_SHARE_NODES=1`: ranks may share a node when the cluster has fewer
    suitable nodes than ranks (a single machine, tests). Off by default: ranks that share a
    node share its GPUs' PCIe and network, which multi-node code does not expect."""
    from . import config

    return config.settings().cluster_share_nodes


def placement_timeout() -> float:
    """Seconds a call waits for all its ranks to be placed on a busy cluster (the request fits
    the cluster, but other work holds the nodes) before failing
    (`MODAL_RAY_CLUSTER_PLACEMENT_TIMEOUT`)."""
    from . import config

    return config.settings().cluster_placement_timeout


def new_cluster_id() -> str:
    return f"cu-{secrets.token_hex(11)}"


@dataclass(frozen=True)
class ClusterInfo:
    """What a rank knows about its cluster (`modal.experimental.get_cluster_info()`).

    `rank` and `container_ips` (sorted by rank) are Modal's; `container_ports` (a port per rank
    that was free on its node at start), `master_addr` / `master_port` (rank 0's address and
    port, for `torchrun --master_addr/--master_port` or `init_process_group`) and `node_ids`
    are modal-ray's additions.
    """

    rank: int
    container_ips: list[str]
    container_ipv4_ips: list[str]
    cluster_id: str
    container_ids: list[str] = field(default_factory=list)
    container_ports: list[int] = field(default_factory=list)
    node_ids: list[str] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return len(self.container_ips)

    @property
    def master_addr(self) -> str:
        return self.container_ips[0]

    @property
    def master_port(self) -> int:
        return self.container_ports[0]

    def env(self) -> dict[str, str]:
        """The variables `torch.distributed`'s `env://` rendezvous reads (one process per rank)."""
        return {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "WORLD_SIZE": str(self.world_size),
            "RANK": str(self.rank),
            "NODE_RANK": str(self.rank),
            "MODAL_CLUSTER_ID": self.cluster_id,
        }


ClusterInfo.__module__ = "modal.experimental"  # its public home (set after the dataclass is made)

_current: ClusterInfo | None = None


def enter_rank(info: ClusterInfo) -> None:
    """In a rank's process, before the user's code runs (the process serves one gang)."""
    global _current
    _current = info
    os.environ.update(info.env())
    os.environ["MODAL_TASK_ID"] = info.container_ids[info.rank]


def get_cluster_info() -> ClusterInfo:
    """This rank's view of its cluster; `InvalidError` outside a clustered function."""
    if _current is None:
        raise InvalidError(
            "`get_cluster_info()` works inside a clustered function only (one decorated with"
            " `@modal.experimental.clustered(size=...)` under `@app.function()`)."
        )
    return _current


class Cluster:
    """A group of containers scheduled together for a clustered Function."""

    __module__ = "modal.cluster"

    def __init__(self, info: ClusterInfo) -> None:
        self._info = info

    def __repr__(self) -> str:
        return f"Cluster({self._info.cluster_id!r}, size={self._info.world_size})"

    @staticmethod
    def from_context() -> Cluster:
        """The cluster of the running rank (inside a clustered function)."""
        return Cluster(get_cluster_info())

    @staticmethod
    def from_id(cluster_id: str, *, client: Any = None) -> Cluster:
        """A cluster by id: on Ray only the running rank's own cluster can be referenced."""
        if _current is not None and _current.cluster_id == cluster_id:
            return Cluster(_current)
        raise NotFoundError(
            f"Cluster {cluster_id!r} not found: modal-ray keeps a cluster only for the call that"
            " runs on it, and knows it only in that cluster's ranks (`Cluster.from_context()`)."
        )

    @property
    def object_id(self) -> str:
        """The cluster's `cu-` id."""
        return self._info.cluster_id

    @property
    def client(self) -> None:
        return None

    @dual
    async def hydrate(self, client: Any = None) -> Cluster:
        return self

    @dual
    async def container_ids(self) -> list[str]:
        """Container ids, ordered by rank."""
        return list(self._info.container_ids)

    @dual
    async def container_ips(self, family: Literal["ipv4", "ipv6"] = "ipv6") -> list[str]:
        """Container addresses, ordered by rank: the nodes' addresses as Ray reports them
        (`family` is accepted; Ray clusters mostly run on IPv4)."""
        if family not in ("ipv4", "ipv6"):
            raise InvalidError(f"`family` must be 'ipv4' or 'ipv6', not {family!r}.")
        return list(self._info.container_ips)

    @dual
    async def container_rank(self, container_id: str | None = None) -> int:
        """The rank of `container_id` (default: the running container)."""
        if container_id is None:
            return self._info.rank
        try:
            return self._info.container_ids.index(container_id)
        except ValueError:
            raise NotFoundError(
                f"Container {container_id!r} is not part of cluster {self.object_id!r}."
            ) from None

    @dual
    async def get_dashboard_url(self) -> str:
        return ""


__all__ = ["Cluster", "ClusterInfo", "get_cluster_info"]
