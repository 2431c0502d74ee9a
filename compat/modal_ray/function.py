"""`modal.Function` and `modal.FunctionCall` on top of the backend seam.

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
- `.map` / `.starmap` / `.for_each` / `.spawn_map` run `MapEngine`.
- `.spawn` returns a `FunctionCall` whose result is an asyncio task on the private loop.
- `.remote_gen` streams a generator's items as the worker yields them.
"""

from __future__ import annotations

import asyncio
import operator
import sys
import threading
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import ParamSpec, TypeVar

from modal_ray.backends import get_backend
from modal_ray.exception import ExecutionError, InvalidError, NotFoundError, OutputExpiredError

from . import config, context, naming, output
from .errors import RemoteFailure, UserCodeException, is_failure
from .ids import new_id
from .mapping import Failed, MapEngine, container_slots
from .records import AppIdentity, FunctionRecord, NoLocalCode
from .run_context import worker_context
from .runtime.worker import FunctionRef
from .specs import FunctionSpec
from .synchronizer import (
    check_blocking_call,
    dual,
    dual_static,
    iter_async,
    iter_sync,
    run_async,
    run_sync,
    sync_and_aio,
)
from .warn import deprecation, warn_once

if TYPE_CHECKING:
    from .app import App
    from .function_options import FunctionOptions
    from .run_context import RunContext

P = ParamSpec("P")
R = TypeVar("R")
# What `.local` returns: the user function's own return type (a coroutine for an `async def`,
# whose remote calls return what it awaits to).
LocalR = TypeVar("LocalR", default=R)
T = TypeVar("T")

# A container pool without `max_containers` may grow to this many containers (Serve's bound in
# `FunctionOptions.build_container`).
DEFAULT_MAX_CONTAINERS = 100


class FunctionCall(Generic[R]):
    """A handle on a spawned call: poll or wait for its result, or cancel it."""

    __module__ = "modal.functions"

    _registry: weakref.WeakValueDictionary[str, FunctionCall[Any]] = weakref.WeakValueDictionary()

    def __init__(
        self, object_id: str, task: asyncio.Task[R], function: Function[..., R, Any] | None
    ) -> None:
        self._object_id = object_id
        self._task = task
        self._function = function
        self._pending: list[Any] = []
        FunctionCall._registry[object_id] = self

    def __repr__(self) -> str:
        return f"FunctionCall({self._object_id!r})"

    @property
    def object_id(self) -> str:
        return self._object_id

    @property
    def client(self) -> None:
        return None

    async def _wait(self, timeout: float | None) -> R:
        if timeout is None:
            return await asyncio.shield(self._task)
        try:
            return await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{self._object_id} has no result yet (waited {timeout:g}s)"
            ) from None

    @dual
    async def get(self, timeout: float | None = None, *, index: int = 0) -> R:
        """Wait for the result; builtin `TimeoutError` if it is not ready within `timeout`
        seconds."""
        if index != 0:
            raise InvalidError("`FunctionCall.get(index=...)` only applies to `spawn_map` calls.")
        return await self._wait(timeout)

    @dual
    async def iter(self, *, start: int = 0, end: int | None = None) -> AsyncIterator[R]:
        yield await self._wait(None)

    @dual
    async def num_inputs(self) -> int:
        return 1

    @dual
    async def cancel(self, terminate_containers: bool = False) -> None:
        """Stop the call. `terminate_containers=True` also kills the worker running it."""
        for pending in self._pending:
            pending.cancel(force=terminate_containers)
        self._task.cancel()

    def _owned_task(self) -> asyncio.Task[R]:
        """`RunTasks`: the task its app run waits for or cancels when it stops."""
        return self._task

    async def _cancel_owned(self) -> None:
        await self.cancel.aio()

    @dual
    async def get_call_graph(self) -> list[Any]:
        from modal_ray.call_graph import InputInfo, InputStatus

        status = InputStatus.PENDING
        if self._task.done():
            status = (
                InputStatus.TERMINATED
                if self._task.cancelled()
                else InputStatus.FAILURE
                if self._task.exception() is not None
                else InputStatus.SUCCESS
            )
        name = self._function._tag if self._function else ""
        module = getattr(self._function._raw_f, "__module__", "") if self._function else ""
        return [
            InputInfo(f"in-{self._object_id[3:]}-0", self._object_id, "", status, name, module, [])
        ]

    @dual
    async def get_dashboard_url(self) -> str:
        return ""

    @dual
    async def hydrate(self, client: Any = None) -> FunctionCall[R]:
        return self

    @property
    def logs(self) -> Any:
        raise NotImplementedError(
            "`FunctionCall.logs` is not available on Ray; use the Ray dashboard."
        )

    @staticmethod
    def _lookup(function_call_id: str) -> FunctionCall[Any]:
        call = FunctionCall._registry.get(function_call_id)
        if call is None:
            raise NotFoundError(
                f"No FunctionCall {function_call_id!r} in this process. Calls can be looked up"
                " by id only in the process that spawned them in this version of modal-ray."
            )
        return call

    @dual_static
    async def from_id(function_call_id: str, client: Any = None) -> FunctionCall[Any]:
        """Rebuild a handle from `FunctionCall.object_id`, in this or another process."""
        call = FunctionCall._registry.get(function_call_id)
        if call is not None:
            return call
        backend = get_backend()
        environment = config.environment_name()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, backend.connect, environment)
        pending = await loop.run_in_executor(
            None, backend.lookup_call, environment, function_call_id
        )
        if pending is None:
            raise NotFoundError(
                f"No FunctionCall {function_call_id!r} in environment {environment!r}: unknown id,"
                " older than 7 days, or spawned on another cluster."
            )

        async def _result() -> Any:
            try:
                value = await pending.result_async()
            except ExecutionError as exc:
                raise OutputExpiredError(
                    f"The result of {function_call_id} is no longer available: {exc}"
                ) from None
            if is_failure(value):
                raise value.to_exception("")
            return value

        return FunctionCall(function_call_id, loop.create_task(_result()), None)

    @dual_static
    async def gather(*function_calls: FunctionCall[T]) -> Sequence[T]:
        """Wait for every call; raise the first failure (cancelling the rest)."""
        try:
            return list(await asyncio.gather(*(asyncio.shield(fc._task) for fc in function_calls)))
        except BaseException:
            for fc in function_calls:
                fc._task.cancel()
            raise


async def _zip_async(
    iterables: tuple[Any, ...], loop: asyncio.AbstractEventLoop | None
) -> AsyncIterator[tuple[Any, ...]]:
    """Zip sync and async iterables; async ones are advanced on the loop that owns them."""
    iters: list[Any] = [
        it.__aiter__() if hasattr(it, "__aiter__") else iter(it) for it in iterables
    ]
    while True:
        args = []
        for it in iters:
            if hasattr(it, "__anext__"):
                try:
                    if loop is not None and loop is not asyncio.get_running_loop():
                        fut = asyncio.run_coroutine_threadsafe(it.__anext__(), loop)
                        value = await asyncio.wrap_future(fut)
                    else:
                        value = await it.__anext__()
                except StopAsyncIteration:
                    return
            else:
                try:
                    value = next(it)
                except StopIteration:
                    return
            args.append(value)
        yield tuple(args)


async def _star_async(
    iterable: Any, loop: asyncio.AbstractEventLoop | None
) -> AsyncIterator[tuple[Any, ...]]:
    async for (args,) in _zip_async((iterable,), loop):
        yield tuple(args)


def _service_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Modal's autoscaler names -> `ServiceSpec` fields."""
    names = {"min_containers": "min_replicas", "max_containers": "max_replicas"}
    out = {names[k]: v for k, v in changes.items() if k in names}
    if "scaledown_window" in changes:
        out["scaledown_window"] = float(changes["scaledown_window"])
    return out


def _length_hint(iterables: tuple[Any, ...]) -> int | None:
    hints = [
        operator.length_hint(it, -1) if not hasattr(it, "__aiter__") else -1 for it in iterables
    ]
    known = [h for h in hints if h >= 0]
    return min(known) if known and len(known) == len(hints) else None


class Function(Generic[P, R, LocalR]):
    """A Modal Function: call it remotely with `.remote`, `.map`, `.spawn`, ..."""

    __module__ = "modal.functions"
    _served = False  # methods of a Cls always run in a container pool

    def __init__(
        self, raw_f: Callable[..., Any], options: FunctionOptions, app: App | None, tag: str
    ) -> None:
        self._raw_f = raw_f
        self._options = options
        self._app = app
        self._tag = tag
        self._is_generator = options.is_generator
        self._object_id = new_id("fu")
        self._prepared: Any = None
        self._spec: FunctionSpec | None = None
        # This run's record (compiled on first use), or the record this object was rebuilt from.
        self._compiled: FunctionRecord | None = None
        self._rebuilt = False
        self._lock = threading.Lock()
        self._spawned: weakref.WeakSet[FunctionCall[Any]] = weakref.WeakSet()
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
        return None

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

    def _ensure_prepared(self) -> Any:
        prepared = self._prepared
        if prepared is not None:
            return prepared
        with self._lock:
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

    def _make_prepared(self, backend: Any, ctx: RunContext) -> Any:
        record = self._compile(ctx)
        self._spec = record.spec
        if record.pool is None:
            assert record.invocation is not None
            return backend.prepare(record.spec, record.invocation)
        # Container semantics (concurrency, batching, a warm floor): a Serve pool of one function.
        pool = record.pool
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
        value = prepared.submit(args, kwargs).result()
        if type(value) is RemoteFailure:
            raise value.to_exception(self._tag)
        return value

    def _remote(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function remotely and wait for its result (`.remote.aio` to await)."""
        return self._remote_sync(args, kwargs)  # type: ignore[no-any-return]

    async def _remote_aio(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self._check_not_generator("remote")
        prepared, spec = self._prepared, self._spec
        if prepared is None or spec is None or spec.retries is not None:
            # First call (preparing may block) or a retry loop: run on the private loop.
            return await run_async(self._call_async(args, kwargs))  # type: ignore[no-any-return]
        # Without retries, await the engine's result on the caller's own loop: no hop to the
        # private loop thread (which costs two cross-thread wake-ups per call).
        value = await prepared.submit(args, kwargs).result_async()
        if type(value) is RemoteFailure:
            raise value.to_exception(self._tag)
        return value  # type: ignore[no-any-return]

    remote = sync_and_aio(_remote, _remote_aio)

    def local(self, /, *args: P.args, **kwargs: P.kwargs) -> LocalR:
        """Run the function in this process."""
        return self._raw_f(*args, **kwargs)  # type: ignore[no-any-return]

    @dual
    async def spawn(self, /, *args: P.args, **kwargs: P.kwargs) -> FunctionCall[R]:
        """Start a call without waiting; returns a `FunctionCall`."""
        self._check_not_generator("spawn")
        self._ensure_prepared()
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

    async def _map_batches(
        self,
        inputs: Iterator[tuple[Any, ...]] | AsyncIterator[tuple[Any, ...]],
        kwargs: dict[str, Any],
        *,
        ordered: bool,
        length_hint: int | None,
    ) -> AsyncIterator[list[Any]]:
        self._check_not_generator("map")
        prepared = self._ensure_prepared()
        assert self._spec is not None
        backend = get_backend()
        engine = MapEngine(
            prepared,
            backend,
            inputs,
            kwargs,
            call_id=naming.new_call_id(),
            ordered=ordered,
            retries=self._spec.retries,
            max_tasks=self._map_capacity(backend),
            length_hint=length_hint,
        )
        progress = output.MapProgress(f"{self._tag} map", length_hint)
        try:
            async for batch in engine.run():
                progress.advance(len(batch))
                yield batch
        finally:
            progress.close()

    def _pool_options(self) -> FunctionOptions | None:
        """The options of the container pool behind this function; None when task-backed."""
        return self._options if self._options.needs_container() else None

    def _map_capacity(self, backend: Any) -> int:
        """How many engine tasks a map keeps in flight.

        Task-backed: the cluster's worker slots (`max_containers` caps them); chunks amortise
        the per-task overhead. A container pool: every input slot of every container it may
        have (`max_containers`, else as many containers as the cluster has worker slots), so a
        map fills `@modal.concurrent` slots and `@modal.batched` batchers as Modal's does.
        """
        worker_slots = max(8, int(2 * backend.total_cpus()))
        options = self._pool_options()
        if options is None:
            assert self._spec is not None
            if self._spec.max_containers:
                return min(worker_slots, self._spec.max_containers)
            return worker_slots
        containers = options.max_containers or min(worker_slots, DEFAULT_MAX_CONTAINERS)
        containers = max(containers, options.min_containers or 0, 1)
        return containers * container_slots(options.max_inputs_concurrent, options.batch_max_size)

    def _outcomes(self, batch: list[Any], return_exceptions: bool, wrap: bool | None) -> list[Any]:
        if not any(type(o) is Failed for o in batch):
            return batch
        out = []
        for outcome in batch:
            if isinstance(outcome, Failed):
                err = outcome.error
                exc = err.to_exception(self._tag) if isinstance(err, RemoteFailure) else err
                if not return_exceptions:
                    raise exc
                if wrap is None:
                    deprecation(
                        "map-wrap-exceptions",
                        "`return_exceptions=True` returns exceptions wrapped in UserCodeException;"
                        " pass `wrap_returned_exceptions=False` to get the original exceptions"
                        " (the future default).",
                    )
                out.append(UserCodeException(exc) if wrap is not False else exc)
            else:
                out.append(outcome)
        return out

    async def _map_async(
        self,
        iterables: tuple[Any, ...],
        kwargs: dict[str, Any],
        order_outputs: bool,
        return_exceptions: bool,
        wrap: bool | None,
        caller_loop: asyncio.AbstractEventLoop | None = None,
        star: bool = False,
    ) -> AsyncIterator[list[Any]]:
        inputs: Iterator[tuple[Any, ...]] | AsyncIterator[tuple[Any, ...]]
        is_async = any(hasattr(it, "__aiter__") for it in iterables)
        if star:
            inputs = (
                _star_async(iterables[0], caller_loop)
                if is_async
                else (tuple(t) for t in iterables[0])
            )
        elif is_async:
            inputs = _zip_async(iterables, caller_loop)
        else:
            # Non-strict on purpose: Modal zips iterables of different lengths
            # (e.g. with itertools.repeat) and stops at the shortest.
            inputs = zip(*iterables, strict=False)
        batches = self._map_batches(
            inputs, kwargs, ordered=order_outputs, length_hint=_length_hint(iterables)
        )
        async for batch in batches:
            yield self._outcomes(batch, return_exceptions, wrap)

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
        return _Mapper(self, star=False)(
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
        return _Mapper(self, star=False).aio(
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
        return _Mapper(self, star=True)(
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
        return _Mapper(self, star=True).aio(
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
        async for _ in self._map_async(
            input_iterators, dict(kwargs), False, ignore_exceptions, False
        ):
            pass

    def _map_inputs(self, input_iterators: tuple[Any, ...], name: str) -> tuple[Any, ...]:
        """Check the iterables of a background map up front (its errors would otherwise surface
        in a task nobody awaits); sync ones become iterators, still unread."""
        if not input_iterators:
            raise InvalidError(f"`{name}` needs at least one input iterable.")
        out = []
        for it in input_iterators:
            if hasattr(it, "__aiter__"):
                out.append(it)
                continue
            try:
                out.append(iter(it))
            except TypeError:
                raise InvalidError(
                    f"`{name}` takes iterables, one per argument; got {type(it).__name__}."
                ) from None
        return tuple(out)

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
        iterables = self._map_inputs(input_iterators, "spawn_map")

        async def _drain() -> None:
            async for _ in self._map_async(iterables, kwargs, False, True, False, caller_loop):
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
        iterables = self._map_inputs(input_iterators, "experimental_spawn_map")

        async def _collect() -> list[Any]:
            out: list[Any] = []
            async for batch in self._map_async(iterables, dict(kwargs), True, False, False):
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
        service = getattr(self._prepared, "service", None)
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

        running = sum(1 for fc in self._spawned if not fc._task.done())
        return FunctionStats(backlog=0, num_total_runners=running)

    # -- lookups of deployed functions arrive with `modal deploy` -----------------------------

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
        raise NotFoundError(
            f"Function.from_name({app_name!r}, {name!r}): deployed apps (`modal deploy`) are not"
            " supported by this version of modal-ray yet; run the app with `modal run` instead."
        )

    @classmethod
    def from_id(cls, function_id: str, *, client: Any = None) -> Function[..., Any]:
        raise NotFoundError(f"No Function with id {function_id!r} in this process.")


class _Mapper:
    """`f.map(...)` / `f.starmap(...)`: a lazy iterator, or an async one with `.aio`."""

    __slots__ = ("_f", "_star")

    def __init__(self, f: Function[..., Any], star: bool) -> None:
        self._f = f
        self._star = star

    def _iterables(self, input_iterators: tuple[Any, ...]) -> tuple[Any, ...]:
        if self._star and len(input_iterators) != 1:
            raise InvalidError("`starmap` takes exactly one iterable of argument tuples.")
        if not self._star and not input_iterators:
            raise InvalidError("`map` needs at least one input iterable.")
        return input_iterators

    def __call__(
        self,
        *input_iterators: Iterable[Any],
        kwargs: dict[str, Any] = {},  # noqa: B006
        order_outputs: bool = True,
        return_exceptions: bool = False,
        wrap_returned_exceptions: bool | None = None,
    ) -> Iterator[Any]:
        iterables = self._iterables(input_iterators)
        for it in iterables:
            if hasattr(it, "__aiter__"):
                raise InvalidError("Async iterables can only be used with `.map.aio(...)`.")
        return _flatten(
            iter_sync(
                self._f._map_async(
                    iterables,
                    dict(kwargs),
                    order_outputs,
                    return_exceptions,
                    wrap_returned_exceptions,
                    star=self._star,
                ),
                f"{self._f._tag}.map",
            )
        )

    async def aio(
        self,
        *input_iterators: Any,
        kwargs: dict[str, Any] = {},  # noqa: B006
        order_outputs: bool = True,
        return_exceptions: bool = False,
        wrap_returned_exceptions: bool | None = None,
    ) -> AsyncIterator[Any]:
        iterables = self._iterables(input_iterators)
        loop = asyncio.get_running_loop()
        agen = self._f._map_async(
            iterables,
            dict(kwargs),
            order_outputs,
            return_exceptions,
            wrap_returned_exceptions,
            loop,
            star=self._star,
        )
        async for batch in iter_async(agen):
            for item in batch:
                yield item


def _flatten(batches: Iterator[list[Any]]) -> Iterator[Any]:
    for batch in batches:
        yield from batch


__all__ = ["Function", "FunctionCall"]
