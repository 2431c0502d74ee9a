"""`modal.Function` on top of the backend seam (`FunctionCall` is in `function_call`, the map
front end in `map_frontend`).

A Function is created by `@app.function` and becomes callable once its app runs (or, inside a
worker, on first use). Preparing it compiles its record once per run (`records`: the image,
secrets and resources resolved into a `FunctionSpec` + `Invocation`, or a container pool) and
hands that to the backend once; every call after that only submits arguments. A Function rebuilt
from a record (`Function._from_record`) calls the same function from a process without the
user's module.

Calls:
- `.remote` blocks for one result. Without a retry policy it takes a fast path that never touches
  the private event loop (the round trip is then the engine's own); with one it runs the async
  retry loop.
- `.map` / `.starmap` / `.for_each` / `.spawn_map` go through `map_frontend` to `MapEngine`.
- `.spawn` returns a `FunctionCall` whose result is an asyncio task on the private loop.
- `.remote_gen` streams a generator's items as the worker yields them.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import ParamSpec, TypeVar

from modal_ray.backends import get_backend
from modal_ray.exception import ExecutionError, InvalidError

from . import config, context, naming
from .errors import RemoteFailure, is_failure
from .freshness import PoolGoneError, follow
from .function_call import FunctionCall
from .ids import new_id
from .map_frontend import Mapper, map_async, map_inputs
from .records import AppIdentity, DeferredLookup, FunctionRecord, NoLocalCode
from .run_context import worker_context
from .runtime.worker import FunctionRef
from .specs import FunctionSpec
from .synchronizer import check_blocking_call, dual, run_async, run_sync, sync_and_aio
from .warn import warn_once

if TYPE_CHECKING:
    from modal_ray.backends import Backend, Prepared

    from .app import App
    from .freshness import Watch
    from .function_options import FunctionOptions
    from .run_context import RunContext

P = ParamSpec("P")
R = TypeVar("R")
# What `.local` returns: the user function's own return type (a coroutine for an `async def`,
# whose remote calls return what it awaits to).
LocalR = TypeVar("LocalR", default=R)
T = TypeVar("T")

SPAWN_MAP_BATCH = 1000  # inputs of a `spawn_map` handed to the call keeper per request


def _service_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Modal's autoscaler names -> `ServiceSpec` fields."""
    names = {"min_containers": "min_replicas", "max_containers": "max_replicas"}
    out = {names[k]: v for k, v in changes.items() if k in names}
    if "scaledown_window" in changes:
        out["scaledown_window"] = float(changes["scaledown_window"])
    return out


class Function(Generic[P, R, LocalR]):
    """A Modal Function: call it remotely with `.remote`, `.map`, `.spawn`, ..."""

    __module__ = "modal.functions"
    _served = False  # methods of a Cls always run in a container pool
    _web_url: str | None = None  # set while the app runs this web endpoint
    _watch: Watch | None = None  # a handle looked up by name follows redeploys (`freshness`)

    def __init__(
        self, raw_f: Callable[..., Any], options: FunctionOptions, app: App | None, tag: str
    ) -> None:
        self._raw_f = raw_f
        self._options = options
        self._app = app
        self._tag = tag
        self._is_generator = options.is_generator
        self._object_id = new_id("fu")
        self._prepared: Prepared | None = None
        self._spec: FunctionSpec | None = None
        # This run's record (compiled on first use), or the record this object was rebuilt from.
        self._compiled: FunctionRecord | None = None
        self._rebuilt = False
        self._lock = threading.Lock()
        self._spawned: weakref.WeakSet[FunctionCall[Any]] = weakref.WeakSet()
        # (prepared, digest, bytes) of this function's call target for the call keeper.
        self._kept_target: tuple[Any, str, bytes] | None = None
        self.__doc__ = getattr(raw_f, "__doc__", None)
        self.__wrapped__ = raw_f

    def __repr__(self) -> str:
        return f"Function({self._tag!r})"

    # -- pickling: by reference where the module is importable, else by value -------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_prepared"] = None
        if not self._rebuilt:  # a live function compiles again where it is used
            state["_compiled"] = None
        state["_lock"] = None
        state["_spawned"] = None
        state["_kept_target"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._spawned = weakref.WeakSet()

    # -- metadata ------------------------------------------------------------------------

    @property
    def object_id(self) -> str:
        return self._object_id

    @property
    def app(self) -> App | None:
        return self._app

    @property
    def client(self) -> None:
        return None

    @property
    def is_generator(self) -> bool:
        return self._is_generator

    @property
    def info(self) -> Any:
        return self._options

    def get_raw_f(self) -> Callable[..., Any]:
        """The Python function wrapped by this Modal Function."""
        return self._raw_f

    def _modal_raw_object(self) -> Callable[..., Any]:
        return self._raw_f

    @dual
    async def hydrate(self, client: Any = None) -> Function[P, R, LocalR]:
        self._ensure_prepared()
        return self

    @dual
    async def get_web_url(self) -> str | None:
        """The URL of this web endpoint while its app runs (None for other functions)."""
        if self._web_spec() is None:
            return None
        if self._web_url is not None:
            return self._web_url
        # Elsewhere (a container, another client): the run's gateway knows the URL.
        ctx = self._run_context()
        name = self._web_pool_name(ctx)
        backend = get_backend()
        backend.connect(ctx.environment)
        return await asyncio.get_running_loop().run_in_executor(None, backend.web_url, name)

    @property
    def web_url(self) -> str | None:
        """Deprecated spelling of `get_web_url()`."""
        return self.get_web_url()

    def _web_spec(self) -> Any:
        """The `WebSpec` of a web endpoint, else None."""
        if self._rebuilt and self._compiled is not None:  # e.g. a deployed endpoint's
            return getattr(self._compiled, "web", None)
        return self._options.web

    def _web_pool_name(self, ctx: RunContext) -> str:
        from .web import pool_name

        if self._rebuilt and self._compiled is not None and self._compiled.pool is not None:
            return self._compiled.pool.service.name
        return pool_name(ctx.environment, ctx.app_id, self._tag)

    @dual
    async def get_dashboard_url(self) -> str:
        return ""

    # -- preparation ---------------------------------------------------------------------

    def _function_ref(self) -> Any:
        """How the worker finds the code: by import (as Modal does) or by value.

        By import wherever the defining file can be imported there, a script run as
        `python app.py` included (see `FunctionRef`); by value with `serialized=True`, for
        nested functions and for code with no file (notebooks, `python -c`)."""
        from .runtime.worker import refuse_calls_during_import

        refuse_calls_during_import(f"Function {self._tag!r}")
        raw = self._raw_f
        module_name = getattr(raw, "__module__", None)
        module = sys.modules.get(module_name) if module_name else None
        qualname = getattr(raw, "__qualname__", "")
        if self._options.serialized or module is None or "<locals>" in qualname:
            return raw
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if obj is not self and obj is not raw:
            return raw
        include_source = self._options.include_source is not False
        ref = FunctionRef.locate(module, qualname, include_source)
        return raw if ref is None else ref

    def _ensure_prepared(self) -> Prepared:
        prepared = self._prepared
        if prepared is not None and not self._follow_due():
            return prepared
        with self._lock:
            self._follow()
            if self._prepared is not None:
                return self._prepared
            ctx = self._run_context()
            self._check_running(ctx, "has not been hydrated")
            backend = get_backend()
            backend.connect(ctx.environment)
            self._prepared = self._make_prepared(backend, ctx)
            if ctx.tasks is not None:
                ctx.tasks.add_prepared(self)
            return self._prepared

    def _follow_due(self) -> bool:
        """Is this a handle looked up by name whose app's version is to be checked?"""
        watch = self._watch
        return watch is not None and watch.due()

    def _follow(self, gone: PoolGoneError | None = None) -> None:
        """Move a handle looked up by name to its app's current version (`freshness.follow`)."""
        follow(self, gone)

    def _check_running(self, ctx: RunContext, what: str) -> None:
        if context.is_local() and not ctx.running:
            raise ExecutionError(
                f"Function {self._tag!r} {what}: its app is not running. Call it inside"
                " `with app.run():`, or run the file with `modal run`."
            )

    def _run_context(self) -> RunContext:
        """The run this function belongs to: its app's, the record's it was rebuilt from, or
        (no app) the worker's."""
        if self._rebuilt and self._compiled is not None:
            return self._compiled.app.run_context()
        return self._app.run_context() if self._app is not None else worker_context()

    def _make_prepared(self, backend: Backend, ctx: RunContext) -> Prepared:
        record = self._compile(ctx)
        self._spec = record.spec
        if record.pool is None:
            assert record.invocation is not None
            if record.spec.cluster_size:  # a gang of ranks per input (`clustered`)
                return backend.prepare_clustered(record.spec, record.invocation)
            return backend.prepare(record.spec, record.invocation)
        # Container semantics (concurrency, batching, a warm floor): a Serve pool of one function.
        pool = record.pool
        if self._web_spec() is not None:  # its endpoint's replicas run the function too
            return backend.prepare_web_service(pool.service, pool.container).method("__call__")
        return backend.prepare_service(pool.service, pool.container).method("__call__")

    # -- records (see `records`) ---------------------------------------------------------------

    def _compile(self, ctx: RunContext) -> FunctionRecord:
        """This run's record, compiled once per run (the image is packed here); a rebuilt
        function's own record."""
        record = self._compiled
        if record is not None and (self._rebuilt or record.app == AppIdentity.of(ctx)):
            return record
        if isinstance(self._raw_f, NoLocalCode):
            raise InvalidError(
                f"Function {self._tag!r} comes from a function rebuilt from a record, whose"
                " options cannot change without its code (`with_options`, `with_concurrency`,"
                " `with_batching`). Call the rebuilt function itself."
            )
        record = self._options.compile_function(self._tag, self._function_ref(), ctx)
        self._compiled = record
        return record

    def _record(self) -> FunctionRecord:
        """The record of this function in its running app: what another process needs to call
        it without importing the user's module (`Function._from_record`)."""
        with self._lock:
            ctx = self._run_context()
            self._check_running(ctx, "has no record")
            return self._compile(ctx)

    @staticmethod
    def _from_record(record: FunctionRecord) -> Function[..., Any]:
        """A Function calling what `record` describes, in any process connected to the record's
        cluster. It has no local code: `.local()` raises `ExecutionError`."""
        from .function_options import FunctionOptions

        options = FunctionOptions.of_compiled(record.spec, record.pool)
        f: Function[..., Any] = Function(
            NoLocalCode(f"Function {record.tag!r}"), options, None, record.tag
        )
        f._compiled = record
        f._rebuilt = True
        f.__doc__ = None
        return f

    def _register_call(self, call_id: str, pending: Any) -> None:
        """Let other processes find this spawned call by id (`FunctionCall.from_id`)."""
        environment = self._run_context().environment
        try:
            get_backend().register_call(environment, call_id, pending)
        except Exception as exc:
            warn_once(
                "call-tracker", f"Spawned calls cannot be looked up from other processes: {exc}"
            )

    def _forget(self) -> None:
        """Called when the app stops: the next run prepares (and compiles) again."""
        self._prepared = None
        self._kept_target = None
        if not self._rebuilt:
            self._compiled = None

    # -- single calls --------------------------------------------------------------------

    def _check_not_generator(self, method: str) -> None:
        if self._is_generator:
            raise InvalidError(
                f"`Function.{method}` cannot be used on generator function {self._tag!r};"
                " use `.remote_gen(...)`."
            )

    def _raise(self, failure: RemoteFailure) -> Any:
        raise failure.to_exception(self._tag)

    async def _call_async(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], fc: FunctionCall[Any] | None = None
    ) -> Any:
        prepared = self._ensure_prepared()
        assert self._spec is not None
        retries = self._spec.retries
        call_id = fc.object_id if fc is not None else None
        attempt = 0
        followed = False
        while True:
            pending = prepared.submit(args, kwargs, call_id)
            if fc is not None:
                fc._pending.append(pending)
                self._register_call(fc.object_id, pending)
            try:
                value = await pending.result_async()
                error: BaseException | None = (
                    value.to_exception(self._tag) if is_failure(value) else None
                )
            except asyncio.CancelledError:
                pending.cancel(force=False)
                raise
            except PoolGoneError as exc:  # redeployed: once more, on the current version
                if followed:
                    raise
                self._follow(exc)
                followed = True
                prepared = self._ensure_prepared()
                continue
            except ExecutionError as exc:
                error = exc
            finally:
                if fc is not None:
                    fc._pending.remove(pending)
            if error is None:
                return value
            if retries is None or attempt >= retries.max_retries:
                raise error
            attempt += 1
            await asyncio.sleep(retries.delay_for(attempt))

    def _remote_sync(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self._check_not_generator("remote")
        prepared = self._ensure_prepared()
        assert self._spec is not None
        if self._spec.retries is not None:
            return run_sync(self._call_async(args, kwargs), f"{self._tag}.remote")
        check_blocking_call(f"{self._tag}.remote")
        try:
            value = prepared.submit(args, kwargs).result()
        except PoolGoneError:  # the retry loop follows the app's redeploy
            return run_sync(self._call_async(args, kwargs), f"{self._tag}.remote")
        if type(value) is RemoteFailure:
            raise value.to_exception(self._tag)
        return value

    def _remote(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function remotely and wait for its result (`.remote.aio` to await)."""
        return self._remote_sync(args, kwargs)  # type: ignore[no-any-return]

    async def _remote_aio(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self._check_not_generator("remote")
        prepared, spec = self._prepared, self._spec
        if prepared is None or spec is None or spec.retries is not None or self._follow_due():
            # First call (preparing may block), a retry loop, or a version check of a handle
            # looked up by name (it may look up again): run on the private loop.
            return await run_async(self._call_async(args, kwargs))  # type: ignore[no-any-return]
        # Without retries, await the engine's result on the caller's own loop: no hop to the
        # private loop thread (which costs two cross-thread wake-ups per call).
        try:
            value = await prepared.submit(args, kwargs).result_async()
        except PoolGoneError:  # the retry loop follows the app's redeploy
            return await run_async(self._call_async(args, kwargs))  # type: ignore[no-any-return]
        if type(value) is RemoteFailure:
            raise value.to_exception(self._tag)
        return value  # type: ignore[no-any-return]

    remote = sync_and_aio(_remote, _remote_aio)

    def local(self, /, *args: P.args, **kwargs: P.kwargs) -> LocalR:
        """Run the function in this process."""
        return self._raw_f(*args, **kwargs)  # type: ignore[no-any-return]

    @dual
    async def spawn(self, /, *args: P.args, **kwargs: P.kwargs) -> FunctionCall[R]:
        """Start a call without waiting; returns a `FunctionCall`. On a long-lived cluster the
        call is kept there (see `durable_calls`): it runs to the end and its result can be
        fetched by id from any process, after this one exited too."""
        self._check_not_generator("spawn")
        self._ensure_prepared()
        if get_backend().durable_calls():
            return (await self._spawn_kept([(args, kwargs)]))[0]
        call_id = naming.new_call_id()
        holder: list[FunctionCall[Any]] = []

        async def _run() -> Any:
            await asyncio.sleep(0)
            return await self._call_async(args, kwargs, holder[0])

        task = asyncio.get_running_loop().create_task(_run())
        fc: FunctionCall[R] = FunctionCall(call_id, task, self)
        holder.append(fc)
        self._spawned.add(fc)
        tasks = self._run_context().tasks
        if tasks is not None:
            tasks.add(fc)
        return fc

    # -- calls kept by the cluster (see `function_call`) ------------------------------------

    def _call_target(self, ctx: RunContext) -> tuple[Any, str | None, dict[str, Any] | None]:
        """What a kept call runs: this function's record (a class method: its class's record,
        method name and parameters)."""
        return self._compile(ctx), None, None

    async def _spawn_kept(
        self, inputs: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]
    ) -> list[FunctionCall[R]]:
        """Hand calls to the cluster's call keeper; returns once it recorded them."""
        import cloudpickle

        prepared = self._ensure_prepared()
        ctx = self._run_context()
        backend = get_backend()
        key = self._kept_target
        if key is None or key[0] is not prepared:
            with self._lock:
                target = self._call_target(ctx)
            loop = asyncio.get_running_loop()
            digest, blob = await loop.run_in_executor(None, backend.call_target, target, prepared)
            key = self._kept_target = (prepared, digest, blob)
        tasks = ctx.tasks
        meta = {
            "parent": context.current_function_call_id(),
            "app_id": ctx.app_id or naming.LOCAL_APP_ID,
            "function_name": self._tag,
            "module_name": getattr(self._raw_f, "__module__", "") or "",
            # A call of this process's own ephemeral run stops with it, unless it is detached.
            "bound": tasks is not None and not self._rebuilt and not tasks.detached,
        }
        calls = [(naming.new_call_id(), cloudpickle.dumps(item)) for item in inputs]
        await backend.spawn_calls(ctx.environment, key[1], key[2], meta, calls)
        return [FunctionCall._kept(call_id, ctx.environment, self) for call_id, _ in calls]

    # -- generators ----------------------------------------------------------------------

    async def _gen_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        if not self._is_generator:
            raise InvalidError(
                f"`Function.remote_gen` is for generator functions; {self._tag!r} is not one."
                " Use `.remote(...)`."
            )
        prepared = self._ensure_prepared()
        call_id = naming.new_call_id()
        stream = prepared.submit_stream(args, kwargs, call_id)
        try:
            async for item in stream:
                if type(item) is RemoteFailure:
                    raise item.to_exception(self._tag)
                yield item
        finally:
            stream.cancel()

    @dual
    async def remote_gen(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Call a generator function remotely; items stream back as the worker yields them."""
        async for item in self._gen_async(args, kwargs):
            yield item

    # -- maps ----------------------------------------------------------------------------

    def _pool_options(self) -> FunctionOptions | None:
        """The options of the container pool behind this function; None when task-backed."""
        return self._options if self._options.needs_container() else None

    def _map(
        self,
        *input_iterators: Iterable[Any],
        kwargs: dict[str, Any] = {},  # noqa: B006 - Modal's signature
        order_outputs: bool = True,
        return_exceptions: bool = False,
        wrap_returned_exceptions: bool | None = None,
    ) -> Iterator[R]:
        """Parallel map over one iterable per argument; lazy, ordered unless
        `order_outputs=False`."""
        return Mapper(self, star=False)(
            *input_iterators,
            kwargs=kwargs,
            order_outputs=order_outputs,
            return_exceptions=return_exceptions,
            wrap_returned_exceptions=wrap_returned_exceptions,
        )

    def _map_aio(
        self,
        *input_iterators: Iterable[Any] | AsyncIterable[Any],
        kwargs: dict[str, Any] = {},  # noqa: B006 - Modal's signature
        order_outputs: bool = True,
        return_exceptions: bool = False,
        wrap_returned_exceptions: bool | None = None,
    ) -> AsyncIterator[R]:
        return Mapper(self, star=False).aio(
            *input_iterators,
            kwargs=kwargs,
            order_outputs=order_outputs,
            return_exceptions=return_exceptions,
            wrap_returned_exceptions=wrap_returned_exceptions,
        )

    def _starmap(
        self,
        input_iterator: Iterable[Sequence[Any]],
        *,
        kwargs: dict[str, Any] = {},  # noqa: B006 - Modal's signature
        order_outputs: bool = True,
        return_exceptions: bool = False,
        wrap_returned_exceptions: bool | None = None,
    ) -> Iterator[R]:
        """Like `map`, but each input is a tuple spread over the arguments."""
        return Mapper(self, star=True)(
            input_iterator,
            kwargs=kwargs,
            order_outputs=order_outputs,
            return_exceptions=return_exceptions,
            wrap_returned_exceptions=wrap_returned_exceptions,
        )

    def _starmap_aio(
        self,
        input_iterator: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
        *,
        kwargs: dict[str, Any] = {},  # noqa: B006 - Modal's signature
        order_outputs: bool = True,
        return_exceptions: bool = False,
        wrap_returned_exceptions: bool | None = None,
    ) -> AsyncIterator[R]:
        return Mapper(self, star=True).aio(
            input_iterator,
            kwargs=kwargs,
            order_outputs=order_outputs,
            return_exceptions=return_exceptions,
            wrap_returned_exceptions=wrap_returned_exceptions,
        )

    map = sync_and_aio(_map, _map_aio)
    starmap = sync_and_aio(_starmap, _starmap_aio)

    @dual
    async def for_each(
        self,
        *input_iterators: Any,
        kwargs: dict[str, Any] = {},  # noqa: B006 - Modal's signature
        ignore_exceptions: bool = False,
    ) -> None:
        """Run the function over the inputs and discard the results; block until all finish."""
        async for _ in map_async(
            self, input_iterators, dict(kwargs), False, ignore_exceptions, False
        ):
            pass

    async def _spawn_map_async(
        self,
        input_iterators: tuple[Any, ...],
        kwargs: dict[str, Any],
        caller_loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self._check_not_generator("spawn_map")
        self._ensure_prepared()
        # Zipped lazily as the map makes progress: `itertools.repeat(x)` beside a finite list
        # stops at the shortest, and a long generator is held only as far as the in-flight bound.
        iterables = map_inputs(input_iterators, "spawn_map")
        if get_backend().durable_calls():
            # On a long-lived cluster every input is handed to the call keeper before this
            # returns, so all of them run to the end even if this process exits right after.
            from .map_frontend import zip_async

            batch: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
            async for args in zip_async(iterables, caller_loop):
                batch.append((args, kwargs))
                if len(batch) >= SPAWN_MAP_BATCH:
                    await self._spawn_kept(batch)
                    batch = []
            if batch:
                await self._spawn_kept(batch)
            return

        async def _drain() -> None:
            async for _ in map_async(self, iterables, kwargs, False, True, False, caller_loop):
                pass

        task = asyncio.get_running_loop().create_task(_drain())
        tasks = self._run_context().tasks
        if tasks is not None:
            tasks.add(task)

    def _spawn_map(self, *input_iterators: Any, kwargs: dict[str, Any] = {}) -> None:  # noqa: B006
        """Submit a map in the background and return at once; no results. Inputs are read
        lazily, as the map makes progress."""
        for it in input_iterators:
            if hasattr(it, "__aiter__"):
                raise InvalidError("Async iterables can only be used with `.spawn_map.aio(...)`.")
        run_sync(
            self._spawn_map_async(input_iterators, dict(kwargs), None), f"{self._tag}.spawn_map"
        )

    async def _spawn_map_aio(self, *input_iterators: Any, kwargs: dict[str, Any] = {}) -> None:  # noqa: B006
        loop = asyncio.get_running_loop()
        await run_async(self._spawn_map_async(input_iterators, dict(kwargs), loop))

    spawn_map = sync_and_aio(_spawn_map, _spawn_map_aio)

    @dual
    async def experimental_spawn_map(
        self,
        *input_iterators: Any,
        kwargs: dict[str, Any] = {},  # noqa: B006 - Modal's signature
    ) -> FunctionCall[Any]:
        """Like `spawn_map`, with a `FunctionCall` whose result is the list of outputs."""
        self._check_not_generator("spawn_map")
        self._ensure_prepared()
        iterables = map_inputs(input_iterators, "experimental_spawn_map")

        async def _collect() -> list[Any]:
            out: list[Any] = []
            async for batch in map_async(self, iterables, dict(kwargs), True, False, False):
                out.extend(batch)
            return out

        task = asyncio.get_running_loop().create_task(_collect())
        return FunctionCall(naming.new_call_id(), task, self)

    # -- options and scaling ---------------------------------------------------------------

    def with_options(
        self,
        *,
        cpu: float | tuple[float, float] | None = None,
        memory: int | tuple[int, int] | None = None,
        gpu: str | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        volumes: dict[Any, Any] = {},  # noqa: B006 - Modal's signature
        retries: Any = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: int | None = None,
        timeout: int | None = None,
        region: str | Sequence[str] | None = None,
        cloud: str | None = None,
        routing_region: str | None = None,
        **deprecated: Any,
    ) -> Function[P, R]:
        """A copy of this Function with some options overridden (its own pool of workers)."""
        overrides = {k: v for k, v in locals().items() if k not in ("self", "deprecated")}
        overrides.update(deprecated)
        return Function(self._raw_f, self._options.override(**overrides), self._app, self._tag)

    def with_concurrency(
        self, *, max_inputs: int, target_inputs: int | None = None
    ) -> Function[P, R]:
        return Function(
            self._raw_f,
            self._options.override(max_inputs_concurrent=max_inputs, target_inputs=target_inputs),
            self._app,
            self._tag,
        )

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Function[P, R]:
        return Function(
            self._raw_f,
            self._options.override(batch_max_size=max_batch_size, batch_wait_ms=wait_ms),
            self._app,
            self._tag,
        )

    @dual
    async def update_autoscaler(
        self,
        *,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: int | None = None,
    ) -> Any:
        """Change scaling at runtime (container pools apply it in place; tasks honour
        `max_containers` as the in-flight bound of maps)."""
        changes = {
            "min_containers": min_containers,
            "max_containers": max_containers,
            "buffer_containers": buffer_containers,
            "scaledown_window": scaledown_window,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        self._options = self._options.override(**changes)
        if self._spec is not None and max_containers is not None:
            from dataclasses import replace

            self._spec = replace(self._spec, max_containers=max_containers)
        service = self._prepared.service if self._prepared is not None else None
        if service is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: service.update(**_service_changes(changes))
            )
        return None

    @property
    def autoscaler(self) -> Any:
        return {"max_containers": self._options.max_containers}

    @property
    def logs(self) -> Any:
        raise NotImplementedError(
            "Function logs stream to the driver's terminal; use the Ray dashboard for history."
        )

    @property
    def metrics(self) -> Any:
        raise NotImplementedError("Function metrics are in the Ray dashboard (Prometheus/Grafana).")

    @dual
    async def stats(
        self,
        *,
        since: Any = None,
        until: Any = None,
        container: str | None = None,
        all_variants: bool = False,
    ) -> Any:
        return await self.get_current_stats.aio()

    @dual
    async def get_current_stats(self) -> Any:
        from modal_ray.types import FunctionStats

        running = sum(1 for fc in self._spawned if fc._task is not None and not fc._task.done())
        return FunctionStats(backlog=0, num_total_runners=running)

    # -- lookups of deployed functions (see `deployment`) ---------------------------------------

    @classmethod
    def from_name(
        cls,
        app_name: str,
        name: str,
        *,
        version: int | None = None,
        environment_name: str | None = None,
        client: Any = None,
    ) -> Function[..., Any]:
        """The Function `name` of the deployed app `app_name`, callable from any process
        connected to the cluster. As in Modal, the lookup runs on first use (or `.hydrate()`);
        `NotFoundError` then names what is missing."""
        from .deployment import NamedLookup

        if environment_name:
            config.environment_name(environment_name)  # a bad name fails here, not later
        lookup = NamedLookup(app_name, name, "function", environment_name, version)
        return _Deferred(lookup, f"{app_name}.{name}")

    @classmethod
    def from_id(cls, function_id: str, *, client: Any = None) -> Function[..., Any]:
        """A deployed Function by its object id (`Function.object_id` of one from `from_name`):
        the current version of its app, looked up on first use."""
        from .deployment import IdLookup

        return _Deferred(IdLookup(function_id), function_id)


class _Deferred(DeferredLookup, Function[..., Any]):
    """A Function looked up by name or id; filled in on first use (see `DeferredLookup`)."""

    _label = "Function"

    def _rebuild(self, record: Any) -> Function[..., Any]:
        assert isinstance(record, FunctionRecord)
        return Function._from_record(record)


__all__ = ["Function", "FunctionCall"]
