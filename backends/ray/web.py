"""Web endpoints on Ray Serve, each at the root of its own 127.0.0.1 origin.

An endpoint is a container pool like any other (`serve.Service` naming, autoscaling, run
cleanup), deployed with a Serve ASGI ingress: the replica starts the container, then
`serve_adapters.web.build_app` builds the endpoint's ASGI app from it. Serve's HTTP proxy (bound
to 127.0.0.1 by `ensure_serve`) routes `/<pool name>` to it. The gateway, one detached actor on
the head node (`serve_adapters.gateway.Gateway`), listens on one 127.0.0.1 port per endpoint
and forwards to that route; the URL of an endpoint is its gateway port.

`max_ongoing_requests` is the container's `@modal.concurrent(max_inputs=)` (1 by default, as on
Modal: more requests wait in Serve's queue or go to new replicas; a Server's `max_concurrency`).
A `web_server` or Server pool puts one replica per node, since its replicas listen on the same
port. A `@modal.sessioned()` Server's deployment routes with `session_router.StickySessionRouter`
(each session on one replica); the gateway keeps its session tokens.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Sequence
from typing import Any

import ray
import ray.exceptions as rex
from ray import serve

from modal_ray.exception import ExecutionError
from modal_ray.naming import run_prefix_of
from modal_ray.runtime.container import ContainerSpec
from modal_ray.serve_adapters.auth import TokenTable
from modal_ray.serve_adapters.gateway import Gateway
from modal_ray.serve_adapters.replica import Replica
from modal_ray.serve_adapters.web import WebEndpoint, build_routes
from modal_ray.specs import ServiceSpec

from . import serve as serve_backend
from .errors import translate

GATEWAY_NAME = "modal-ray-web-gateway"
GATEWAY_NAMESPACE = serve_backend.JANITOR_NAMESPACE


class _WebReplicaBase:
    """One container serving one web endpoint: Serve hosts the ASGI app (and its lifespan).

    Not a subclass of `serve._Replica`: `@serve.ingress` refuses a class with a `__call__`,
    inherited or not, so the handle methods are repeated here (`call` instead of `__call__`)."""

    async def __init__(  # type: ignore[misc]
        self, spec: ContainerSpec, endpoints: list[tuple[str, Any, str]]
    ) -> None:
        from .runtime import keep_replica_on_loopback

        keep_replica_on_loopback()
        self._replica = Replica(spec)
        self._endpoints = endpoints  # (sub-path, WebSpec, method) of each endpoint it serves
        await self._replica.start()

    async def __serve_build_asgi_app__(self) -> Any:
        return await build_routes(self._replica, self._endpoints, _verify_token)

    # `.remote` / `.map` / `.remote_gen` of the web function, through a DeploymentHandle (the
    # ingress's own `__call__` is the ASGI entry point).

    async def call(
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

    async def stream(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str
    ) -> AsyncIterator[Any]:
        async for item in self._replica.stream(method, args, kwargs, call_id):
            yield item

    async def __del__(self) -> None:
        await self._replica.stop()


_WebReplica = serve.ingress()(_WebReplicaBase)


class _WebMethod(serve_backend.ServeMethod):
    """Calls of a web function's own code on its endpoint's replicas."""

    def rebind(self) -> None:
        super().rebind()
        self._call = self.service.handle.options(method_name="call")

    def submit(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None = None
    ) -> serve_backend.ServePending:
        self.service.note_call()
        return serve_backend.ServePending(
            self._call.remote(self.method, args, kwargs, call_id), self.what
        )


class WebService(serve_backend.Service):
    """A web endpoint's pool seen as a container pool (for `.remote` and friends): only ever
    attached to; the endpoint is deployed by `serve_web` while its app runs."""

    def __init__(self, spec: ServiceSpec, container: ContainerSpec) -> None:
        if serve_backend._attach(spec) is None:
            raise ExecutionError(
                f"Web endpoint {spec.tag!r} is not being served: its app is not running."
            )
        super().__init__(spec, container)

    def method(self, name: str) -> serve_backend.ServeMethod:
        m = self._methods.get(name)
        if m is None:
            m = self._methods[name] = _WebMethod(self, name)
        return m


def web_service(spec: ServiceSpec, container: ContainerSpec) -> WebService:
    """The web endpoint's pool, attached to (once per process)."""
    service = serve_backend._services.get(spec.name)
    if isinstance(service, WebService) and serve_backend._serve_session == serve_backend._session():
        return service
    with serve_backend._create_lock:
        serve_backend.ensure_serve()
        service = serve_backend._services.get(spec.name)
        if not isinstance(service, WebService):
            service = serve_backend._services[spec.name] = WebService(spec, container)
    return service


@ray.remote(num_cpus=0, max_restarts=-1)
class _GatewayActor:
    """Hosts the gateway's listeners (see `serve_adapters.gateway`)."""

    def __init__(self) -> None:
        self._gateway = Gateway()

    async def open(
        self,
        key: str,
        upstream: str,
        label: str,
        port: int | None = None,
        session_header: str | None = None,
    ) -> str:
        return await self._gateway.open(key, upstream, label, port, session_header)

    async def session_call(self, method: str, key: str, arg: Any) -> Any:
        if method == "start":
            return self._gateway.session_start(key, float(arg))
        if method == "terminate":
            return self._gateway.session_terminate(key, str(arg))
        raise ValueError(f"unknown session operation {method!r}")

    async def close_prefix(self, prefix: str) -> list[str]:
        return await self._gateway.close_prefix(prefix)

    async def url(self, key: str) -> str | None:
        return self._gateway.url(key)

    async def routes(self) -> dict[str, str]:
        return self._gateway.routes()


# -- proxy auth tokens: one table per cluster, persisted in the state store ----------------------

TOKENS_NAME = "modal-ray-proxy-tokens"


@ray.remote(num_cpus=0, max_restarts=-1)
class _TokenActor:
    """The cluster's proxy tokens (`serve_adapters.auth.TokenTable`), kept in `path` (0600).

    The file in the state store is the table: every operation first reloads it when it changed
    (another Ray on the same store, such as the embedded one of a `modal workspace
    proxy-tokens` command next to an embedded `modal serve`, created or revoked a token), and
    a change is read, made and saved under a lock on the file, so neither loses the other's."""

    def __init__(self, path: str) -> None:
        from pathlib import Path

        self._path = Path(path)
        self._seen: tuple[int, int, int] | None = None
        self._table = TokenTable({})
        self._reload()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size  # each save is a new file (os.replace)

    def _reload(self) -> None:
        from modal_ray.state import read_json

        stamp = self._stamp()
        if stamp != self._seen:
            self._table = TokenTable(read_json(self._path) if stamp is not None else {})
            self._seen = stamp

    def _save(self) -> None:
        from modal_ray.state import write_json_private

        write_json_private(self._path, self._table.records)
        self._seen = self._stamp()

    def call(self, method: str, args: tuple[Any, ...]) -> Any:
        import fcntl

        if method not in ("create", "list", "revoke", "delete", "verify"):
            raise ValueError(f"unknown proxy token operation {method!r}")
        if method in ("verify", "list"):
            self._reload()
            return getattr(self._table, method)(*args)
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(f"{self._path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._reload()
            result = getattr(self._table, method)(*args)
            self._save()
        return result


def _tokens() -> Any:
    from modal_ray import config

    return _TokenActor.options(  # type: ignore[attr-defined]
        name=TOKENS_NAME,
        namespace=GATEWAY_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        resources={"node:__internal_head__": 0.001},
    ).remote(str(config.state_root() / "proxy-tokens.json"))


def proxy_token_call(method: str, args: tuple[Any, ...]) -> Any:
    """One operation on the cluster's proxy tokens (`TokenTable` method)."""
    return ray.get(_tokens().call.remote(method, args))


async def _verify_token(token_id: str, secret: str) -> bool:
    """In a replica: is this proxy token valid? No table on this cluster yet: this makes it
    from the state store, where a `modal workspace proxy-tokens` command running on its own
    Ray (next to an embedded `modal serve`) may have put tokens."""
    try:
        actor = ray.get_actor(TOKENS_NAME, namespace=GATEWAY_NAMESPACE)
    except ValueError:
        actor = await asyncio.get_running_loop().run_in_executor(None, _tokens)
    return bool(await actor.call.remote("verify", (token_id, secret)))


def _gateway(create: bool = True) -> Any:
    if not create:
        try:
            return ray.get_actor(GATEWAY_NAME, namespace=GATEWAY_NAMESPACE)
        except ValueError:
            return None
    return _GatewayActor.options(  # type: ignore[attr-defined]
        name=GATEWAY_NAME,
        namespace=GATEWAY_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        # On the head node, where Serve's proxy and the cluster's users are.
        resources={"node:__internal_head__": 0.001},
    ).remote()


def _serve_port() -> int:
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise ExecutionError("Ray Serve is not running on this cluster.")
    return int(client.http_config.port)


def route_prefix(spec: ServiceSpec) -> str:
    return "/" + spec.name


def serve_web(endpoints: Sequence[WebEndpoint]) -> list[str]:
    """Deploy (or attach to) the pools of `endpoints` and open their origins; their URLs.

    New pools are deployed in one `serve.run_many`, under the lock that serializes this
    process's deployments: Serve pickles each deployment's router config by registering a
    module for pickling by value, and two deployments at once from one process can ship a
    by-value copy of the router class that Serve's proxy then fails to instantiate."""
    from ray.serve.api import RunTarget

    serve_backend.ensure_serve()
    pools: dict[str, list[WebEndpoint]] = {}  # a class's web methods share one pool
    for e in endpoints:
        pools.setdefault(e.service.name, []).append(e)
    targets = []
    for group in pools.values():
        e = group[0]
        if serve_backend._attach(e.service) is not None:
            continue
        options = serve_backend._deployment_options(e.service, e.container)
        options["max_ongoing_requests"] = max(1, e.container.max_inputs)
        if any(x.web.kind in ("web_server", "server") for x in group):
            options["max_replicas_per_node"] = 1  # its replicas listen on the same port
        if any(x.web.sessioned for x in group):
            options["request_router_config"] = _sticky_router()
        deployment = serve_backend._versioned(serve.deployment(_WebReplica, **options))
        app = deployment.bind(e.container, [(x.sub, x.web, x.method) for x in group])
        targets.append(
            RunTarget(target=app, name=e.service.name, route_prefix=route_prefix(e.service))
        )
    with serve_backend._create_lock:
        if targets:
            with warnings.catch_warnings():
                # Serve deprecates `metrics_interval_s`; it is still the only per-deployment knob.
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                try:
                    serve.run_many(targets)
                except rex.RayError as exc:
                    raise translate(exc, "the web endpoints' containers") from None
                except RuntimeError as exc:
                    raise ExecutionError(
                        f"Could not start the web endpoints' containers: {exc}"
                    ) from None
        for e in endpoints:
            prefix = run_prefix_of(e.service.name)
            if prefix not in serve_backend._watched_prefixes:
                serve_backend._watched_prefixes.add(prefix)
                serve_backend.watch_driver(prefix)
    port = _serve_port()
    gateway = _gateway()
    refs = []
    for e in endpoints:
        upstream = f"http://127.0.0.1:{port}{route_prefix(e.service)}"
        if e.sub:
            upstream += f"/{e.sub}"
        header = _session_header() if e.web.sessioned else None
        refs.append(gateway.open.remote(e.key, upstream, e.label, e.port, header))
    urls: list[str] = ray.get(refs)
    return urls


# -- sticky sessions of `@modal.sessioned()` Servers (`serve_adapters.sessions`) ----------------


def _sticky_router() -> Any:
    """Serve's router config for a sessioned Server: each session stays on one replica. Named
    by path, so Serve's proxy imports it (no copy of the class pickled by value)."""
    from ray.serve.config import RequestRouterConfig

    path = "modal_ray.backends.ray.session_router.StickySessionRouter"
    # Ray's pydantic-v1 shim types this field wrongly for mypy; it takes a dotted path.
    return RequestRouterConfig(request_router_class=path)  # type: ignore[arg-type]


def _session_header() -> str:
    """The header Serve's proxy reads a request's session id from (cluster-wide setting)."""
    from ray.serve._private.constants import SERVE_SESSION_ID

    return str(SERVE_SESSION_ID)


def server_session(key: str, method: str, arg: Any) -> Any:
    """`start` (arg: idle timeout; the new token) or `terminate` (arg: token; whether it was
    live) a sticky session of the sessioned Server served under `key`. `start` gives None when
    the Server is not being served."""
    gateway = _gateway(create=False)
    if gateway is None:
        return None if method == "start" else False
    return ray.get(gateway.session_call.remote(method, key, arg))


def web_url(key: str) -> str | None:
    gateway = _gateway(create=False)
    if gateway is None:
        return None
    url: str | None = ray.get(gateway.url.remote(key))
    return url


def close_routes(prefix: str) -> None:
    """Stop listening for the endpoints whose pool names start with `prefix`."""
    if not ray.is_initialized():
        return
    gateway = _gateway(create=False)
    if gateway is None:
        return
    try:
        ray.get(gateway.close_prefix.remote(prefix), timeout=30)
    except Exception:
        pass


__all__ = ["close_routes", "proxy_token_call", "serve_web", "server_session", "web_url"]
