"""One private event-loop thread, and the descriptors that expose each async operation twice.

Every operation is written once as `async def` (or an async generator). `obj.op(...)` runs it to
completion on the private loop and blocks the caller; `await obj.op.aio(...)` runs it on the same
loop and awaits the result from the caller's own loop. Running everything on one loop means objects
created by one call (futures, tasks, queues) are valid in every later call, whatever the caller.

Invariants:
- the loop thread is a daemon and is started lazily, once per process (and again after `fork`);
- a blocking call made from inside a running event loop warns with `AsyncUsageWarning`, as Modal
  does;
- a blocking call made *on* the private loop's thread would deadlock, so it raises instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import os
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar

from modal_ray.exception import AsyncUsageWarning, ExecutionError

T = TypeVar("T")

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
        stacklevel=4,
    )


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


class _Bound(Generic[T]):
    """A bound dual method: call it to block, or use `.aio` to await."""

    __slots__ = ("__dict__", "_fn", "_is_gen", "_name", "_self")

    def __init__(self, fn: Callable[..., Any], owner: Any, is_gen: bool, name: str) -> None:
        self._fn = fn
        self._self = owner
        self._is_gen = is_gen
        self._name = name
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def _coro(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._self is None:
            return self._fn(*args, **kwargs)
        return self._fn(self._self, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._is_gen:
            return iter_sync(self._coro(args, kwargs), self._name)
        return run_sync(self._coro(args, kwargs), self._name)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        if self._is_gen:
            return iter_async(self._coro(args, kwargs))
        return run_async(self._coro(args, kwargs))

    def __repr__(self) -> str:
        return f"<modal method {self._name}>"


class dual:
    """Decorator for an `async def` (or async generator) method: blocking call plus `.aio`.

    `static=True` exposes it without binding (for static or class-level helpers).
    """

    def __init__(self, fn: Callable[..., Any], *, static: bool = False) -> None:
        self._fn = fn
        self._static = static
        self._is_gen = inspect.isasyncgenfunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self._qualname = f"{owner.__name__}.{name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> _Bound[Any]:
        if self._static:
            return _Bound(
                self._fn, None, self._is_gen, getattr(self, "_qualname", self._fn.__name__)
            )
        if obj is None:
            obj = objtype
        return _Bound(self._fn, obj, self._is_gen, getattr(self, "_qualname", self._fn.__name__))


def dual_static(fn: Callable[..., Any]) -> dual:
    return dual(fn, static=True)


def dual_function(fn: Callable[..., Awaitable[T]]) -> _Bound[T]:
    """A module-level function with a blocking call and `.aio` (e.g. `modal.interact`)."""
    return _Bound(fn, None, inspect.isasyncgenfunction(fn), fn.__name__)


class _BoundPair:
    """`obj.m(...)` runs the sync implementation; `obj.m.aio(...)` the async one."""

    __slots__ = ("_aio", "_obj", "_sync")

    def __init__(self, obj: Any, sync_fn: Callable[..., Any], aio_fn: Callable[..., Any]) -> None:
        self._obj = obj
        self._sync = sync_fn
        self._aio = aio_fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._sync(self._obj, *args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        return self._aio(self._obj, *args, **kwargs)


class sync_and_aio:
    """A method with hand-written blocking and async forms (for hot paths such as `.remote`).

    Use as `name = sync_and_aio(blocking_impl, async_impl)`; both take `self` first.
    """

    def __init__(self, sync_fn: Callable[..., Any], aio_fn: Callable[..., Any]) -> None:
        self._sync = sync_fn
        self._aio = aio_fn
        self.__wrapped__ = sync_fn
        self.__doc__ = sync_fn.__doc__
        self.__name__ = sync_fn.__name__

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return _BoundPair(obj, self._sync, self._aio)

    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> Any:
        return self._sync(obj, *args, **kwargs)

    def aio(self, obj: Any, *args: Any, **kwargs: Any) -> Any:
        return self._aio(obj, *args, **kwargs)
