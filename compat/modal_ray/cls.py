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
import threading
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import config, context
from .exception import ExecutionError, InvalidError
from .freshness import PoolGoneError, follow
from .function import Function
from .function_options import FunctionOptions
from .records import (
    AppIdentity,
    ClassRecord,
    DeferredLookup,
    FunctionRecord,
    MethodSpec,
    ParameterSpec,
    stand_in_class,
)
from .run_context import worker_context
from .synchronizer import dual
from .warn import deprecation

if TYPE_CHECKING:
    from modal_ray.backends import Backend, Prepared, PreparedService

    from .app import App
    from .freshness import Watch
    from .run_context import RunContext

_PARAM_TYPES = (str, int, bool, bytes)
MAX_PARAMS_BYTES = 16 * 1024


def parse_parameters(user_cls: type) -> dict[str, ParameterSpec]:
    """`name: str = modal.parameter(...)` fields, inherited from base classes (Modal 1.0.5): the
    class's parameter schema, which its record carries."""
    try:
        hints = typing.get_type_hints(user_cls)
    except Exception:
        hints = {}
    params: dict[str, ParameterSpec] = {}
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
            has_default = value.default is not dataclasses.MISSING
            params[name] = ParameterSpec(
                name,
                kind,  # type: ignore[arg-type]
                value.default if has_default else None,
                has_default,
                value.init,
            )
    return params


def _check_value(cls_name: str, param: ParameterSpec, value: Any) -> None:
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
            if opts and (opts.get("method") or opts.get("batch_max_size") or opts.get("web")):
                out[name] = dict(opts)
    return out


def _method_table(
    user_cls: type, method_opts: Mapping[str, Mapping[str, Any]]
) -> tuple[MethodSpec, ...]:
    """The method table of a class record: each method's generator flag and batching."""
    table = []
    for name, opts in method_opts.items():
        is_gen = opts.get("is_generator")
        if is_gen is None:
            raw = getattr(user_cls, name)
            raw = getattr(raw, "raw_f", raw)
            is_gen = inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw)
        table.append(
            MethodSpec(
                name,
                bool(is_gen),
                opts.get("batch_max_size"),
                opts.get("batch_wait_ms"),
                opts.get("web"),
            )
        )
    return tuple(table)


def _method_options_of(record: ClassRecord) -> dict[str, dict[str, Any]]:
    """`_method_options` of a class rebuilt from its record."""
    out: dict[str, dict[str, Any]] = {}
    for m in record.methods:
        opts: dict[str, Any] = {"method": True, "is_generator": m.is_generator}
        if m.batch_max_size:
            opts.update(batch_max_size=m.batch_max_size, batch_wait_ms=m.batch_wait_ms)
        out[m.name] = opts
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
        self._prepared_from: ClassRecord | None = None  # the class record `_prepared` is of

    def _follow_due(self) -> bool:
        """A class looked up by name: is its version to be checked, or did it move on?"""
        cls = self._obj._cls
        watch = cls._watch
        return watch is not None and (watch.due() or self._prepared_from is not cls._compiled)

    def _follow(self, gone: PoolGoneError | None = None) -> None:
        """The class follows its app's redeploys (`freshness`); this method's pool with it."""
        cls = self._obj._cls
        follow(cls, gone)
        if self._prepared is not None and self._prepared_from is not cls._compiled:
            self._prepared = None
            self._kept_target = None
            self._obj._service_handle = None

    def __repr__(self) -> str:
        return f"Method({self._tag!r})"

    def _function_ref(self) -> Any:
        return self._obj._cls._function_ref()

    def _run_context(self) -> RunContext:
        return self._obj._cls._run_context()

    def _make_prepared(self, backend: Backend, ctx: RunContext) -> Prepared:
        """Only what a method call uses: the class's pool for this parameter set, made from the
        class's record (compiled once per class and run)."""
        record = self._obj._cls._compile(ctx)
        self._spec = record.method_spec(self._method)
        self._prepared_from = record
        return self._obj._service(backend, ctx).method(self._method)

    def _call_target(self, ctx: RunContext) -> tuple[Any, str | None, dict[str, Any] | None]:
        """A kept call of this method: its class's record, the method and the parameters."""
        return self._obj._cls._compile(ctx), self._method, dict(self._obj._params)

    def _record(self) -> FunctionRecord:
        raise InvalidError(
            f"Method {self._tag!r} has no record of its own: its class's record"
            " (`Cls._record()`) describes all of its methods."
        )

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

    def _web_spec(self) -> Any:
        return self._obj._cls._method_opts.get(self._method, {}).get("web")

    def _web_pool_name(self, ctx: RunContext) -> str:
        from .web import method_pool_name

        cls = self._obj._cls
        return method_pool_name(ctx, cls._tag, cls._compile(ctx).variant, self._method)

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

    def _service(self, backend: Backend, ctx: RunContext) -> PreparedService:
        """This parameter set's pool, from the class's record (attached to if it exists)."""
        pool = self._cls._compile(ctx).pool_for(self._params)
        key = (pool.service.name, ctx.environment)
        if self._service_handle is not None and self._service_key == key:
            return self._service_handle
        self._service_handle = backend.prepare_service(pool.service, pool.container)
        self._service_key = key
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
    _watch: Watch | None = None  # a class looked up by name follows redeploys (`freshness`)

    def __init__(
        self,
        user_cls: type,
        options: FunctionOptions,
        app: App | None,
        tag: str,
        variant: str = "",
        *,
        record: ClassRecord | None = None,
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
        if record is None:
            self._params = parse_parameters(user_cls)
            self._method_opts = _method_options(user_cls)
        else:
            self._params = {p.name: p for p in record.parameters}
            self._method_opts = _method_options_of(record)
        # This run's record (compiled on first use, for the options it was compiled with), or the
        # record this class was rebuilt from.
        self._compiled = record
        self._compiled_options: FunctionOptions | None = options if record else None
        self._rebuilt = record is not None
        self._object_id: str | None = None  # a deployed class's id in the registry
        self._compile_lock = threading.Lock()
        batched = [m for m, o in self._method_opts.items() if o.get("batch_max_size")]
        if batched and len(self._method_opts) > 1:
            raise InvalidError(
                f"Class {user_cls.__name__} has a @modal.batched method ({batched[0]}), so it"
                " cannot have other @modal.method or @modal.batched methods."
            )
        self.__doc__ = user_cls.__doc__

    def __repr__(self) -> str:
        return f"Cls({self._tag!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_compile_lock"] = None
        if not self._rebuilt:  # a live class compiles again where it is used
            state["_compiled"] = state["_compiled_options"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._compile_lock = threading.Lock()

    # -- records (see `records`) -----------------------------------------------------------------

    def _run_context(self) -> RunContext:
        """The run this class belongs to: its app's, the record's it was rebuilt from, or (no
        app) the worker's."""
        if self._rebuilt and self._compiled is not None:
            return self._compiled.app.run_context()
        return self._app.run_context() if self._app is not None else worker_context()

    def _compile(self, ctx: RunContext) -> ClassRecord:
        """This run's record, compiled once per run and options (the image is packed here): every
        parameter set's pool is made from it. A rebuilt class's own record."""
        with self._compile_lock:
            record = self._compiled
            if record is not None and (
                self._rebuilt
                or (record.app == AppIdentity.of(ctx) and self._compiled_options is self._options)
            ):
                return record
            record = self._options.compile_class(
                self._tag,
                self._function_ref(),
                ctx,
                variant=self._variant,
                methods=_method_table(self._user_cls, self._method_opts),
                parameters=tuple(self._params.values()),
            )
            self._compiled, self._compiled_options = record, self._options
            return record

    def _record(self) -> ClassRecord:
        """The record of this class in its running app: what another process needs to create
        instances and call their methods without importing the user's module
        (`Cls._from_record`)."""
        ctx = self._run_context()
        if context.is_local() and not ctx.running:
            raise ExecutionError(
                f"Cls {self._tag!r} has no record: its app is not running. Use it inside"
                " `with app.run():`, or run the file with `modal run`."
            )
        return self._compile(ctx)

    @staticmethod
    def _from_record(record: ClassRecord) -> Cls:
        """A Cls whose instances call the pools `record` describes, in any process connected to
        the record's cluster. It has no local code: `.local()` raises `ExecutionError`."""
        options = FunctionOptions.of_compiled(record.spec, record.pool)
        return Cls(stand_in_class(record), options, None, record.tag, record.variant, record=record)

    def _modal_raw_object(self) -> type:
        return self._user_cls

    def _function_ref(self) -> Any:
        """By import when the module's attribute is this class (or a variant of it), a script
        run as `python app.py` included (see `FunctionRef`); else by value."""
        from .runtime.worker import FunctionRef, refuse_calls_during_import

        if self._rebuilt and self._compiled is not None:
            return self._compiled.pool.container.target
        refuse_calls_during_import(f"Class {self._tag!r}")
        module_name = getattr(self._user_cls, "__module__", "") or ""
        module = sys.modules.get(module_name)
        qualname = self._user_cls.__qualname__
        if module is not None and not self._options.serialized and "<locals>" not in qualname:
            obj: Any = module
            for part in qualname.split("."):
                obj = getattr(obj, part, None)
            raw = getattr(obj, "_modal_raw_object", None)  # a Cls, or a Server around one
            if callable(raw) and raw() is self._user_cls:
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
                if not param.has_default:
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

    def _derive(self, kind: str, arguments: dict[str, Any], why: str) -> Cls:
        """A variant with its own pools: recompiled from the class's code, or derived from the
        record of a class looked up by name (see `variants`), lazily if not looked up yet."""
        from .variants import Derivation, DerivedLookup, derive_record

        derivation = Derivation(kind, tuple(sorted(arguments.items())), why)
        pending = self.__dict__.get("_lookup")
        if pending is not None:  # a `from_name` handle not looked up yet
            return _DeferredCls(DerivedLookup(pending, derivation), self.__dict__["_what"])
        if self._rebuilt:
            assert self._compiled is not None
            variant = Cls._from_record(derive_record(self._compiled, derivation))
            variant._object_id = self._object_id
            if self._watch is not None:  # the variant follows redeploys too
                variant._watch = self._watch.derived(DerivedLookup(self._watch.lookup, derivation))
            return variant
        if kind == "options":
            options = self._options.override(**arguments)
        elif kind == "concurrency":
            options = self._options.override(
                max_inputs_concurrent=arguments["max_inputs"],
                target_inputs=arguments["target_inputs"],
            )
        else:
            options = self._options
        derived = Cls(self._user_cls, options, self._app, self._tag, f"{self._variant}|{why}")
        if kind == "batching":
            for opts in derived._method_opts.values():
                if opts.get("batch_max_size"):
                    opts.update(
                        batch_max_size=arguments["max_batch_size"],
                        batch_wait_ms=arguments["wait_ms"],
                    )
        return derived

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
        """A copy with some options overridden: its own, independent pool of containers (also
        on a class looked up by name, see `variants`)."""
        overrides = {k: v for k, v in locals().items() if k not in ("self", "deprecated")}
        overrides.update(deprecated)
        return self._derive("options", overrides, repr(sorted(overrides.items())))

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Cls:
        """Override the input concurrency of each container."""
        arguments = {"max_inputs": max_inputs, "target_inputs": target_inputs}
        return self._derive("concurrency", arguments, f"concurrency={max_inputs},{target_inputs}")

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Cls:
        """Override the dynamic batching of the class's batched method."""
        arguments = {"max_batch_size": max_batch_size, "wait_ms": wait_ms}
        return self._derive("batching", arguments, f"batching={max_batch_size},{wait_ms}")

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
        """The class `name` of the deployed app `app_name`: instantiate it with its
        parameters, then call its methods with `.remote`. As in Modal, the lookup runs on first
        use (or `.hydrate()`); `NotFoundError` then names what is missing."""
        from .deployment import NamedLookup

        if environment_name:
            config.environment_name(environment_name)  # a bad name fails here, not later
        lookup = NamedLookup(app_name, name, "class", environment_name, version)
        return _DeferredCls(lookup, f"{app_name}.{name}")

    @property
    def object_id(self) -> str:
        return self._object_id or f"cs-{self._tag}"

    @property
    def client(self) -> None:
        return None

    @dual
    async def hydrate(self, client: Any = None) -> Cls:
        _ = self._tag  # a class looked up by name is looked up here
        return self

    @dual
    async def get_dashboard_url(self) -> str:
        return ""


__all__ = ["Cls", "Obj"]


class _DeferredCls(DeferredLookup, Cls):
    """A Cls looked up by name; filled in on first use (instantiating it, `.hydrate()`; see
    `DeferredLookup`)."""

    _label = "Cls"

    def _rebuild(self, record: Any) -> Cls:
        assert isinstance(record, ClassRecord)
        return Cls._from_record(record)
