"""Modal containers as Ray Serve deployments: one Serve application per class parameter set.

A replica is a container: `_Replica.__init__` builds the user's object and runs `@enter` hooks,
`__del__` (which Serve calls when it stops a replica) runs `@exit` hooks. Calls go through a
`DeploymentHandle`, never HTTP. Serve's autoscaler scales replicas between `min_containers` and
`max_containers` from the number of ongoing requests.

Serve applications are named `modal-<env>-<app_id>-<tag>-<hash>`; stopping an app deletes every
Serve application with its prefix, including ones that workers created for nested calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import ray
import ray.exceptions as rex
from ray import serve

from modal_ray.container import Container, ContainerSpec
from modal_ray.exception import ExecutionError
from modal_ray.specs import ServiceSpec
from modal_ray.synchronizer import get_loop

from .errors import translate
from .tasks import _upload_local_packages, drop_outcome, with_source

_serve_lock = threading.Lock()
_serve_started = False


class _Replica:
    """The Serve deployment class: one Modal container per replica."""

    async def __init__(self, spec: ContainerSpec) -> None:  # type: ignore[misc] # Serve awaits it
        from .runtime import keep_replica_on_loopback

        keep_replica_on_loopback()
        self._container = Container(spec)
        await self._container.start()

    async def __call__(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None
    ) -> Any:
        return await self._container.call(method, args, kwargs, call_id)

    async def chunk(
        self,
        method: str,
        args_list: list[tuple[Any, ...]],
        kwargs: dict[str, Any],
        call_id: str,
        first: int,
    ) -> tuple[list[Any], float]:
        return await self._container.call_chunk(method, args_list, kwargs, call_id, first)

    async def stream(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str
    ) -> AsyncIterator[Any]:
        async for item in self._container.call_stream(method, args, kwargs, call_id):
            yield item

    async def __del__(self) -> None:
        await self._container.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_serve() -> None:
    """Start Serve once (HTTP proxy on 127.0.0.1 only), or reuse the cluster's running Serve."""
    global _serve_started
    if _serve_started:
        return
    with _serve_lock:
        if _serve_started:
            return
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        serve.start(
            http_options={"host": "127.0.0.1", "port": _free_port()},
            logging_config={"enable_access_log": False, "log_level": "WARNING"},
        )
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        _serve_started = True


def _deployment_options(spec: ServiceSpec, container: ContainerSpec) -> dict[str, Any]:
    res = spec.resources
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
    min_replicas = spec.min_replicas
    max_replicas = max(spec.max_replicas, min_replicas, 1)
    autoscaling = {
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
    return {
        "name": spec.tag.replace(".", "_"),
        "ray_actor_options": actor,
        "max_ongoing_requests": spec.max_ongoing,
        "max_queued_requests": -1,
        "autoscaling_config": autoscaling,
        "graceful_shutdown_timeout_s": spec.exit_grace_s,
        "graceful_shutdown_wait_loop_s": 0.5,
        "logging_config": {"enable_access_log": False, "log_level": "WARNING"},
    }


class ServePending:
    """A call in flight on a deployment; the value is an outcome or a `RemoteFailure`."""

    __slots__ = ("_fut", "_resp", "what")

    def __init__(self, response: Any, what: str) -> None:
        self._resp = response
        self.what = what
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
        except rex.RayError as exc:
            raise translate(exc, self.what) from None

    def future(self) -> asyncio.Future[Any]:
        if self._fut is None:
            self._fut = asyncio.ensure_future(self._await())
        return self._fut

    async def result_async(self) -> Any:
        try:
            return await self.future()
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
    def __init__(self, response: Any, what: str) -> None:
        self._resp = response
        self.what = what

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._resp
        except rex.RayError as exc:
            raise translate(exc, self.what) from None

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for item in self._resp:
                yield item
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
        return ServePending(
            self.service.handle.remote(self.method, args, kwargs, call_id), self.what
        )

    def submit_chunk(
        self, args_list: list[tuple[Any, ...]], kwargs: dict[str, Any], call_id: str, first: int
    ) -> ServePending:
        return ServePending(
            self._chunk.remote(self.method, args_list, kwargs, call_id, first), self.what
        )

    def submit_stream(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str
    ) -> ServeStream:
        return ServeStream(self._stream.remote(self.method, args, kwargs, call_id), self.what)


class Service:
    """A running Serve application for one container spec."""

    def __init__(self, spec: ServiceSpec, container: ContainerSpec) -> None:
        self.spec = spec
        self.container = container
        self._methods: dict[str, ServeMethod] = {}
        ensure_serve()
        self._deploy()

    def update(self, **changes: Any) -> None:
        """New autoscaling bounds; Serve applies them in place (replicas keep running)."""
        self.spec = dataclasses.replace(self.spec, **changes)
        self._deploy()
        for method in self._methods.values():
            method.rebind()

    def _deploy(self) -> None:
        spec, container = self.spec, self.container
        deployment = serve.deployment(_Replica, **_deployment_options(spec, container))
        with warnings.catch_warnings():
            # Serve deprecates `metrics_interval_s`; it is still the only per-deployment knob.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                self.handle = serve.run(
                    deployment.bind(container),  # type: ignore[attr-defined]
                    name=spec.name,
                    route_prefix=None,
                    blocking=False,
                )
            except rex.RayError as exc:
                raise translate(exc, f"the containers of {spec.tag}") from None
            except RuntimeError as exc:
                raise ExecutionError(
                    f"Could not start the containers of {spec.tag}: {exc}"
                ) from None

    def method(self, name: str) -> ServeMethod:
        m = self._methods.get(name)
        if m is None:
            m = self._methods[name] = ServeMethod(self, name)
        return m

    def replica_count(self) -> int:
        status = serve.status().applications.get(self.spec.name)
        if status is None:
            return 0
        states = [d.replica_states for d in status.deployments.values()]
        return sum(int(s.get("RUNNING", 0)) for s in states)  # type: ignore[call-overload,misc]


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
    """The Serve application for `spec`, deployed on first use (once per process)."""
    service = _services.get(spec.name)
    if service is not None:
        return service
    with _create_lock:
        service = _services.get(spec.name)
        if service is None:
            service = _services[spec.name] = Service(spec, container)
            prefix = _run_prefix(spec.name)
            if prefix not in _watched_prefixes:
                _watched_prefixes.add(prefix)
                watch_driver(prefix)
    return service


_watched_prefixes: set[str] = set()


def _run_prefix(name: str) -> str:
    """`modal-<env>-<app_id>-` of a pool name (app ids are `ap-<hex>`)."""
    head, sep, _ = name.partition("-ap-")
    app_hex = name[len(head) + len(sep) :].split("-", 1)[0]
    return f"{head}-ap-{app_hex}-"


def stop_services(prefix: str, timeout: float = 60.0) -> None:
    """Delete every Serve application whose name starts with `prefix`, and wait until gone."""
    for name in [n for n in _services if n.startswith(prefix)]:
        _services.pop(name, None)
    if prefix in _watched_prefixes:
        _watched_prefixes.discard(prefix)
        unwatch_driver(prefix)
    if not ray.is_initialized():
        return
    if not _serve_started and not _serve_running():
        return
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
        self._watched: dict[str, str] = {}  # name prefix -> driver job id (hex)
        self._task: asyncio.Task[None] | None = None

    async def watch(self, prefix: str, job_id: str) -> None:
        self._watched[prefix] = job_id
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def unwatch(self, prefix: str) -> None:
        self._watched.pop(prefix, None)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            if not self._watched:
                continue
            try:
                jobs = ray._private.state.jobs()  # type: ignore[no-untyped-call]
                dead = {j["JobID"] for j in jobs if j.get("IsDead")}
                for prefix, job in list(self._watched.items()):
                    if job in dead:
                        self._watched.pop(prefix, None)
                        await asyncio.get_running_loop().run_in_executor(
                            None, stop_services, prefix
                        )
            except Exception:
                logging.getLogger(__name__).exception("modal-ray janitor round failed")


def watch_driver(prefix: str) -> None:
    """Ask the cluster's janitor to delete `prefix`'s pools if this driver dies first."""
    from . import runtime

    if runtime.mode() == "embedded":
        return  # the whole Ray goes away with this process
    janitor = _Janitor.options(  # type: ignore[attr-defined]
        name=JANITOR_NAME, namespace=JANITOR_NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()
    job_id = ray.get_runtime_context().get_job_id()
    ray.get(janitor.watch.remote(prefix, job_id))


def unwatch_driver(prefix: str) -> None:
    try:
        janitor = ray.get_actor(JANITOR_NAME, namespace=JANITOR_NAMESPACE)
    except ValueError:
        return
    janitor.unwatch.remote(prefix)
