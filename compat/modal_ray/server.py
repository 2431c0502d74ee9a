"""`modal.Server` (`@app.server(port=...)`): a class whose `@modal.enter` hooks start an HTTP
server, served at the root of its own origin.

A Server is a container pool like a class's (`Cls`, with no methods and no parameters) whose
web endpoint forwards every request and websocket to `port` inside the container
(`serve_adapters.web.StartingServer`). While a container's server is not listening yet it
answers 503 with `Retry-After`, as Modal does while a Server starts. Unlike a function's
endpoint, a Server container takes many requests at once (`max_concurrency`, default
`DEFAULT_MAX_CONCURRENCY`) and scales on `target_concurrency` requests per container; it
requires proxy auth (`Modal-Key` / `Modal-Secret`) unless `unauthenticated=True`. Under
`@modal.sessioned()` it takes only requests of live sticky sessions (`Server.sessions`,
`server_sessions`), each session's requests on one container.

Its pool and URL follow the app: started with the app's other web endpoints
(`web.start_endpoints`), removed when the app stops; `get_url()` works in the running app's
process and, through the gateway, anywhere on the cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modal_ray.exception import InvalidError, UnimplementedError

from . import config
from .synchronizer import dual
from .warn import warn_once

if TYPE_CHECKING:
    from modal_ray.serve_adapters.web import WebSpec

    from .app import App
    from .cls import Cls
    from .records import ClassRecord, PoolSpec
    from .server_sessions import ServerSessions
    from .specs import FunctionSpec

# Requests one Server container takes at once when `max_concurrency=` is not given.
DEFAULT_MAX_CONCURRENCY = 100

# `@app.server` keywords with no effect on Ray, and why.
_NO_EFFECT = {
    "h2_enabled": "the gateway speaks HTTP/1.1 to the server",
    "compute_region": "Ray places containers on the cluster's own nodes",
    "scaleup_window": "Ray Serve scales up after half a second of load",
}


@dataclass(frozen=True, slots=True)
class ServerAutoscalerSettings:
    """A Server's autoscaler settings (`Server.autoscaler`, `update_autoscaler`)."""

    __module__ = "modal.types"

    target_concurrency: float | None = None
    min_containers: int | None = None
    max_containers: int | None = None
    buffer_containers: int | None = None
    scaleup_window: int | None = None
    scaledown_window: int | None = None


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """What a deployment registers for a Server: its class's record and what it serves."""

    cls: ClassRecord
    web: WebSpec
    settings: ServerAutoscalerSettings

    @property
    def pool(self) -> PoolSpec:
        return self.cls.pool

    @property
    def spec(self) -> FunctionSpec:
        return self.cls.spec


def _check_count(name: str, value: Any, low: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise InvalidError(f"Invalid {name}={value!r}: expected an int of at least {low}.")


class Server:
    """An HTTP server in a pool of containers, started by the class's `@modal.enter` hooks."""

    __module__ = "modal.server"

    _label = "Server"

    def __init__(
        self,
        cls: Cls | None,
        web: WebSpec | None,
        settings: ServerAutoscalerSettings | None,
        *,
        sessioned: bool = False,
    ) -> None:
        self._cls_or_none = cls
        self._web_or_none = web
        self._settings_or_none = settings
        self._sessioned = sessioned
        self._url: str | None = None  # set while this process runs the server's app
        self._lookup: Callable[[], tuple[Any, str]] | None = None
        self._object_id: str | None = None

    # A Server looked up by name is filled in on first use (as Modal hydrates it).

    def _fill(self) -> None:
        lookup = self._lookup
        if lookup is None:
            return
        record, object_id = lookup()
        if not isinstance(record, ServerRecord):
            raise InvalidError(f"{self._label} is not a Server.")
        from .cls import Cls

        self._cls_or_none = Cls._from_record(record.cls)
        self._web_or_none = record.web
        self._settings_or_none = record.settings
        self._object_id = object_id
        self._lookup = None

    @property
    def _cls(self) -> Cls:
        self._fill()
        assert self._cls_or_none is not None
        return self._cls_or_none

    @property
    def _web(self) -> WebSpec:
        self._fill()
        assert self._web_or_none is not None
        return self._web_or_none

    @property
    def _settings(self) -> ServerAutoscalerSettings:
        self._fill()
        assert self._settings_or_none is not None
        return self._settings_or_none

    @_settings.setter
    def _settings(self, value: ServerAutoscalerSettings) -> None:
        self._settings_or_none = value

    def _record(self) -> ServerRecord:
        """What a deployment registers for this Server."""
        return ServerRecord(self._cls._record(), self._web, self._settings)

    @classmethod
    def _from_decorator(cls, app: App, decorated: Any, kwargs: dict[str, Any]) -> Server:
        """`@app.server(**kwargs)` on a class (possibly under `@modal.sessioned()` or
        `@modal.concurrent(...)`)."""
        from modal_ray.serve_adapters.web import WebSpec

        from .cls import Cls
        from .function_options import FunctionOptions

        user_cls = getattr(decorated, "raw_f", decorated)
        marks = dict(getattr(decorated, "_modal_options", None) or {})
        if not isinstance(user_cls, type):
            raise InvalidError(f"`@app.server` decorates a class, not {type(user_cls).__name__}.")
        sessioned = bool(marks.pop("sessioned", False))
        kw = dict(kwargs)
        # `@modal.concurrent(max_inputs=, target_inputs=)` on the class: Modal's older spelling.
        if kw.get("max_concurrency") is None:
            kw["max_concurrency"] = marks.pop("max_inputs_concurrent", None)
        if kw.get("target_concurrency") is None:
            kw["target_concurrency"] = marks.pop("target_inputs", None)
        marks = {k: v for k, v in marks.items() if v is not None}
        if marks:
            raise InvalidError(
                f"Server {user_cls.__qualname__}: decorators with options"
                f" {', '.join(sorted(marks))} do not apply to a Server."
            )
        if kw.get("routing_region") == "us-east":
            kw.pop("routing_region")  # the default: nothing asked for
        port = kw.pop("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidError(f"`@app.server` needs a port number (1-65535), not {port!r}.")
        startup_timeout = kw.pop("startup_timeout")
        if isinstance(startup_timeout, bool) or not isinstance(startup_timeout, int | float):
            raise InvalidError("`startup_timeout=` takes seconds as a number.")
        if startup_timeout <= 0:
            raise InvalidError(f"`startup_timeout` must be positive, not {startup_timeout!r}.")
        target = kw.pop("target_concurrency")
        max_concurrency = kw.pop("max_concurrency")
        _check_count("max_concurrency", max_concurrency, 1)
        for name in ("min_containers", "max_containers", "buffer_containers"):
            _check_count(name, kw.get(name), 0 if name != "max_containers" else 1)
        if target is not None and (
            isinstance(target, bool) or not isinstance(target, int | float) or target <= 0
        ):
            raise InvalidError(f"Invalid target_concurrency={target!r}: expected a number > 0.")
        unauthenticated = bool(kw.pop("unauthenticated"))
        exit_grace = kw.pop("exit_grace_period")
        _check_count("exit_grace_period", exit_grace, 0)
        scaleup_window = kw.get("scaleup_window")  # kept only for `autoscaler`
        for name, why in _NO_EFFECT.items():
            if kw.pop(name, None) not in (None, False):
                warn_once(f"server:{name}", f"`{name}=` has no effect on Ray: {why}.")
        tag = kw.pop("name") or user_cls.__qualname__
        if [n for n, v in vars(user_cls).items() if getattr(v, "_modal_options", {}).get("web")]:
            raise InvalidError(
                f"Server {tag}: web endpoint decorators do not apply to a Server's methods; the"
                " server started by its `@modal.enter` hooks answers every request."
            )
        max_inputs = max_concurrency or DEFAULT_MAX_CONCURRENCY
        options = FunctionOptions.from_decorator(
            user_cls,
            {**kw, "max_inputs_concurrent": max_inputs, "target_inputs": target or max_inputs},
        )
        web = WebSpec(
            kind="server",
            port=port,
            startup_timeout=float(startup_timeout),
            requires_proxy_auth=not unauthenticated,
            sessioned=sessioned,
        )
        settings = ServerAutoscalerSettings(
            target_concurrency=float(target) if target is not None else None,
            min_containers=kw.get("min_containers"),
            max_containers=kw.get("max_containers"),
            buffer_containers=kw.get("buffer_containers"),
            scaleup_window=scaleup_window,
            scaledown_window=kw.get("scaledown_window"),
        )
        return cls(Cls(user_cls, options, app, tag), web, settings, sessioned=sessioned)

    def __repr__(self) -> str:
        if self._lookup is not None:
            return f"Server.from_name({self._label})"
        return f"Server({self._tag!r})"

    @property
    def _tag(self) -> str:
        return self._cls._tag

    def _modal_raw_object(self) -> type:
        """The user's class, which a container imports where this Server was defined."""
        return self._cls._user_cls

    def _pool(self) -> PoolSpec:
        """The pool of this server in its app's run (or deployment)."""
        return self._cls._record().pool_for({})

    # -- Modal's surface ----------------------------------------------------------------------

    @property
    def object_id(self) -> str:
        self._fill()
        return self._object_id or f"sv-{self._tag}"

    @dual
    async def get_url(self) -> str | None:
        """The URL of the server: the root of its own origin."""
        if self._url is not None:
            return self._url
        from modal_ray.backends import get_backend

        ctx = self._cls._run_context()
        if not ctx.running and not ctx.app_id:
            return None
        name = self._pool().service.name
        backend = get_backend()
        backend.connect(ctx.environment)
        return await asyncio.get_running_loop().run_in_executor(None, backend.web_url, name)

    @dual
    async def hydrate(self, client: Any = None) -> Server:
        """Look the Server up now (a Server from `from_name` is otherwise looked up on first
        use); `NotFoundError` if its app or the Server is not deployed."""
        await asyncio.get_running_loop().run_in_executor(None, self._fill)
        return self

    @property
    def autoscaler(self) -> ServerAutoscalerSettings:
        """The current autoscaler settings (from the decorator and `update_autoscaler`)."""
        return self._settings

    @dual
    async def update_autoscaler(
        self,
        *,
        target_concurrency: float | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaleup_window: int | None = None,
        scaledown_window: int | None = None,
    ) -> ServerAutoscalerSettings:
        """Override the autoscaler of this Server's running pool; unspecified settings keep
        their value. The new bounds apply in place (running containers stay)."""
        from dataclasses import replace

        from modal_ray.backends import get_backend

        from .function import _service_changes

        for name, value, low in (
            ("min_containers", min_containers, 0),
            ("max_containers", max_containers, 1),
            ("buffer_containers", buffer_containers, 0),
            ("scaledown_window", scaledown_window, 1),
        ):
            _check_count(name, value, low)
        if target_concurrency is not None:
            warn_once(
                "server:update-target",
                "`target_concurrency=` of a running Server cannot change on Ray (Serve fixes it"
                " when the pool is made); the other settings apply.",
            )
        if scaleup_window is not None:
            warn_once("server:scaleup_window", f"`scaleup_window=` {_NO_EFFECT['scaleup_window']}.")
        changes = {
            "min_containers": min_containers,
            "max_containers": max_containers,
            "scaledown_window": scaledown_window,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        given = {**changes, "buffer_containers": buffer_containers}
        self._settings = replace(
            self._settings, **{k: v for k, v in given.items() if v is not None}
        )
        if changes:
            pool = self._pool()
            backend = get_backend()
            backend.connect(self._cls._run_context().environment)

            def apply() -> None:
                service = backend.prepare_web_service(pool.service, pool.container)
                service.update(**_service_changes(changes))

            await asyncio.get_running_loop().run_in_executor(None, apply)
        return self._settings

    @classmethod
    def from_name(
        cls,
        app_name: str,
        name: str,
        *,
        environment_name: str | None = None,
        client: Any = None,
    ) -> Server:
        """The Server `name` of the deployed app `app_name` (looked up on first use)."""
        from .deployment import NamedLookup

        if environment_name:
            config.environment_name(environment_name)  # a bad name fails here, not later
        server = cls(None, None, None)
        server._lookup = NamedLookup(app_name, name, "server", environment_name)
        server._label = f"{app_name}.{name}"
        return server

    @classmethod
    def from_id(cls, server_id: str, *, client: Any = None) -> Server:
        raise UnimplementedError(
            "`modal.Server.from_id` is not supported by modal-ray yet; use"
            " `modal.Server.from_name(app_name, name)`."
        )

    def _platform_only(self, what: str) -> Any:
        raise UnimplementedError(
            f"`Server.{what}` is a Modal platform feature that modal-ray does not provide: the"
            " server's output goes to the app's terminal, and Ray's dashboard has its metrics."
        )

    @dual
    async def info(self, *, refresh: bool = False) -> Any:
        return self._platform_only("info")

    @dual
    async def stats(self, *, since: Any = None, until: Any = None, container: Any = None) -> Any:
        return self._platform_only("stats")

    @property
    def logs(self) -> Any:
        return self._platform_only("logs")

    @property
    def metrics(self) -> Any:
        return self._platform_only("metrics")

    @property
    def sessions(self) -> ServerSessions:
        """Start and terminate sticky sessions of a `@modal.sessioned()` Server."""
        from .server_sessions import ServerSessions

        return ServerSessions(self)


__all__ = ["DEFAULT_MAX_CONCURRENCY", "Server", "ServerAutoscalerSettings", "ServerRecord"]
