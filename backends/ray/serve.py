"""Modal containers as Ray Serve deployments: one Serve application per class parameter set.

A replica is a container: the deployment class `_Replica` is only Serve's wrapper around the
engine-neutral replica runtime (`modal_ray.serve_adapters.replica.Replica`): its `__init__`
starts the container (imports the user's code, runs `@enter` hooks), `__del__` (which Serve calls
when it stops a replica) stops it (`@exit` hooks). Calls go through a `DeploymentHandle`, never
HTTP. Serve's autoscaler scales replicas between `min_containers` and
`max_containers` from the number of ongoing requests.

Serve applications are named `modal-<env>-<app_id>-<tag>-<hash>`; stopping an app deletes every
Serve application with its prefix, including ones that workers created for nested calls.

Attach, then deploy: a process that needs a pool which already exists (a worker's nested call, a
second client on a shared cluster) attaches to it by handle and never deploys it again; only the
process that found no pool deploys it. Pools are deployed with a fixed Serve `version`, so an
update (`update_autoscaler`) or a second deploy of the same pool changes it in place instead of
rolling its replicas (which would run `@modal.enter` again). While a call waits for a container
that the cluster cannot place, the run says what it waits for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
import socket
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import ray
import ray.exceptions as rex
from ray import serve
from ray.serve.exceptions import DeploymentUnavailableError, RayServeException

from modal_ray.exception import ExecutionError
from modal_ray.freshness import PoolGoneError
from modal_ray.naming import run_prefix_of
from modal_ray.runtime.container import ContainerSpec
from modal_ray.serve_adapters.replica import Replica
from modal_ray.specs import Resources, ServiceSpec
from modal_ray.synchronizer import get_loop

from . import image_env
from .errors import translate
from .tasks import (
    EnginePending,
    _upload_local_packages,
    drop_outcome,
    placed_resources,
    with_source,
)

_serve_lock = threading.Lock()
_serve_session: str | None = None  # the Ray session whose Serve this process uses

# Every pool is deployed with this Serve version: a pool's code never changes during a run, and
# without a fixed version Serve treats each deploy as new code and replaces every replica. (Serve
# 2.60 removed `version=` from its public options; its `Deployment` still carries one.)
POOL_VERSION = "modal-ray-pool"


class _Replica:
    """The Serve deployment class: one Modal container per replica.

    Only what is Serve's: the constructor Serve awaits, the method names a `DeploymentHandle`
    calls, `__del__` as the stop hook, and the replica's network binding. The container itself
    is the engine-neutral `Replica`."""

    async def __init__(self, spec: ContainerSpec) -> None:  # type: ignore[misc] # Serve awaits it
        from .runtime import keep_replica_on_loopback

        keep_replica_on_loopback()
        self._replica = Replica(spec)
        await self._replica.start()

    async def __call__(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None
    ) -> Any:
        return await self._replica.call(method, args, kwargs, call_id)

    async def chunk(
        self,
        method: str,
        args_list: list[tuple[Any, ...]],
        kwargs: dict[str, Any],
        call_id: str,
        first: int,
    ) -> tuple[list[Any], float]:
        outcomes: tuple[list[Any], float] = await self._replica.chunk(
            method, args_list, kwargs, call_id, first
        )
        return outcomes

    async def pickled(self, method: str, blob: bytes, call_id: str) -> tuple[bool, bytes]:
        """One call with pickled arguments and outcome (for the call keeper, which must not
        import the user's types): (succeeded, the pickled value or `RemoteFailure`)."""
        from modal_ray.errors import RemoteFailure

        from .tasks import dumps

        args, kwargs = pickle.loads(blob)
        value = await self._replica.call(method, args, kwargs, call_id)
        try:
            return type(value) is not RemoteFailure, dumps(value)
        except Exception as exc:
            import traceback

            failure = RemoteFailure.capture(exc, traceback.format_exc(), "serialization")
            return False, dumps(failure)

    async def stream(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str
    ) -> AsyncIterator[Any]:
        async for item in self._replica.stream(method, args, kwargs, call_id):
            yield item

    async def __del__(self) -> None:
        await self._replica.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _session() -> str:
    return str(ray.get_runtime_context().get_session_name())


def _tolerate_concurrent_router_pickling() -> None:
    """Serve builds every `RequestRouterConfig` (one per deployment config, also when one arrives
    from the controller on its router thread) by registering a module for pickling by value,
    pickling, then unregistering it. Two threads doing that at once make the second unregister
    raise `ValueError: ... is not registered for pickle by value` (Ray 2.60). Unregistering a
    module that another thread already unregistered is harmless, so it is tolerated here."""
    from ray import cloudpickle

    original: Callable[[Any], None] = cloudpickle.unregister_pickle_by_value
    if getattr(original, "_modal_ray_tolerant", False):
        return

    def unregister_pickle_by_value(module: Any) -> None:
        try:
            original(module)
        except ValueError:
            pass

    unregister_pickle_by_value._modal_ray_tolerant = True  # type: ignore[attr-defined]
    cloudpickle.unregister_pickle_by_value = unregister_pickle_by_value


_tolerate_concurrent_router_pickling()


def ensure_serve() -> None:
    """Start Serve once per Ray session (HTTP proxy on 127.0.0.1 only), or use the cluster's
    running Serve as it is (a worker, or a second client of a shared cluster)."""
    global _serve_session
    session = _session()
    if _serve_session == session:
        return
    with _serve_lock:
        if _serve_session == session:
            return
        if _serve_session is not None:
            # Ray was shut down and started again in this process: the old pools are gone.
            _services.clear()
            _watched_prefixes.clear()
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        if not _serve_running():
            serve.start(
                http_options={"host": "127.0.0.1", "port": _free_port()},
                logging_config={"enable_access_log": False, "log_level": "WARNING"},
            )
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        _serve_session = session


def _autoscaling(spec: ServiceSpec) -> dict[str, Any]:
    min_replicas = spec.min_replicas
    max_replicas = max(spec.max_replicas, min_replicas, 1)
    return {
        "min_replicas": min_replicas,
        "initial_replicas": max(min_replicas, 1),
        "max_replicas": max_replicas,
        "target_ongoing_requests": spec.target_ongoing,
        "upscale_delay_s": 0.5,
        "downscale_delay_s": spec.scaledown_window,
        "downscale_to_zero_delay_s": spec.scaledown_window,
        # Modal reacts within seconds; Serve's 10 s default reporting interval would not.
        "metrics_interval_s": 0.5,
        "look_back_period_s": 2.0,
    }


def _deployment_options(spec: ServiceSpec, container: ContainerSpec) -> dict[str, Any]:
    res = placed_resources(spec.resources, f"The containers of {spec.tag!r}")
    actor: dict[str, Any] = {"num_cpus": res.num_cpus}
    if res.num_gpus:
        actor["num_gpus"] = res.num_gpus
    if res.memory_bytes:
        actor["memory"] = res.memory_bytes
    if res.accelerator_type:
        actor["accelerator_type"] = res.accelerator_type
    runtime_env = with_source(dict(spec.runtime_env), container.target, spec.include_source)
    if runtime_env:
        actor["runtime_env"] = _upload_local_packages(runtime_env)
        # Installer errors reach the deployer as ImageBuildError, not as a failed deployment;
        # packages that cannot live beside the worker runtime go to a layer (image_env).
        actor["runtime_env"], container.setup = image_env.prepare(
            actor["runtime_env"], container.setup, f"the containers of {spec.tag}"
        )
    return {
        "name": _deployment_name(spec),
        "ray_actor_options": actor,
        "max_ongoing_requests": spec.max_ongoing,
        "max_queued_requests": -1,
        "autoscaling_config": _autoscaling(spec),
        "graceful_shutdown_timeout_s": spec.exit_grace_s,
        "graceful_shutdown_wait_loop_s": 0.5,
        "logging_config": {"enable_access_log": False, "log_level": "WARNING"},
    }


def _deployment_name(spec: ServiceSpec) -> str:
    return spec.tag.replace(".", "_")


def _pool_gone(service: Service | None, what: str) -> PoolGoneError:
    """A call found its pool deleted: this process forgets its handle on it (a retry attaches
    again, or deploys it again), and the caller gets `PoolGoneError`, which a handle looked up
    by name answers by following its app's current version (`modal_ray.freshness`)."""
    if service is not None and _services.get(service.spec.name) is service:
        _services.pop(service.spec.name).close()
    return PoolGoneError(
        f"The containers of {what} are gone: its app was redeployed or stopped (or the pool"
        " failed to start). Look it up again (`modal.Function.from_name` /"
        " `modal.Cls.from_name`) to call the app's current version."
    )


class ServePending(EnginePending):
    """A call in flight on a deployment; the value is an outcome or a `RemoteFailure`."""

    __slots__ = ("_fut", "_resp", "service", "what")

    def __init__(self, response: Any, what: str, service: Service | None = None) -> None:
        self._resp = response
        self.what = what
        self.service = service
        self._fut: asyncio.Future[Any] | None = None

    async def _await(self) -> Any:
        return await self._resp

    def result(self, timeout: float | None = None) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:  # Serve refuses `.result()` inside an event loop: wait on the private loop.
            return asyncio.run_coroutine_threadsafe(self.result_async(), get_loop()).result(timeout)
        try:
            return self._resp.result(timeout_s=timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.what} is not finished yet") from None
        except DeploymentUnavailableError:
            raise _pool_gone(self.service, self.what) from None
        except rex.RayError as exc:
            raise translate(exc, self.what) from None

    def _future(self) -> asyncio.Future[Any]:
        if self._fut is None:
            self._fut = asyncio.ensure_future(self._await())
        return self._fut

    async def result_async(self) -> Any:
        try:
            return await self._future()
        except DeploymentUnavailableError:
            raise _pool_gone(self.service, self.what) from None
        except rex.RayError as exc:
            raise translate(exc, self.what) from None

    def done(self) -> bool:
        return self._fut is not None and self._fut.done()

    def cancel(self, force: bool = False) -> None:
        try:
            self._resp.cancel()
        except Exception:
            pass
        if self._fut is not None:  # nobody awaits it now: its error is not "never retrieved"
            self._fut.add_done_callback(drop_outcome)


class ServeStream:
    """A generator call on a deployment: items as the container yields them."""

    def __init__(self, response: Any, what: str, service: Service | None = None) -> None:
        self._resp = response
        self.what = what
        self.service = service

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._resp
        except DeploymentUnavailableError:
            raise _pool_gone(self.service, self.what) from None
        except rex.RayError as exc:
            raise translate(exc, self.what) from None

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for item in self._resp:
                yield item
        except DeploymentUnavailableError:
            raise _pool_gone(self.service, self.what) from None
        except rex.RayError as exc:
            raise translate(exc, self.what) from None

    def cancel(self) -> None:
        try:
            self._resp.cancel()
        except Exception:
            pass


class ServeMethod:
    """One method of a deployed container, shaped like a prepared task function."""

    def __init__(self, service: Service, method: str) -> None:
        self.service = service
        self.method = method
        self.what = f"{service.spec.tag}.{method}" if method != "__call__" else service.spec.tag
        self.rebind()

    def rebind(self) -> None:
        self._chunk = self.service.handle.options(method_name="chunk")
        self._stream = self.service.handle.options(method_name="stream", stream=True)

    def submit(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None = None
    ) -> ServePending:
        self.service.note_call()
        return ServePending(
            self.service.handle.remote(self.method, args, kwargs, call_id), self.what, self.service
        )

    def submit_chunk(
        self, args_list: list[tuple[Any, ...]], kwargs: dict[str, Any], call_id: str, first: int
    ) -> ServePending:
        self.service.note_call()
        return ServePending(
            self._chunk.remote(self.method, args_list, kwargs, call_id, first),
            self.what,
            self.service,
        )

    def submit_pickled(self, blob: bytes, call_id: str) -> ServePending:
        """One call whose arguments and outcome stay pickled (see `_Replica.pickled`)."""
        self.service.note_call()
        handle = self.service.handle.options(method_name="pickled")
        return ServePending(handle.remote(self.method, blob, call_id), self.what, self.service)

    def submit_stream(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str
    ) -> ServeStream:
        self.service.note_call()
        stream = self._stream.remote(self.method, args, kwargs, call_id)
        return ServeStream(stream, self.what, self.service)


def _versioned(deployment: Any) -> Any:
    """`deployment` with the pools' fixed Serve version."""
    from ray.serve.deployment import Deployment

    return Deployment(
        deployment.name,
        deployment._deployment_config,
        deployment._replica_config,
        version=POOL_VERSION,
        _internal=True,
    )


def _deploy(spec: ServiceSpec, container: ContainerSpec) -> Any:
    """Deploy a new pool; returns its handle."""
    deployment = serve.deployment(_Replica, **_deployment_options(spec, container))
    return _run(_versioned(deployment).bind(container), spec)


def _attach(spec: ServiceSpec) -> Any | None:
    """A handle on the pool if it exists on the cluster (deployed by any process), else None."""
    try:
        return serve.get_app_handle(spec.name)
    except RayServeException:
        return None


def _run(app: Any, spec: ServiceSpec, route_prefix: str | None = None) -> Any:
    with warnings.catch_warnings():
        # Serve deprecates `metrics_interval_s`; it is still the only per-deployment knob.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return serve.run(app, name=spec.name, route_prefix=route_prefix, blocking=False)
        except rex.RayError as exc:
            raise translate(exc, f"the containers of {spec.tag}") from None
        except RuntimeError as exc:
            raise ExecutionError(f"Could not start the containers of {spec.tag}: {exc}") from None


def _release(handle: Any) -> None:
    """Stop a handle's router (its background tasks would call a Ray that may be shut down)
    and drop Serve's cached copies of it."""
    try:
        handle.shutdown()
    except Exception:
        pass
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client(raise_if_no_controller_running=False)
    except Exception:
        return
    if client is None:
        return
    for key in [
        k for k in client.handle_cache if k[:2] == (handle.deployment_name, handle.app_name)
    ]:
        client.handle_cache.pop(key, None)


def _resource_shortage(resources: Resources) -> list[tuple[str, str]]:
    """What a container of `resources` lacks on the cluster right now: (need, free) pairs."""
    free: Mapping[str, float] = ray.available_resources()  # type: ignore[no-untyped-call]
    total: Mapping[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    short: list[tuple[str, str]] = []

    def number(x: float) -> str:
        return f"{x:.3f}".rstrip("0").rstrip(".")

    if free.get("CPU", 0.0) + 1e-9 < resources.num_cpus:
        short.append(
            (
                f"{number(resources.num_cpus)} CPU",
                f"{number(free.get('CPU', 0.0))} of {number(total.get('CPU', 0.0))} CPUs",
            )
        )
    if resources.num_gpus and free.get("GPU", 0.0) + 1e-9 < resources.num_gpus:
        short.append(
            (
                f"{number(resources.num_gpus)} GPU",
                f"{number(free.get('GPU', 0.0))} of {number(total.get('GPU', 0.0))} GPUs",
            )
        )
    if resources.accelerator_type:
        key = f"accelerator_type:{resources.accelerator_type}"
        if free.get(key, 0.0) <= 0.0:
            short.append((f"a {resources.accelerator_type} GPU", f"no free {key}"))
    if resources.memory_bytes and free.get("memory", 0.0) < resources.memory_bytes:
        gib = 1024**3
        short.append(
            (
                f"{number(resources.memory_bytes / gib)} GiB of memory",
                f"{number(free.get('memory', 0.0) / gib)} GiB",
            )
        )
    return short


def _unplaced(app_name: str, resources: Resources) -> bool:
    """Is a replica of `app_name` waiting for the cluster to find room for it (not merely
    starting: a replica that has its resources may still be installing its environment)?"""
    from ray._private.state import state
    from ray.autoscaler.v2.sdk import get_cluster_status

    prefix = f"SERVE_REPLICA::{app_name}#"
    pending = state.actor_table(None, actor_state_name="PENDING_CREATION")  # type: ignore[no-untyped-call]
    if not any(str(a.get("Name", "")).startswith(prefix) for a in pending.values()):
        return False
    status = get_cluster_status(ray.get_runtime_context().gcs_address)
    shape = {"CPU": resources.num_cpus, "GPU": float(resources.num_gpus)}
    for demand in status.resource_demands.ray_task_actor_demand:
        for request in demand.bundles_by_count:
            bundle = request.bundle
            if all(abs(bundle.get(k, 0.0) - v) < 1e-6 for k, v in shape.items()):
                return True
    return False


class Service:
    """A Serve application for one container spec: deployed by this process, or attached to."""

    # After this long without a running replica, a waiting call is explained.
    PLACEMENT_GRACE_S = 2.0

    def __init__(self, spec: ServiceSpec, container: ContainerSpec) -> None:
        self.spec = spec
        self.container = container
        self._methods: dict[str, ServeMethod] = {}
        self._watch: threading.Thread | None = None
        self._seen_running = False
        self._last_call = 0.0
        self._stopped = False
        handle = _attach(spec)
        self.owner = handle is None
        if handle is None:
            # `serve.run` returns once a replica runs: watch the wait from the start.
            self._start_watch()
            handle = _deploy(spec, container)
        self.handle = handle

    @property
    def label(self) -> str:
        """How the user names this pool: `C(name='n2')`, or a function's name."""
        if not self.container.is_class:
            return self.spec.tag
        params = ", ".join(f"{k}={v!r}" for k, v in self.container.params.items())
        return f"{self.spec.tag}({params})"

    def update(
        self,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        scaledown_window: float | None = None,
    ) -> None:
        """New autoscaling bounds, applied in place: the running replicas stay.

        Whoever calls it (the pool's owner or a process attached to it), the pool is redeployed
        from the controller's own record of it (same replica config, same version), with only
        the autoscaling fields changed."""
        given = {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "scaledown_window": scaledown_window,
        }
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        self.spec = dataclasses.replace(self.spec, **changes)
        from ray.serve.context import _get_global_client
        from ray.serve.deployment import Application, Deployment

        name = _deployment_name(self.spec)
        try:
            client = _get_global_client()
            if client is None:
                raise RuntimeError("Serve is not running on this cluster")
            info, _ = client.get_deployment_info(name, self.spec.name)
        except Exception as exc:
            raise ExecutionError(
                f"Could not update the containers of {self.label}: the pool is gone ({exc})."
            ) from None
        current = info.deployment_config.autoscaling_config
        update: dict[str, Any] = {}
        if "min_replicas" in changes:
            update["min_replicas"] = self.spec.min_replicas
        if "max_replicas" in changes:
            update["max_replicas"] = max(self.spec.max_replicas, 1)
        if "scaledown_window" in changes:
            update["downscale_delay_s"] = self.spec.scaledown_window
            update["downscale_to_zero_delay_s"] = self.spec.scaledown_window
        low = update.get("min_replicas", current.min_replicas)
        high = max(update.get("max_replicas", current.max_replicas), low, 1)
        update["max_replicas"] = high
        initial = current.initial_replicas
        if initial is not None:
            update["initial_replicas"] = min(max(initial, low), high)
        deployment = Deployment(
            name, info.deployment_config, info.replica_config, _internal=True
        ).options(autoscaling_config=current.model_copy(update=update))
        self.handle = _run(Application(_versioned(deployment)), self.spec)
        for method in self._methods.values():
            method.rebind()

    def method(self, name: str) -> ServeMethod:
        m = self._methods.get(name)
        if m is None:
            m = self._methods[name] = ServeMethod(self, name)
        return m

    def replica_states(self) -> dict[str, int] | None:
        status = serve.status().applications.get(self.spec.name)
        if status is None:
            return None
        out: dict[str, int] = {}
        for d in status.deployments.values():
            for state, n in d.replica_states.items():
                out[str(state)] = out.get(str(state), 0) + int(n)
        return out

    def replica_count(self) -> int:
        return (self.replica_states() or {}).get("RUNNING", 0)

    # -- saying what a waiting call waits for ---------------------------------------------------

    def note_call(self) -> None:
        """A call is going in: if the pool may have no container (new, or idle for longer than
        its scaledown window), watch it until one runs, and explain a wait for resources."""
        now = time.monotonic()
        idle = now - self._last_call > self.spec.scaledown_window and self.spec.min_replicas == 0
        self._last_call = now
        if self._seen_running and not idle:
            return
        self._start_watch()

    def _start_watch(self) -> None:
        if self._watch is not None or self._stopped:
            return
        self._seen_running = False
        self._watch = threading.Thread(
            target=self._watch_placement, name=f"modal-ray-watch-{self.spec.tag}", daemon=True
        )
        self._watch.start()

    def _watch_placement(self) -> None:
        """Until a replica runs: after a grace period, say what the cluster lacks to place one."""
        start = time.monotonic()
        told: float | None = None
        seen = False
        try:
            resources = placed_resources(self.spec.resources, self.label)
            while not self._stopped and ray.is_initialized():
                states = self.replica_states()
                if states is None:
                    if seen or time.monotonic() - start > 60:
                        return  # deleted (or never created: the deploy failed)
                elif states.get("RUNNING", 0) > 0:
                    self._seen_running = True
                    if told is not None:
                        waited = time.monotonic() - start
                        _say(f"{self.label} got its container after {waited:.0f} s.")
                    return
                seen = seen or states is not None
                if (
                    told is None
                    and time.monotonic() - start >= self.PLACEMENT_GRACE_S
                    and _unplaced(self.spec.name, resources)
                ):
                    short = _resource_shortage(resources)
                    if short:
                        need = " and ".join(n for n, _ in short)
                        free = " and ".join(f for _, f in short)
                        _say(
                            f"{self.label} is waiting for {need}; the cluster has {free} free."
                            " Its container starts when running containers or tasks release"
                            " theirs (an idle container keeps its share for its"
                            " `scaledown_window`)."
                        )
                        told = time.monotonic()
                time.sleep(1.0)
        except Exception:
            return  # the cluster or Serve went away; nothing to explain any more
        finally:
            self._watch = None

    def close(self) -> None:
        self._stopped = True
        _release(self.handle)


def _say(message: str) -> None:
    """A line in the run's output (stderr), whether or not `modal.enable_output()` is on."""
    print(message, file=sys.stderr, flush=True)


_services: dict[str, Service] = {}


_create_lock = threading.Lock()


def _serve_running() -> bool:
    """Is a Serve controller up on this cluster (someone, e.g. a worker, started one)?"""
    try:
        ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    except ValueError:
        return False
    return True


def get_service(spec: ServiceSpec, container: ContainerSpec) -> Service:
    """The pool for `spec`: attached to if it exists on the cluster, else deployed (once per
    process either way)."""
    service = _services.get(spec.name)
    if service is not None and _serve_session == _session():
        return service
    with _create_lock:
        ensure_serve()
        service = _services.get(spec.name)
        if service is None:
            service = _services[spec.name] = Service(spec, container)
            prefix = run_prefix_of(spec.name)
            if prefix not in _watched_prefixes:
                _watched_prefixes.add(prefix)
                watch_driver(prefix)
    return service


_watched_prefixes: set[str] = set()


def stop_services(prefix: str, timeout: float = 60.0) -> None:
    """Delete every Serve application whose name starts with `prefix`, wait until gone, and let
    the last output of their containers (`@exit` hooks) reach this process first."""
    for name in [n for n in _services if n.startswith(prefix)]:
        _services.pop(name).close()
    if prefix in _watched_prefixes:
        _watched_prefixes.discard(prefix)
        unwatch_driver(prefix)
    if not ray.is_initialized():
        return
    from .web import close_routes  # web endpoints' origins (the gateway's ports)

    close_routes(prefix)
    try:
        if _serve_session == _session() or _serve_running():
            _delete_apps(prefix, timeout)
    finally:
        from . import logs

        logs.drain()


def _delete_apps(prefix: str, timeout: float) -> None:
    try:
        apps = [n for n in serve.status().applications if n.startswith(prefix)]
    except Exception:
        return
    for name in apps:
        serve.delete(name, _blocking=False)
    deadline = time.monotonic() + timeout
    while apps and time.monotonic() < deadline:
        remaining = set(serve.status().applications)
        apps = [n for n in apps if n in remaining]
        if apps:
            time.sleep(0.2)


# -- cleanup when the driver dies ----------------------------------------------------------------

JANITOR_NAME = "modal-ray-janitor"
JANITOR_NAMESPACE = "modal-ray-system"


@ray.remote(num_cpus=0, max_restarts=-1)
class _Janitor:
    """Deletes the container pools of app runs whose driver died without stopping them.

    An ephemeral app's pools are Serve applications, which Serve keeps alive on its own; a
    driver killed with SIGKILL never runs its cleanup. The janitor (one detached actor per
    cluster) watches each run's driver job and deletes the run's pools once the job is dead.
    """

    def __init__(self) -> None:
        # name prefix -> the driver jobs (hex ids) using the run's pools: the run's own driver,
        # and any other process that attached to them (e.g. one rebuilt from a record).
        self._watched: dict[str, set[str]] = {}
        self._task: asyncio.Task[None] | None = None

    async def watch(self, prefix: str, job_id: str) -> None:
        self._watched.setdefault(prefix, set()).add(job_id)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def unwatch(self, prefix: str) -> None:
        self._watched.pop(prefix, None)

    async def watching(self, prefix: str) -> list[str]:
        return sorted(self._watched.get(prefix, ()))

    async def sweep(self) -> list[str]:
        """One round: delete the pools of every run whose watching drivers are all dead; the
        prefixes deleted. A driver that exits while another still uses the pools leaves them."""
        jobs = ray._private.state.jobs()  # type: ignore[no-untyped-call]
        dead = {j["JobID"] for j in jobs if j.get("IsDead")}
        swept = []
        for prefix, watchers in list(self._watched.items()):
            if watchers <= dead:
                loop = asyncio.get_running_loop()
                try:
                    deployed = await loop.run_in_executor(None, _is_deployment, prefix)
                except Exception:
                    continue  # the registry did not answer: ask again next round
                if not deployed:
                    try:
                        kept = await loop.run_in_executor(None, _calls_unfinished, prefix)
                    except Exception:
                        continue  # the call keeper did not answer: ask again next round
                    if kept:
                        continue  # a detached run: its pools stay until its calls are done
                self._watched.pop(prefix, None)
                if deployed:
                    continue  # a deployed app's pools: the registry owns them, not a driver
                await asyncio.get_running_loop().run_in_executor(None, stop_services, prefix)
                swept.append(prefix)
        return swept

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            if not self._watched:
                continue
            try:
                await self.sweep()
            except Exception:
                logging.getLogger(__name__).exception("modal-ray janitor round failed")


def watch_driver(prefix: str) -> None:
    """Ask the cluster's janitor to delete `prefix`'s pools if this driver dies first."""
    from . import runtime

    if runtime.mode() == "embedded":
        return  # the whole Ray goes away with this process
    try:
        if _is_deployment(prefix):
            return  # deployments are never watched: they outlive every driver
    except Exception:
        pass  # the registry did not answer: watch, the janitor asks again before removing
    janitor = _Janitor.options(  # type: ignore[attr-defined]
        name=JANITOR_NAME, namespace=JANITOR_NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()
    job_id = ray.get_runtime_context().get_job_id()
    ray.get(janitor.watch.remote(prefix, job_id))


def _is_deployment(prefix: str) -> bool:
    from . import registry

    return registry.is_deployment(prefix)


def _calls_unfinished(prefix: str) -> bool:
    from . import call_keeper

    return call_keeper.busy(prefix)


def unwatch_driver(prefix: str) -> None:
    try:
        janitor = ray.get_actor(JANITOR_NAME, namespace=JANITOR_NAMESPACE)
    except ValueError:
        return
    janitor.unwatch.remote(prefix)
