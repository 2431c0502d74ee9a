"""One private event-loop thread, and the one typed mechanism that exposes operations twice.

Every public operation has a blocking form, `obj.op(...)`, and an async form, `obj.op.aio(...)`.
Both are one object, a `DualCallable[P, R, A]`: calling it takes the parameters `P` of the
implementation and returns `R`; `.aio` takes the same parameters and returns `A` (an awaitable of
`R`, an async iterator, or the same context manager). Because `P`, `R` and `A` come from the
decorated implementation (`ParamSpec`), a user's type checker sees `f.remote(3)` as the user
function's return type, and `await f.remote.aio(3)` too. The forms, all built on `DualMethod`
(the descriptor that binds a `DualCallable` to its instance):

- `@dual` on an `async def` method: written once, run on the private loop. The blocking call
  waits for it (`run_sync`); `.aio` awaits it from the caller's own loop (`run_async`).
- `@dual` on an async generator method: a blocking `Iterator` (`iter_sync`), or an
  `AsyncIterator` with `.aio` (`iter_async`).
- `sync_and_aio(blocking_impl, async_impl)`: a hand-written blocking implementation paired with
  an async one, for hot paths that should not hop through the private loop (`Function.remote`
  waits on the engine in the caller's thread; Dict and Queue operations drive their store calls
  in the caller's thread or on the caller's loop).
- `@dual_context` / `@dual_class_context`: a method returning a `DualContext[T]`, usable with
  `with` (enter and exit run on the private loop, blocking) and `async with` (awaited), both
  from `obj.m(...)` and `obj.m.aio(...)` (`app.run()`, `Volume.ephemeral()`,
  `vol.batch_upload()`).
- `@dual_static` / `@dual_function`: the same without binding (static methods, module-level
  functions such as `modal.interact`).

The bound object keeps the implementation's `__doc__`, `__name__` and `__wrapped__` (so
`inspect.signature` shows its parameters) and has the `repr` `<modal method Dict.get>`.

Invariants:
- the loop thread is a daemon and is started lazily, once per process (and again after `fork`);
- a blocking call made from inside a running event loop warns with `AsyncUsageWarning`, as Modal
  does, pointing at the caller's line;
- a blocking call made *on* the private loop's thread would deadlock, so it raises instead;
- a blocking call interrupted by Ctrl-C cancels its coroutine (or closes its iterator) and gives
  it `INTERRUPT_GRACE_S` to unwind before the interrupt propagates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import os
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, TypeVar, overload

from typing_extensions import ParamSpec, Self

from modal_ray.exception import AsyncUsageWarning, ExecutionError

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")
A = TypeVar("A")
P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)
A_co = TypeVar("A_co", covariant=True)

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The private loop, started on first use (and restarted in a forked child)."""
    global _loop, _thread, _pid
    if _loop is not None and _pid == os.getpid():
        return _loop
    with _lock:
        if _loop is None or _pid != os.getpid():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def _run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=_run, name="modal-ray-loop", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread, _pid = loop, thread, os.getpid()
    assert _loop is not None
    return _loop


def in_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def check_blocking_call(name: str) -> None:
    if in_loop_thread():
        raise ExecutionError(
            f"Blocking call `{name}` was made on modal-ray's event loop thread; use `.aio` instead."
        )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    warnings.warn(
        f"A blocking Modal interface (`{name}`) was called from inside a running event loop. "
        f"Use `await {name}.aio(...)` instead, or the event loop will be blocked.",
        AsyncUsageWarning,
        stacklevel=_caller_stacklevel(),
    )


def _caller_stacklevel() -> int:
    """The `stacklevel` of the first frame outside modal-ray: the user's line."""
    frame = sys._getframe(2)  # the caller of check_blocking_call: stacklevel 2
    level = 2
    while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).startswith(
        ("modal_ray.", "modal.")
    ):
        frame = frame.f_back
        level += 1
    return level


# How long an interrupted blocking call waits for its coroutine to unwind (cancel in-flight work,
# run `finally` blocks) before it lets the interrupt through anyway.
INTERRUPT_GRACE_S = 10.0


class _Step(Generic[T]):
    """A coroutine submitted to the private loop, with a handle on the task that runs it.

    The concurrent future of `run_coroutine_threadsafe` is marked cancelled at once when cancelled
    from another thread, without waiting for the task to unwind; keeping the task lets an
    interrupted caller cancel it *and wait* until its `finally` blocks have run.
    """

    __slots__ = ("future", "task")

    def __init__(self, coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            self._tracked(coro), loop
        )

    async def _tracked(self, coro: Coroutine[Any, Any, T]) -> T:
        self.task = asyncio.current_task()
        return await coro

    async def cancel_and_wait(self) -> None:
        """On the loop: cancel the task if it still runs, and wait until it has finished."""
        task = self.task
        if task is None:  # never started: closing the coroutine is enough
            return
        if not task.done():
            task.cancel()
            await asyncio.wait([task])


def _unwind(steps: list[_Step[Any]], agen: Any | None, loop: asyncio.AbstractEventLoop) -> None:
    """Cancel `steps` (and close `agen`) on the loop after an interrupt; bounded, never raises.

    Called while an exception (usually `KeyboardInterrupt`) propagates: whatever the cleanup hits is
    dropped so that the caller sees the interrupt, not an error from the teardown.
    """
    if loop.is_closed():
        return

    async def _cleanup() -> None:
        for step in steps:
            await step.cancel_and_wait()
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BaseException):
                await aclose()

    cleanup = asyncio.run_coroutine_threadsafe(_cleanup(), loop)
    if in_loop_thread():  # e.g. an abandoned iterator collected on the loop: cannot wait here
        return
    with contextlib.suppress(Exception):
        cleanup.result(timeout=INTERRUPT_GRACE_S)


def run_sync(coro: Coroutine[Any, Any, T], name: str = "call") -> T:
    """Run `coro` on the private loop and block until it finishes.

    If the caller is interrupted (Ctrl-C raises `KeyboardInterrupt` in the main thread while it
    waits), the coroutine is cancelled and given `INTERRUPT_GRACE_S` to unwind before the
    interrupt propagates.
    """
    check_blocking_call(name)
    loop = get_loop()
    step = _Step(coro, loop)
    try:
        return step.future.result()
    except BaseException:
        if not step.future.done():
            _unwind([step], None, loop)
        raise


async def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the private loop and await it from whatever loop the caller is on."""
    loop = get_loop()
    if in_loop_thread():
        return await coro
    cfut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return await asyncio.wrap_future(cfut)
    except asyncio.CancelledError:
        cfut.cancel()
        raise


def iter_sync(agen: AsyncIterator[T], name: str = "iterator") -> Iterator[T]:
    """Drive an async iterator on the private loop from synchronous code.

    However the caller leaves (the end, `break`, an exception in its loop body, Ctrl-C while it
    waits for the next item), the async iterator is closed on the loop, so its `finally` blocks
    run (a map cancels its in-flight inputs and closes its progress bar). A step still running
    is cancelled first: closing an async generator while it runs is an error.
    """
    check_blocking_call(name)
    loop = get_loop()
    step: _Step[tuple[bool, Any]] | None = None
    try:
        while True:
            step = _Step(_anext(agen), loop)
            done, item = step.future.result()
            step = None
            if done:
                break
            yield item
    except BaseException:
        _unwind([step] if step is not None else [], agen, loop)
        raise
    aclose = getattr(agen, "aclose", None)
    if aclose is not None and not loop.is_closed():
        asyncio.run_coroutine_threadsafe(aclose(), loop).result()


async def iter_async(agen: AsyncIterator[T]) -> AsyncIterator[T]:
    """Drive an async iterator on the private loop from another event loop."""
    if in_loop_thread():
        try:
            async for item in agen:
                yield item
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()
        return
    loop = get_loop()
    step: _Step[tuple[bool, Any]] | None = None
    try:
        while True:
            step = _Step(_anext(agen), loop)
            done, item = await asyncio.wrap_future(step.future)
            step = None
            if done:
                break
            yield item
    except BaseException:
        # Cancelled (or closed) from the caller's loop: unwind on the private loop without
        # blocking the caller's loop.
        await asyncio.get_running_loop().run_in_executor(
            None, _unwind, [step] if step is not None else [], agen, loop
        )
        raise
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        await run_async(aclose())


async def _anext(agen: AsyncIterator[T]) -> tuple[bool, Any]:
    try:
        return False, await agen.__anext__()
    except StopAsyncIteration:
        return True, None


# -- the sync / `.aio` mechanism --------------------------------------------------------------


class _Impl:
    """The two implementations behind one operation, and its name for messages and `repr`."""

    __slots__ = ("aio", "name", "sync", "wrapped")

    def __init__(
        self, sync: Callable[..., Any], aio: Callable[..., Any], wrapped: Callable[..., Any]
    ) -> None:
        self.sync = sync
        self.aio = aio
        self.wrapped = wrapped
        self.name: str = getattr(wrapped, "__name__", "call")


_STATIC: Any = object()  # the owner of an unbound `DualCallable`: nothing is passed first


class DualCallable(Generic[P, R_co, A_co]):
    """`x(*args)` blocks and returns `R`; `x.aio(*args)` returns `A` for async code."""

    __slots__ = ("_impl", "_owner")

    def __init__(self, impl: _Impl, owner: Any = _STATIC) -> None:
        self._impl = impl
        self._owner = owner

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        owner = self._owner
        if owner is _STATIC:
            return self._impl.sync(*args, **kwargs)  # type: ignore[no-any-return]
        return self._impl.sync(owner, *args, **kwargs)  # type: ignore[no-any-return]

    def aio(self, *args: P.args, **kwargs: P.kwargs) -> A_co:
        owner = self._owner
        if owner is _STATIC:
            return self._impl.aio(*args, **kwargs)  # type: ignore[no-any-return]
        return self._impl.aio(owner, *args, **kwargs)  # type: ignore[no-any-return]

    def __set_name__(self, owner: type, name: str) -> None:
        # An unbound one (`dual_static`) assigned in a class body takes the class's name.
        self._impl.name = f"{owner.__name__}.{name}"

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self._impl.wrapped

    @property
    def __name__(self) -> str:
        return str(getattr(self._impl.wrapped, "__name__", self._impl.name))

    @property  # type: ignore[override]
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._impl.wrapped.__doc__

    def __repr__(self) -> str:
        return f"<modal method {self._impl.name}>"


class _Descriptor:
    __slots__ = ("__dict__", "_impl")

    def __init__(self, impl: _Impl) -> None:
        self._impl = impl
        functools.update_wrapper(self, impl.wrapped)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self._impl.name = f"{owner.__name__}.{name}"

    @property
    def name(self) -> str:
        """`Owner.method`, as blocking-call warnings and `repr` spell it."""
        return self._impl.name

    def __repr__(self) -> str:
        return f"<modal method {self._impl.name}>"


class DualMethod(_Descriptor, Generic[P, R_co, A_co]):
    """A method with a blocking form and `.aio`: `obj.m` is a `DualCallable` bound to `obj`.

    Looked up on the class, it stays unbound and takes the instance first (`Dict.get(d, key)`,
    `Dict.get.aio(d, key)`), as a plain method does.
    """

    __slots__ = ()

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> DualCallable[P, R_co, A_co]: ...
    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return DualCallable(self._impl, obj)

    def __call__(self, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        return self._impl.sync(obj, *args, **kwargs)

    def aio(self, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        return self._impl.aio(obj, *args, **kwargs)


class DualClassMethod(_Descriptor, Generic[P, R_co, A_co]):
    """Like `DualMethod`, bound to the class whether looked up on it or on an instance."""

    __slots__ = ()

    def __get__(self, obj: object, objtype: type | None = None) -> DualCallable[P, R_co, A_co]:
        return DualCallable(self._impl, objtype if objtype is not None else type(obj))


def _coroutine_impl(fn: Callable[..., Any]) -> _Impl:
    if inspect.isasyncgenfunction(fn):

        def gen_sync(*args: Any, **kwargs: Any) -> Iterator[Any]:
            return iter_sync(fn(*args, **kwargs), impl.name)

        def gen_aio(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            return iter_async(fn(*args, **kwargs))

        impl = _Impl(gen_sync, gen_aio, fn)
        return impl

    def run(*args: Any, **kwargs: Any) -> Any:
        return run_sync(fn(*args, **kwargs), impl.name)

    def run_aio(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return run_async(fn(*args, **kwargs))

    impl = _Impl(run, run_aio, fn)
    return impl


@overload
def dual(
    fn: Callable[Concatenate[S, P], AsyncIterator[T]], /
) -> DualMethod[P, Iterator[T], AsyncIterator[T]]: ...
@overload
def dual(
    fn: Callable[Concatenate[S, P], Coroutine[Any, Any, R]], /
) -> DualMethod[P, R, Coroutine[Any, Any, R]]: ...
def dual(fn: Callable[..., Any], /) -> DualMethod[..., Any, Any]:
    """Decorator for an `async def` (or async generator) method: blocking call plus `.aio`."""
    return DualMethod(_coroutine_impl(fn))


@overload
def dual_static(
    fn: Callable[P, AsyncIterator[T]], /
) -> DualCallable[P, Iterator[T], AsyncIterator[T]]: ...
@overload
def dual_static(
    fn: Callable[P, Coroutine[Any, Any, R]], /
) -> DualCallable[P, R, Coroutine[Any, Any, R]]: ...
def dual_static(fn: Callable[..., Any], /) -> DualCallable[..., Any, Any]:
    """`dual` for a static method or a module-level function (nothing is bound)."""
    return DualCallable(_coroutine_impl(fn))


dual_function = dual_static  # a module-level function with a blocking call and `.aio`


def sync_and_aio(
    sync_fn: Callable[Concatenate[S, P], R],
    aio_fn: Callable[Concatenate[S, P], A],
    /,
    *,
    wrapped: Callable[..., Any] | None = None,
) -> DualMethod[P, R, A]:
    """A method with hand-written blocking and async forms (for hot paths such as `.remote`).

    Both take the instance first. The blocking form runs in the caller's thread as written: it
    checks for a running event loop itself (`check_blocking_call`) where it blocks.
    """
    return DualMethod(_Impl(sync_fn, aio_fn, wrapped or sync_fn))


class DualContext(Generic[T]):
    """A context manager for `with` and `async with`: `enter()` gives the value bound by `as`,
    `exit(ok)` runs when the block ends (`ok` is False when it raised). Both are coroutines run
    on the private loop; `prepare`, if given, runs first on the caller's own thread."""

    __slots__ = ("_enter", "_exit", "_name", "_prepare")

    def __init__(
        self,
        name: str,
        enter: Callable[[], Awaitable[T]],
        exit: Callable[[bool], Awaitable[None]],
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self._name = name
        self._enter = enter
        self._exit = exit
        self._prepare = prepare

    async def _enter_coro(self) -> T:
        return await self._enter()

    async def _exit_coro(self, ok: bool) -> None:
        await self._exit(ok)

    def __enter__(self) -> T:
        if self._prepare is not None:
            self._prepare()
        return run_sync(self._enter_coro(), self._name)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        run_sync(self._exit_coro(exc_type is None), self._name)

    async def __aenter__(self) -> T:
        if self._prepare is not None:
            self._prepare()
        return await run_async(self._enter_coro())

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await run_async(self._exit_coro(exc_type is None))


def dual_context(
    fn: Callable[Concatenate[S, P], DualContext[T]], /
) -> DualMethod[P, DualContext[T], DualContext[T]]:
    """A method returning a `DualContext`: `with obj.m(...)`, `async with obj.m.aio(...)`."""
    return DualMethod(_Impl(fn, fn, fn))


def dual_class_context(
    fn: Callable[Concatenate[type[S], P], DualContext[T]], /
) -> DualClassMethod[P, DualContext[T], DualContext[T]]:
    """`dual_context` for a class-level constructor (`Dict.ephemeral()`): bound to the class."""
    return DualClassMethod(_Impl(fn, fn, fn))
