"""`modal.Cls`: classes whose instances are pools of warm containers (Ray Serve deployments).

`@app.cls(...)` turns a class into a `Cls`. Calling it with parameters (`Model(size="xl")`) gives
an `Obj`; each distinct parameter set (and each `with_options` variant) is its own pool of
containers, deployed on first use. `obj.method` is a Function-shaped handle whose calls go to
that pool, so `.remote`, `.map`, `.spawn`, `.remote_gen`, retries and `.aio` all behave as for
`@app.function`. `obj.method.local(...)` runs on a local instance (with its `@enter` hooks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import sys
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import naming
from .exception import InvalidError, NotFoundError
from .function import Function
from .function_options import FunctionOptions
from .runtime.worker import Invocation
from .specs import FunctionSpec
from .synchronizer import dual
from .warn import deprecation

if TYPE_CHECKING:
    from .app import App
    from .run_context import RunContext

_PARAM_TYPES = (str, int, bool, bytes)
MAX_PARAMS_BYTES = 16 * 1024


@dataclasses.dataclass(frozen=True)
class _Param:
    name: str
    type: type
    default: Any
    init: bool


def parse_parameters(user_cls: type) -> dict[str, _Param]:
    """`name: str = modal.parameter(...)` fields, inherited from base classes (Modal 1.0.5)."""
    try:
        hints = typing.get_type_hints(user_cls)
    except Exception:
        hints = {}
    params: dict[str, _Param] = {}
    for klass in reversed(user_cls.__mro__):
        annotations = inspect.get_annotations(klass)
        for name, value in vars(klass).items():
            if not (isinstance(value, dataclasses.Field) and value.metadata.get("modal_parameter")):
                continue
            kind = hints.get(name, annotations.get(name))
            if kind not in _PARAM_TYPES:
                raise InvalidError(
                    f"Parameter {user_cls.__name__}.{name} has type {kind!r}: modal.parameter()"
                    " supports str, int, bool and bytes."
                )
            default = (
                value.default if value.default is not dataclasses.MISSING else dataclasses.MISSING
            )
            params[name] = _Param(name, kind, default, value.init)  # type: ignore[arg-type]
    return params


def _check_value(cls_name: str, param: _Param, value: Any) -> None:
    ok = type(value) is param.type or (param.type is int and type(value) is int)
    if not ok:
        raise InvalidError(
            f"Parameter {cls_name}.{param.name} expects {param.type.__name__}, got"
            f" {type(value).__name__} ({value!r})."
        )


def _method_options(user_cls: type) -> dict[str, dict[str, Any]]:
    """Methods marked with `@modal.method` / `@modal.batched` (and their options)."""
    out: dict[str, dict[str, Any]] = {}
    for klass in reversed(user_cls.__mro__):
        for name, value in vars(klass).items():
            opts = getattr(value, "_modal_options", None)
            if opts and (opts.get("method") or opts.get("batch_max_size")):
                out[name] = dict(opts)
    return out


class _MethodFunction(Function[..., Any]):
    """`obj.method`: calls go to the container pool of `obj`'s parameter set."""

    __module__ = "modal.cls"
    _served = True

    def __init__(self, obj: Obj, name: str, raw_f: Callable[..., Any], is_generator: bool) -> None:
        cls = obj._cls
        options = dataclasses.replace(cls._options, is_generator=is_generator)
        super().__init__(raw_f, options, cls._app, f"{cls._tag}.{name}")
        self._obj = obj
        self._method = name

    def __repr__(self) -> str:
        return f"Method({self._tag!r})"

    def _function_ref(self) -> Any:
        return self._obj._cls._function_ref()

    def _make_prepared(
        self, backend: Any, spec: FunctionSpec, invocation: Invocation, ctx: RunContext
    ) -> Any:
        return self._obj._service(backend, ctx).method(self._method)

    def _pool_options(self) -> FunctionOptions:
        """The live options of the class's pool, with this method's batching if it has one."""
        cls = self._obj._cls
        opts = cls._method_opts.get(self._method, {})
        if not opts.get("batch_max_size"):
            return cls._options
        return dataclasses.replace(
            cls._options,
            batch_max_size=opts["batch_max_size"],
            batch_wait_ms=opts.get("batch_wait_ms"),
        )

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the method in this process, on a local instance (its `@enter` hooks run once)."""
        return getattr(self._obj._local_instance(), self._method)(*args, **kwargs)

    def _modal_raw_object(self) -> Callable[..., Any]:
        return self._raw_f


class Obj:
    """An instance of a Modal class: one parameter set, one pool of containers."""

    __module__ = "modal.cls"

    def __init__(self, cls: Cls, params: dict[str, Any]) -> None:
        self._cls = cls
        self._params = params
        self._methods: dict[str, _MethodFunction] = {}
        self._local: Any = None
        self._service_handle: Any = None
        self._service_key: tuple[str, str] | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{self._cls._tag}({args})"

    def __getstate__(self) -> dict[str, Any]:
        return {"_cls": self._cls, "_params": self._params}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_cls"], state["_params"])  # type: ignore[misc]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        methods = self.__dict__.get("_methods")
        cls = self.__dict__.get("_cls")
        if methods is None or cls is None:
            raise AttributeError(name)
        if name in methods:
            return methods[name]
        opts = cls._method_opts.get(name)
        if opts is not None:
            raw = getattr(cls._user_cls, name)
            raw = getattr(raw, "raw_f", raw)
            is_gen = opts.get("is_generator")
            if is_gen is None:
                is_gen = inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw)
            fn = methods[name] = _MethodFunction(self, name, raw, bool(is_gen))
            return fn
        # Anything else (plain attributes, helpers) comes from a local instance, as in Modal.
        return getattr(self._local_instance(), name)

    def _local_instance(self) -> Any:
        if self._local is None:
            from .runtime.container import _hooks, instantiate

            obj = instantiate(self._cls._user_cls, self._params)
            for name, _snap in sorted(_hooks(type(obj), "enter"), key=lambda h: not h[1]):
                result = getattr(obj, name)()
                if inspect.isawaitable(result):
                    asyncio.run(result)  # type: ignore[arg-type]
            self._local = obj
        return self._local

    def _service(self, backend: Any, ctx: RunContext) -> Any:
        cls = self._cls
        name = naming.pool_name(ctx.environment, ctx.app_id, cls._tag, self._params, cls._variant)
        environment = ctx.environment
        if self._service_handle is not None and self._service_key == (name, environment):
            return self._service_handle
        batched = [m for m, o in cls._method_opts.items() if o.get("batch_max_size")]
        options = cls._options
        if batched:
            opts = cls._method_opts[batched[0]]
            options = dataclasses.replace(
                options, batch_max_size=opts["batch_max_size"], batch_wait_ms=opts["batch_wait_ms"]
            )
        service, container = options.build_container(
            name=name,
            tag=cls._tag,
            target=cls._function_ref(),
            is_class=True,
            params=self._params,
            ctx=ctx,
            batched_method=batched[0] if batched else None,
        )
        self._service_handle = backend.prepare_service(service, container)
        self._service_key = (name, environment)
        return self._service_handle

    @dual
    async def update_autoscaler(
        self,
        *,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: int | None = None,
    ) -> None:
        """Change the scaling of this parameter set's pool at runtime (applied in place)."""
        from .function import _service_changes

        changes = {
            "min_containers": min_containers,
            "max_containers": max_containers,
            "buffer_containers": buffer_containers,
            "scaledown_window": scaledown_window,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        cls = self._cls
        cls._options = cls._options.override(**changes)
        if self._service_handle is not None:
            service = self._service_handle
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: service.update(**_service_changes(changes))
            )


class Cls:
    """A Modal class: `@app.cls(...)` on a class with `@modal.method`s."""

    __module__ = "modal.cls"

    def __init__(
        self, user_cls: type, options: FunctionOptions, app: App | None, tag: str, variant: str = ""
    ) -> None:
        own_init = user_cls.__dict__.get("__init__")
        if own_init is not None:
            raise InvalidError(
                f"Modal classes cannot define a custom `__init__` (class {user_cls.__name__}):"
                " declare parameters with `name: str = modal.parameter()` and move setup into a"
                " `@modal.enter()` method."
            )
        self._user_cls = user_cls
        self._options = options
        self._app = app
        self._tag = tag
        self._variant = variant
        self._params = parse_parameters(user_cls)
        self._method_opts = _method_options(user_cls)
        batched = [m for m, o in self._method_opts.items() if o.get("batch_max_size")]
        if batched and len(self._method_opts) > 1:
            raise InvalidError(
                f"Class {user_cls.__name__} has a @modal.batched method ({batched[0]}), so it"
                " cannot have other @modal.method or @modal.batched methods."
            )
        self.__doc__ = user_cls.__doc__

    def __repr__(self) -> str:
        return f"Cls({self._tag!r})"

    def _modal_raw_object(self) -> type:
        return self._user_cls

    def _function_ref(self) -> Any:
        """By import when the module's attribute is this class (or a variant of it), a script
        run as `python app.py` included (see `FunctionRef`); else by value."""
        from .runtime.worker import FunctionRef, refuse_calls_during_import

        refuse_calls_during_import(f"Class {self._tag!r}")
        module_name = getattr(self._user_cls, "__module__", "") or ""
        module = sys.modules.get(module_name)
        qualname = self._user_cls.__qualname__
        if module is not None and not self._options.serialized and "<locals>" not in qualname:
            obj: Any = module
            for part in qualname.split("."):
                obj = getattr(obj, part, None)
            if isinstance(obj, Cls) and obj._user_cls is self._user_cls:
                include_source = self._options.include_source is not False
                ref = FunctionRef.locate(module, qualname, include_source)
                if ref is not None:
                    return ref
        return self._user_cls

    def __call__(self, *args: Any, **kwargs: Any) -> Obj:
        if args:
            raise InvalidError(
                f"{self._tag}(...) takes keyword arguments only (the class's modal.parameter()s)."
            )
        values: dict[str, Any] = {}
        for name, value in kwargs.items():
            param = self._params.get(name)
            if param is None or not param.init:
                known = ", ".join(p for p, v in self._params.items() if v.init) or "none"
                raise InvalidError(f"{self._tag} has no parameter {name!r} (parameters: {known}).")
            _check_value(self._tag, param, value)
            values[name] = value
        for name, param in self._params.items():
            if name not in values and param.init:
                if param.default is dataclasses.MISSING:
                    raise InvalidError(f"{self._tag}(...) is missing the parameter {name!r}.")
                values[name] = param.default
        if len(repr(values).encode()) > MAX_PARAMS_BYTES:
            raise InvalidError(f"The parameters of {self._tag} exceed Modal's 16 KiB limit.")
        return Obj(self, values)

    def __getattr__(self, name: str) -> Any:
        # Modal <0.73 let `MyCls.method.remote()` run on a parameterless instance.
        opts = self.__dict__.get("_method_opts")
        if opts is not None and name in opts:
            deprecation(
                "cls-method-without-instance",
                f"Calling `{self._tag}.{name}` without instantiating the class is deprecated;"
                f" use `{self._tag}().{name}`.",
            )
            return getattr(self(), name)
        raise AttributeError(f"Cls {self.__dict__.get('_tag')!r} has no attribute {name!r}")

    # -- variants --------------------------------------------------------------------------------

    def _derive(self, options: FunctionOptions, why: str) -> Cls:
        return Cls(self._user_cls, options, self._app, self._tag, f"{self._variant}|{why}")

    def with_options(
        self,
        *,
        cpu: float | tuple[float, float] | None = None,
        memory: int | tuple[int, int] | None = None,
        gpu: str | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Any = None,
        volumes: Mapping[Any, Any] = {},
        retries: Any = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: int | None = None,
        timeout: int | None = None,
        region: Any = None,
        cloud: str | None = None,
        routing_region: str | None = None,
        **deprecated: Any,
    ) -> Cls:
        """A copy with some options overridden: its own, independent pool of containers."""
        overrides = {k: v for k, v in locals().items() if k not in ("self", "deprecated")}
        overrides.update(deprecated)
        return self._derive(self._options.override(**overrides), repr(sorted(overrides.items())))

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Cls:
        """Override the input concurrency of each container."""
        options = self._options.override(
            max_inputs_concurrent=max_inputs, target_inputs=target_inputs
        )
        return self._derive(options, f"concurrency={max_inputs},{target_inputs}")

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Cls:
        """Override the dynamic batching of the class's batched method."""
        derived = self._derive(self._options, f"batching={max_batch_size},{wait_ms}")
        for opts in derived._method_opts.values():
            if opts.get("batch_max_size"):
                opts.update(batch_max_size=max_batch_size, batch_wait_ms=wait_ms)
        return derived

    # -- lookups and metadata ---------------------------------------------------------------------

    @staticmethod
    def from_name(
        app_name: str,
        name: str,
        *,
        version: int | None = None,
        environment_name: str | None = None,
        client: Any = None,
    ) -> Cls:
        raise NotFoundError(
            f"Cls.from_name({app_name!r}, {name!r}): deployed apps (`modal deploy`) are not"
            " supported by this version of modal-ray yet; run the app with `modal run` instead."
        )

    @property
    def object_id(self) -> str:
        return f"cs-{self._tag}"

    @property
    def client(self) -> None:
        return None

    @dual
    async def hydrate(self, client: Any = None) -> Cls:
        return self

    @dual
    async def get_dashboard_url(self) -> str:
        return ""


__all__ = ["Cls", "Obj"]
