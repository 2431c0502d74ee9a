"""`modal.App`: registers functions and entrypoints, and runs them as an ephemeral app.

`with app.run():` (or `modal run`) connects to Ray, marks the app running so its functions may be
called, and on exit cancels what it started that is still running (spawned calls, background
maps), as Modal stops an ephemeral app when its client leaves. Functions are prepared lazily, on
their first call, so starting an app costs only the Ray connection.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar, overload

from typing_extensions import ParamSpec, dataclass_transform

from modal_ray.exception import InvalidError, UnimplementedError

from . import config, naming, output
from .function import Function
from .function_options import FunctionOptions
from .partial_function import PartialFunction, parameter
from .run_context import RunContext, RunTasks, app_id_from_env
from .secret import Secret
from .synchronizer import DualContext, dual, dual_context, dual_static
from .warn import warn_once

P = ParamSpec("P")
R = TypeVar("R")
L = TypeVar("L")
C = TypeVar("C")


class FunctionDecorator(Protocol):
    """What `app.function(...)` returns: it keeps the decorated function's parameters and return
    type (`f.remote(3)` returns what `f` returns; an `async def`'s what it awaits to)."""

    @overload
    def __call__(self, f: PartialFunction[P, R, L], /) -> Function[P, R, L]: ...
    @overload
    def __call__(
        self, f: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Function[P, R, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, f: Callable[P, R], /) -> Function[P, R, R]: ...


class LocalEntrypoint:
    """A function run on the local machine by `modal run` (`@app.local_entrypoint()`)."""

    __module__ = "modal.app"

    def __init__(self, raw_f: Callable[..., Any], app: App, name: str) -> None:
        self.raw_f = raw_f
        self.app = app
        self.name = name
        self.__doc__ = raw_f.__doc__
        self.__wrapped__ = raw_f

    @property
    def info(self) -> Any:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw_f(*args, **kwargs)


class App:
    """A group of functions that run together (`modal run`) or are deployed together."""

    __module__ = "modal.app"

    _all_apps: weakref.WeakSet[App] = weakref.WeakSet()

    def __init__(
        self,
        name: str | None = None,
        *,
        tags: dict[str, str] | None = None,
        image: Any = None,
        secrets: Sequence[Secret] = [],
        volumes: Mapping[Any, Any] = {},
        include_source: bool = True,
        **deprecated: Any,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise InvalidError("App name must be a string.")
        if deprecated:
            raise InvalidError(
                f"Unknown App options: {', '.join(sorted(deprecated))}. Modal 1.x takes name, tags,"
                " image, secrets, volumes and include_source."
            )
        for s in secrets:
            if not isinstance(s, Secret):
                raise InvalidError(
                    f"`secrets=` takes modal.Secret objects, not {type(s).__name__}."
                )
        self._name = name
        self._tags = dict(tags or {})
        self._image = image
        self._secrets = list(secrets)
        self._volumes = dict(volumes)
        self._include_source = include_source
        self._functions: dict[str, Function[..., Any]] = {}
        self._classes: dict[str, Any] = {}
        self._entrypoints: dict[str, LocalEntrypoint] = {}
        self._web_endpoints: list[str] = []
        self._running = False
        self._environment = config.DEFAULT_ENVIRONMENT
        self._app_id: str | None = None
        self._description: str | None = name
        self._tasks = RunTasks()
        self._detach = False
        App._all_apps.add(self)

    def __repr__(self) -> str:
        return f"App({self._name!r})" if self._name else "App()"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tasks"] = None
        state["_running"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._tasks = RunTasks()

    def __getattr__(self, name: str) -> Any:
        # `app.my_function` looked up Modal 0.x style.
        functions = self.__dict__.get("_functions", {})
        if name in functions:
            return functions[name]
        raise AttributeError(f"'App' object has no attribute {name!r}")

    # -- properties -------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def app_id(self) -> str | None:
        return self._app_id

    @property
    def description(self) -> str | None:
        return self._description

    def set_description(self, description: str) -> None:
        self._description = description

    @property
    def image(self) -> Any:
        return self._image

    @image.setter
    def image(self, value: Any) -> None:
        self._image = value

    @property
    def registered_functions(self) -> dict[str, Function[..., Any]]:
        return dict(self._functions)

    @property
    def registered_classes(self) -> dict[str, Any]:
        return dict(self._classes)

    @property
    def registered_entrypoints(self) -> dict[str, LocalEntrypoint]:
        return dict(self._entrypoints)

    @property
    def registered_web_endpoints(self) -> list[str]:
        return [tag for tag, f in self._functions.items() if f._options.web is not None]

    @property
    def is_interactive(self) -> bool:
        return False

    @property
    def sandboxes(self) -> Any:
        raise UnimplementedError("Sandboxes are not supported by this version of modal-ray yet.")

    @property
    def logs(self) -> Any:
        raise UnimplementedError(
            "App logs stream to the terminal under `modal run`; use Ray's dashboard otherwise."
        )

    # -- registration ------------------------------------------------------------------------

    def function(
        self,
        _warn_parentheses_missing: Any = None,
        *,
        image: Any = None,
        schedule: Any = None,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Secret] | None = None,
        gpu: str | list[str] | None = None,
        serialized: bool = False,
        network_file_systems: dict[Any, Any] = {},  # noqa: B006
        volumes: dict[Any, Any] = {},  # noqa: B006
        cpu: float | tuple[float, float] | None = None,
        memory: int | tuple[int, int] | None = None,
        ephemeral_disk: int | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: int | None = None,
        proxy: Any = None,
        retries: Any = None,
        timeout: int = 300,
        startup_timeout: int | None = None,
        name: str | None = None,
        is_generator: bool | None = None,
        cloud: str | None = None,
        region: str | Sequence[str] | None = None,
        routing_region: str | None = None,
        nonpreemptible: bool = False,
        enable_memory_snapshot: bool = False,
        block_network: bool = False,
        restrict_modal_access: bool = False,
        single_use_containers: bool = False,
        i6pn: bool | None = None,
        include_source: bool | None = None,
        experimental_options: dict[str, Any] | None = None,
        _experimental_restrict_output: bool = False,
        max_inputs: int | None = None,
        # Deprecated spellings, still accepted with a warning:
        keep_warm: int | None = None,
        concurrency_limit: int | None = None,
        container_idle_timeout: int | None = None,
        allow_concurrent_inputs: int | None = None,
        _experimental_buffer_containers: int | None = None,
    ) -> FunctionDecorator:
        """Decorator that registers a Modal Function on this app."""
        options = _decorator_options("function", locals())

        def decorator(f: Any) -> Any:
            raw_f, partial_opts = _unwrap_partial(f)
            if isinstance(raw_f, Function):
                raise InvalidError(f"{raw_f!r} is already a Modal Function; decorate it only once.")
            if not callable(raw_f):
                raise InvalidError(
                    f"`@app.function` decorates a function, not {type(raw_f).__name__}."
                )
            if isinstance(raw_f, type):
                raise InvalidError(f"Use `@app.cls()` to decorate class {raw_f.__name__}.")
            kwargs = {**options, **partial_opts}
            tag = kwargs.pop("name", None) or raw_f.__qualname__
            kwargs["name"] = tag
            opts = FunctionOptions.from_decorator(raw_f, kwargs)
            fn: Function[..., Any] = Function(raw_f, opts, self, tag)
            if tag in self._functions and self._functions[tag].get_raw_f() is not raw_f:
                warn_once(
                    f"dup:{self._name}:{tag}",
                    f"App {self._name!r} already has a function {tag!r}; replacing it.",
                )
            self._functions[tag] = fn
            return fn

        return decorator  # type: ignore[return-value]

    def local_entrypoint(
        self, _warn_parentheses_missing: Any = None, *, name: str | None = None
    ) -> Callable[[Callable[..., Any]], LocalEntrypoint]:
        """Decorator for a function that `modal run` calls on the local machine."""
        if _warn_parentheses_missing is not None:
            raise InvalidError(
                "`@app.local_entrypoint` was used without parentheses;"
                " write `@app.local_entrypoint()`."
            )

        def decorator(f: Callable[..., Any]) -> LocalEntrypoint:
            tag = name or f.__qualname__
            entry = LocalEntrypoint(f, self, tag)
            self._entrypoints[tag] = entry
            return entry

        return decorator

    # For type checkers the decorated class stays itself (as in Modal): `C().m.remote(1)` has
    # `m`'s types. `dataclass_transform` makes `modal.parameter()` fields keyword arguments of
    # `C(...)` for checkers that apply it through a method call (pyright does; mypy does not).
    @dataclass_transform(field_specifiers=(parameter,), kw_only_default=True)
    def cls(
        self,
        _warn_parentheses_missing: Any = None,
        *,
        image: Any = None,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Secret] | None = None,
        gpu: str | list[str] | None = None,
        serialized: bool = False,
        network_file_systems: dict[Any, Any] = {},  # noqa: B006
        volumes: dict[Any, Any] = {},  # noqa: B006
        cpu: float | tuple[float, float] | None = None,
        memory: int | tuple[int, int] | None = None,
        ephemeral_disk: int | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: int | None = None,
        proxy: Any = None,
        retries: Any = None,
        timeout: int = 300,
        startup_timeout: int | None = None,
        cloud: str | None = None,
        region: str | Sequence[str] | None = None,
        routing_region: str | None = None,
        nonpreemptible: bool = False,
        enable_memory_snapshot: bool = False,
        block_network: bool = False,
        restrict_modal_access: bool = False,
        single_use_containers: bool = False,
        i6pn: bool | None = None,
        include_source: bool | None = None,
        experimental_options: dict[str, Any] | None = None,
        _experimental_restrict_output: bool = False,
        max_inputs: int | None = None,
        # Deprecated spellings, still accepted with a warning:
        keep_warm: int | None = None,
        concurrency_limit: int | None = None,
        container_idle_timeout: int | None = None,
        allow_concurrent_inputs: int | None = None,
        _experimental_buffer_containers: int | None = None,
    ) -> Callable[[type[C]], type[C]]:
        """Decorator that registers a Modal class: a pool of warm containers per parameter set."""
        options = _decorator_options("cls", locals())

        from .cls import Cls

        def decorator(user_cls: Any) -> Cls:
            raw, class_opts = _unwrap_partial(user_cls)
            if not isinstance(raw, type):
                raise InvalidError(f"`@app.cls` decorates a class, not {type(raw).__name__}.")
            kwargs = {**options, **class_opts}
            opts = FunctionOptions.from_decorator(raw, kwargs)
            tag = raw.__qualname__
            cls_obj = Cls(raw, opts, self, tag)
            self._classes[tag] = cls_obj
            return cls_obj

        return decorator  # type: ignore[return-value]

    def server(
        self,
        *,
        image: Any = None,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Secret] | None = None,
        gpu: str | list[str] | None = None,
        serialized: bool = False,
        volumes: dict[Any, Any] = {},  # noqa: B006
        cpu: float | tuple[float, float] | None = None,
        memory: int | tuple[int, int] | None = None,
        ephemeral_disk: int | None = None,
        target_concurrency: float | None = None,
        max_concurrency: int | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaleup_window: int | None = None,
        scaledown_window: int | None = None,
        startup_timeout: int = 30,
        name: str | None = None,
        port: int = 8000,
        unauthenticated: bool = False,
        h2_enabled: bool = False,
        exit_grace_period: int = 0,
        routing_region: str = "us-east",
        compute_region: str | Sequence[str] | None = None,
        cloud: str | None = None,
        nonpreemptible: bool = False,
        proxy: Any = None,
        i6pn: bool | None = None,
        enable_memory_snapshot: bool = False,
        include_source: bool | None = None,
        experimental_options: dict[str, Any] | None = None,
    ) -> Callable[[Any], Any]:
        """Decorator that registers a Modal Server (`modal.Server`): a class whose
        `@modal.enter` hooks start an HTTP server on `port`, served at its own URL."""
        options = {k: v for k, v in locals().items() if k != "self"}

        def decorator(user_cls: Any) -> Any:
            from .server import Server

            server = Server._from_decorator(self, user_cls, options)
            self.__dict__.setdefault("_servers", {})[server._tag] = server
            return server

        return decorator

    def include(self, other_app: App, inherit_tags: bool = True) -> App:
        """Add another app's functions and entrypoints to this one (later names win)."""
        for tag, fn in other_app._functions.items():
            self._functions[tag] = fn
            fn._app = self
        self._entrypoints.update(other_app._entrypoints)
        self._classes.update(other_app._classes)
        if inherit_tags:
            self._tags = {**other_app._tags, **self._tags}
        return self

    # -- running ---------------------------------------------------------------------------

    def run_context(self) -> RunContext:
        """The context this app's functions and classes run in (see `run_context`): this run's
        environment and id while the app runs; elsewhere (in a worker) the configured
        environment and the app id its driver handed down."""
        running = self._running
        return RunContext(
            environment=self._environment if running else config.environment_name(),
            app_id=self._app_id or app_id_from_env(),
            app_name=self._name,
            running=running,
            image=self._image,
            secrets=tuple(self._secrets),
            volumes=dict(self._volumes),
            include_source=self._include_source,
            tasks=self._tasks,
        )

    @dual_context
    def run(
        self,
        *,
        name: str | None = None,
        client: Any = None,
        detach: bool = False,
        interactive: bool = False,
        environment_name: str | None = None,
    ) -> DualContext[App]:
        """Run the app ephemerally for the duration of a `with` (or `async with`) block."""
        if interactive:
            warn_once("interactive", "Interactive mode is not supported on Ray; running normally.")
        if name is not None:
            self._description = name

        def connect_here() -> None:
            # Ray ties an embedded cluster to the thread that started it: start it on the
            # caller's thread (usually the main thread), never on a pool thread that exits first.
            from modal_ray.backends import get_backend

            get_backend().connect(config.environment_name(environment_name))

        async def enter() -> App:
            await self._start(detach, environment_name)
            return self

        async def exit_(ok: bool) -> None:
            await self._stop()

        return DualContext("App.run", enter, exit_, prepare=connect_here)

    async def _start(self, detach: bool, environment_name: str | None) -> None:
        from modal_ray.backends import get_backend

        if self._running:
            raise InvalidError(f"{self!r} is already running.")
        self._environment = config.environment_name(environment_name)
        await asyncio.get_running_loop().run_in_executor(
            None, get_backend().connect, self._environment
        )
        self._app_id = naming.new_app_id()
        self._detach = detach
        self._tasks.detached = detach
        self._running = True
        output.status(f"✓ Initialized app {self._app_id} on {get_backend().describe()}.")
        from .web import start_endpoints

        try:
            await start_endpoints(self)
        except BaseException:
            await self._stop()
            raise
        from .schedules import start_run_schedules

        start_run_schedules(self._tasks, self._functions, self._app_id)

    async def _stop(self) -> None:
        if not self._running:
            return
        detached_on_cluster = False
        try:
            await self._tasks.stop_schedules()
            if self._detach:
                # Background work must finish before this process may leave.
                await self._tasks.wait_all()
            else:
                await self._tasks.cancel_all()
            detached_on_cluster = await self._stop_kept()
        finally:
            from modal_ray.backends import get_backend

            from .host_files import release_run

            if detached_on_cluster:
                self._end_detached()
            else:
                # Container pools (Serve) of this run, including ones workers created: `@exit` runs.
                prefix = naming.run_prefix(self._environment, self._app_id)
                await asyncio.get_running_loop().run_in_executor(
                    None, get_backend().stop_services, prefix
                )
                # What this run's containers wrote into this machine's own filesystem goes now.
                await asyncio.get_running_loop().run_in_executor(None, release_run, self._app_id)
                self._running = False
                self._tasks.forget_prepared()
                self._tasks = RunTasks()
                output.status(f"✓ App {self._app_id} stopped.")

    async def _stop_kept(self) -> bool:
        """Stop the spawned calls the cluster keeps (`Backend.durable_calls`). Not detached:
        they are cancelled, with the calls they spawned, as Modal stops an ephemeral app's
        calls with it. Detached: they run on, and so do this run's container pools, which the
        cluster's janitor removes once this process is gone and the calls are done; True then."""
        from modal_ray.backends import get_backend

        backend = get_backend()
        if not backend.durable_calls():
            return False
        if not self._detach:
            app_id = self._app_id or naming.LOCAL_APP_ID
            await backend.cancel_app_calls(self._environment, app_id)
            return False
        return True

    def _end_detached(self) -> None:
        self._running = False
        self._tasks.forget_prepared()
        self._tasks = RunTasks()
        output.status(
            f"✓ App {self._app_id} detached: its spawned calls keep running on the cluster."
        )

    @dual
    async def deploy(
        self,
        *,
        name: str | None = None,
        environment_name: str | None = None,
        tag: str = "",
        client: Any = None,
        strategy: str = "rolling",
    ) -> App:
        """Deploy the app on the cluster (`MODAL_RAY_ADDRESS`): its functions and classes stay
        callable by name (`Function.from_name`, `Cls.from_name`) after this process exits."""
        from .deployment import deploy_app

        def start(environment: str, app_id: str, app_name: str) -> list[tuple[str, str, Any]]:
            # Deployed state: the functions' records name the deployment's id, and calls made
            # from this process after the deploy go to it.
            self._environment, self._app_id, self._name = environment, app_id, app_name
            self._running = True
            records: list[tuple[str, str, Any]]
            records = [(t, "function", f._record()) for t, f in self._functions.items()]
            records += [(t, "class", c._record()) for t, c in self._classes.items()]
            servers = self.__dict__.get("_servers", {})
            return records + [(t, "server", s._record()) for t, s in servers.items()]

        from .schedules import deploy_schedules

        schedules = deploy_schedules(self._functions)
        result = await deploy_app(name or self._name, environment_name, tag, start, schedules)
        output.status(
            f"✓ App {result.name!r} deployed: version {result.version}, id {result.app_id},"
            f" environment {result.environment!r}."
        )
        return self

    @dual
    async def stop(self, *, client: Any = None) -> None:
        await self._stop()

    @dual_static
    async def lookup(
        name: str,
        *,
        client: Any = None,
        environment_name: str | None = None,
        create_if_missing: bool = False,
    ) -> App:
        """Look up a deployed app by name (`create_if_missing`: deploy an empty one)."""
        from .deployment import lookup_app

        info = await lookup_app(name, environment_name, create_if_missing)
        app = App(info["name"])
        app._app_id = info["app_id"]
        app._environment = info["environment"]
        return app

    @dual
    async def get_tags(self, *, client: Any = None) -> dict[str, str]:
        return dict(self._tags)

    @dual
    async def set_tags(self, tags: Mapping[str, str], *, client: Any = None) -> None:
        self._tags.update(tags)

    @dual
    async def get_dashboard_url(self) -> str:
        return ""

    @dual
    async def info(self, refresh: bool = False) -> Any:
        from modal_ray.types import AppInfo

        return AppInfo(
            app_id=self._app_id, name=self._name, state="running" if self._running else "stopped"
        )

    @dual
    async def stats(self, *, since: Any = None, until: Any = None) -> Any:
        from modal_ray.types import AppStats

        return AppStats(num_functions=len(self._functions), num_running=self._tasks.num_prepared)


_DEPRECATED_KEYS = (
    "keep_warm",
    "concurrency_limit",
    "container_idle_timeout",
    "allow_concurrent_inputs",
    "_experimental_buffer_containers",
)


def _decorator_options(kind: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The keywords given to `@app.function` / `@app.cls`, deprecated ones only when set."""
    if arguments.get("_warn_parentheses_missing") is not None:
        raise InvalidError(f"`@app.{kind}` was used without parentheses; write `@app.{kind}()`.")
    skip = {"self", "_warn_parentheses_missing"}
    return {
        k: v
        for k, v in arguments.items()
        if k not in skip and not (k in _DEPRECATED_KEYS and v is None)
    }


def _unwrap_partial(f: Any) -> tuple[Any, dict[str, Any]]:
    """`@modal.concurrent` / `@modal.batched` leave options on a partial function."""
    opts = getattr(f, "_modal_options", None)
    raw = getattr(f, "raw_f", None)
    if opts is not None and raw is not None:
        return raw, dict(opts)
    return f, {}


__all__ = ["App", "LocalEntrypoint"]
