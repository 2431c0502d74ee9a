"""Clustered functions on Ray: one placement group per call, one actor per rank.

A call to a `@clustered(size=n)` function reserves n bundles of the function's resources in one
placement group (`STRICT_SPREAD`: distinct nodes), waits (bounded) until all are placed, starts
one `_Rank` actor per bundle, collects every rank's node address and a free port, and only then
runs the input on every rank at once. The caller gets rank 0's value.

Invariants:
- all or nothing: no user code runs before every rank's actor is up on its bundle;
- a request the cluster can never hold (fewer suitable nodes than ranks) fails when the function
  is prepared, with the nodes it has; a request that fits but waits on busy nodes fails after
  `MODAL_RAY_CLUSTER_PLACEMENT_TIMEOUT` seconds (`ResourceExhaustedError`), never hangs;
- a failure of any rank ends the call: the other ranks are killed. Whatever happens, the ranks'
  actors are killed and the placement group removed when the call ends (a placement group lives
  for one call: a retry, or the next call, places a new gang);
- `timeout=` bounds each rank's input (the worker's own alarm) and, a few seconds later, the
  group: a rank stuck in C code is killed with the others;
- the inputs of one `.map` chunk run one after another on the same gang; a failed input's gang
  is replaced before the next input.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import ray
import ray.exceptions as rex
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from modal_ray import clustered as core
from modal_ray import config
from modal_ray.errors import RemoteFailure, is_failure
from modal_ray.exception import (
    Error,
    ExecutionError,
    InvalidError,
    ResourceExhaustedError,
)
from modal_ray.runtime.worker import Invocation
from modal_ray.specs import FunctionSpec, Resources
from modal_ray.warn import warn_once

from .errors import translate
from .tasks import EnginePending, drop_outcome, placed_resources, task_options, with_source

# How often a waiting call looks for a cancellation; the group's timeout has this much slack
# over the ranks' own alarms.
_POLL_S = 0.5
_GROUP_GRACE_S = 5.0


def _bundle(resources: Resources) -> dict[str, float]:
    """One rank's reservation. A bundle must ask for something: at least a sliver of CPU."""
    bundle: dict[str, float] = {"CPU": max(resources.num_cpus, 0.001)}
    if resources.num_gpus:
        bundle["GPU"] = float(resources.num_gpus)
    if resources.memory_bytes:
        bundle["memory"] = float(resources.memory_bytes)
    if resources.accelerator_type:
        bundle[f"accelerator_type:{resources.accelerator_type}"] = 0.001
    return bundle


def _fits(node: dict[str, Any], bundle: dict[str, float], selector: dict[str, str] | None) -> int:
    """How many bundles the node holds when empty (0 if its labels do not match)."""
    labels = node.get("Labels", {}) or {}
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        return 0
    total = node.get("Resources", {})
    return min(math.floor(total.get(k, 0.0) / v + 1e-9) for k, v in bundle.items())


def _describe(nodes: list[dict[str, Any]]) -> str:
    out = []
    for n in nodes:
        res = n.get("Resources", {})
        accel = sorted(k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:"))
        out.append(
            f"CPU={res.get('CPU', 0):g} GPU={res.get('GPU', 0):g}"
            + (f" accelerators={accel}" if accel else "")
        )
    return "; ".join(out)


def _want(resources: Resources) -> str:
    want = f"cpu={resources.num_cpus:g}"
    if resources.memory_bytes:
        want += f", memory={resources.memory_bytes // 2**20}MiB"
    if resources.num_gpus:
        want += f", gpu={resources.gpu_spec}"
    return want


class Plan:
    """Where a gang goes: the bundle, its label selector and the placement strategy."""

    def __init__(
        self, size: int, bundle: dict[str, float], selector: dict[str, str] | None, strategy: str
    ) -> None:
        self.size = size
        self.bundle = bundle
        self.selector = selector
        self.strategy = strategy


def plan(resources: Resources, size: int, what: str) -> Plan:
    """Pick the strategy (and, for a GPU fallback list, the first option the cluster can hold);
    `InvalidError` if the cluster can never hold `size` ranks."""
    bundle = _bundle(resources)
    options: list[dict[str, str] | None] = [
        dict(s) if s else None
        for s in (resources.label_selector, *resources.fallback_label_selectors)
    ]
    if not config.check_feasible():  # an autoscaling cluster: nodes may still come
        return Plan(size, bundle, options[0], "STRICT_SPREAD")
    nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    share = core.share_nodes_allowed()
    best = 0
    for selector in options:
        counts = [_fits(n, bundle, selector) for n in nodes]
        distinct = sum(1 for c in counts if c > 0)
        best = max(best, distinct)
        if distinct >= size:
            return Plan(size, bundle, selector, "STRICT_SPREAD")
        if share and sum(counts) >= size:
            warn_once(
                f"clustered:share:{what}",
                f"{what} has {size} ranks but this Ray cluster has {distinct} suitable node(s):"
                f" ranks share nodes because {core.SHARE_NODES_ENV} is set.",
            )
            return Plan(size, bundle, selector, "PACK")
    hint = (
        f" or let ranks share nodes with {core.SHARE_NODES_ENV}=1 (a single machine, tests)"
        if not share
        else ""
    )
    raise InvalidError(
        f"{what} is clustered with size={size}: it needs {size} distinct nodes that each"
        f" provide {_want(resources)}, but this Ray cluster has {best} such node(s)"
        f" (nodes: {_describe(nodes)}). Lower `size=`, add nodes{hint}; on an autoscaling"
        " cluster set MODAL_RAY_CHECK_FEASIBLE=0 to let calls wait for new nodes."
    )


def _free_port(host: str) -> int:
    """A port free on this node now (the OS picks it; a rank binds it again soon after)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, 0))
        except OSError:
            s.bind(("", 0))
        return int(s.getsockname()[1])


class _Rank:
    """One rank: a dedicated worker process on its bundle, killed when the call ends."""

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation

    def address(self) -> tuple[str, int, str, str]:
        ip = ray.util.get_node_ip_address()
        node_id = ray.get_runtime_context().get_node_id()
        return ip, _free_port(ip), node_id, f"ta-{os.uname().nodename}-{os.getpid()}"

    def run(
        self,
        info: core.ClusterInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        call_id: str | None,
    ) -> Any:
        core.enter_rank(info)
        return self.invocation.run_one(args, kwargs, call_id)


_RankActor: Any = None


def _rank_actor() -> Any:
    global _RankActor
    if _RankActor is None:
        _RankActor = ray.remote(_Rank)
    return _RankActor


class _Cancelled(Exception):
    pass


class Gang:
    """The ranks of one call (or one map chunk): placed, started, run, and torn down."""

    def __init__(self, prepared: ClusteredPrepared, cancel: threading.Event) -> None:
        self.prepared = prepared
        self.cancel = cancel
        self.pg: Any = None
        self.actors: list[Any] = []
        self.infos: list[core.ClusterInfo] = []

    def _wait(self, refs: list[Any], deadline: float, num_returns: int) -> list[Any]:
        """`ray.wait` in short steps, so that a cancelled call stops waiting."""
        pending = list(refs)
        ready: list[Any] = []
        while len(ready) < num_returns:
            if self.cancel.is_set():
                raise _Cancelled()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            done, pending = ray.wait(
                pending, num_returns=min(1, len(pending)), timeout=min(_POLL_S, left)
            )
            ready += done
        return ready

    def start(self) -> None:
        p = self.prepared
        plan_ = p.plan
        wait_s = core.placement_timeout()
        deadline = time.monotonic() + wait_s
        self.pg = placement_group(
            [dict(plan_.bundle) for _ in range(plan_.size)],
            strategy=plan_.strategy,
            bundle_label_selector=(
                [dict(plan_.selector) for _ in range(plan_.size)] if plan_.selector else None
            ),
        )
        if not self._wait([self.pg.ready()], deadline, 1):
            raise ResourceExhaustedError(
                f"{p.what} could not place its {plan_.size} ranks within {wait_s:g}s: the"
                " cluster can hold them, but its nodes are busy. Retry later, free nodes, or"
                f" wait longer with {core.PLACEMENT_TIMEOUT_ENV}=<seconds>."
            )
        actor = _rank_actor()
        self.actors = [
            actor.options(
                **p.actor_options,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self.pg, placement_group_bundle_index=i
                ),
            ).remote(p.invocation)
            for i in range(plan_.size)
        ]
        refs = [a.address.remote() for a in self.actors]
        if len(self._wait(refs, deadline, len(refs))) < len(refs):
            raise ResourceExhaustedError(
                f"{p.what}: its {plan_.size} ranks were placed but did not all start within"
                f" {wait_s:g}s (image setup or worker start-up); see the Ray logs, or wait"
                f" longer with {core.PLACEMENT_TIMEOUT_ENV}=<seconds>."
            )
        addresses = ray.get(refs)
        cluster_id = core.new_cluster_id()
        ips = [a[0] for a in addresses]
        self.infos = [
            core.ClusterInfo(
                rank=rank,
                container_ips=ips,
                container_ipv4_ips=[ip for ip in ips if ":" not in ip],
                cluster_id=cluster_id,
                container_ids=[a[3] for a in addresses],
                container_ports=[a[1] for a in addresses],
                node_ids=[a[2] for a in addresses],
            )
            for rank in range(plan_.size)
        ]

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None) -> Any:
        """One input on every rank: rank 0's value, or the first failure of any rank."""
        p = self.prepared
        refs = [
            a.run.remote(info, args, kwargs, call_id)
            for a, info in zip(self.actors, self.infos, strict=True)
        ]
        deadline = time.monotonic() + p.spec.timeout + _GROUP_GRACE_S
        values: dict[int, Any] = {}
        pending = list(refs)
        while pending:
            done = self._wait(pending, deadline, 1)
            if not done:
                return RemoteFailure(
                    "timeout",
                    None,
                    f"{p.spec.tag} timed out after {p.spec.timeout:g}s ({len(refs)} ranks)",
                    "",
                )
            for ref in done:
                pending.remove(ref)
                rank = refs.index(ref)
                try:
                    value = ray.get(ref)
                except rex.RayError as exc:
                    raise translate(exc, f"rank {rank} of {p.what}") from None
                if is_failure(value):
                    if rank:
                        note = f"(rank {rank} of {len(refs)} failed; the other ranks were stopped)"
                        value = replace(value, traceback=f"{note}\n{value.traceback}")
                    return value
                values[rank] = value
        return values[0]

    def stop(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
        self.actors = []
        if self.pg is not None:
            with contextlib.suppress(Exception):
                remove_placement_group(self.pg)
            self.pg = None


class GangPending(EnginePending):
    """A call running on a gang; a thread of this process drives it (all Ray calls block)."""

    __slots__ = ("_cancel", "_cf", "_fut", "what")

    def __init__(self, what: str, body: Callable[[threading.Event], Any]) -> None:
        self.what = what
        self._cancel = threading.Event()
        self._cf: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._fut: asyncio.Future[Any] | None = None
        threading.Thread(target=self._drive, args=(body,), name="modal-gang", daemon=True).start()

    def _drive(self, body: Callable[[threading.Event], Any]) -> None:
        try:
            self._cf.set_result(body(self._cancel))
        except _Cancelled:
            self._cf.set_exception(ExecutionError(f"{self.what} was cancelled"))
        except Error as exc:
            self._cf.set_exception(exc)
        except rex.RayError as exc:
            self._cf.set_exception(translate(exc, self.what))
        except BaseException as exc:
            self._cf.set_exception(ExecutionError(f"{self.what} failed to run its ranks: {exc!r}"))

    def result(self, timeout: float | None = None) -> Any:
        try:
            return self._cf.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"{self.what} is not finished yet") from None

    def _future(self) -> asyncio.Future[Any]:
        if self._fut is None:
            self._fut = asyncio.wrap_future(self._cf)
        return self._fut

    async def result_async(self) -> Any:
        return await self._future()

    def done(self) -> bool:
        return self._cf.done()

    def cancel(self, force: bool = False) -> None:
        self._cancel.set()
        if self._fut is not None:
            self._fut.add_done_callback(drop_outcome)


class ClusteredPrepared:
    """A clustered function: each `submit` places, runs and removes one gang."""

    service: None = None

    def __init__(self, spec: FunctionSpec, invocation: Invocation, plan_: Plan) -> None:
        self.spec = spec
        self.invocation = invocation
        self.plan = plan_
        self.what = f"Function {spec.tag!r}" if spec.tag else "the function"
        runtime_env = with_source(dict(spec.runtime_env), invocation.target, spec.include_source)
        opts = task_options(spec.resources, runtime_env, spec.tag or "modal")
        # The bundle does the placing (labels included); a rank is never restarted on its own.
        for key in ("name", "max_retries", "label_selector", "fallback_strategy"):
            opts.pop(key, None)
        self.actor_options = {**opts, "max_restarts": 0}

    def _gang(self, cancel: threading.Event, work: Callable[[Gang], Any]) -> Any:
        gang = Gang(self, cancel)
        try:
            gang.start()
            return work(gang)
        finally:
            gang.stop()

    def submit(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None = None
    ) -> GangPending:
        return GangPending(
            self.what, lambda cancel: self._gang(cancel, lambda g: g.run(args, kwargs, call_id))
        )

    def submit_chunk(
        self, args_list: list[tuple[Any, ...]], kwargs: dict[str, Any], call_id: str, first: int
    ) -> GangPending:
        def body(cancel: threading.Event) -> tuple[list[Any], float]:
            start = time.perf_counter()
            outcomes: list[Any] = []
            gang: Gang | None = None
            try:
                for i, args in enumerate(args_list):
                    if gang is None:
                        gang = Gang(self, cancel)
                        gang.start()
                    try:
                        outcome = gang.run(args, kwargs, f"{call_id}-{first + i}")
                    except Error as exc:  # a rank lost: this input fails, the next gets a gang
                        outcome = RemoteFailure.capture(exc, "")
                    if is_failure(outcome):
                        gang.stop()
                        gang = None
                    outcomes.append(outcome)
            finally:
                if gang is not None:
                    gang.stop()
            return outcomes, time.perf_counter() - start

        return GangPending(self.what, body)

    def submit_stream(self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str) -> Any:
        raise InvalidError(f"{self.what} is clustered and cannot be a generator.")


def prepare(spec: FunctionSpec, invocation: Invocation) -> ClusteredPrepared:
    size = spec.cluster_size or 1
    what = f"Function {spec.tag!r}" if spec.tag else "the function"
    # The bundle asks for what each rank's actor asks for (`task_options` applies the same
    # `MODAL_RAY_GPU_FALLBACK` rule).
    resources = placed_resources(spec.resources, what)
    return ClusteredPrepared(spec, invocation, plan(resources, size, what))
