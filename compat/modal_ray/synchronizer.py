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


def run_sync(coro: Coroutine[Any, Any, T], name: str = "call") -> T:
    """Run `coro` on the private loop and block until it finishes."""
    check_blocking_call(name)
    fut = asyncio.run_coroutine_threadsafe(coro, get_loop())
    try:
        return fut.result()
    except KeyboardInterrupt:
        fut.cancel()
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
    """Drive an async iterator on the private loop from synchronous code."""
    check_blocking_call(name)
    loop = get_loop()
    try:
        while True:
            fut = asyncio.run_coroutine_threadsafe(_anext(agen), loop)
            done, item = fut.result()
            if done:
                return
            yield item
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(aclose(), loop).result()


async def iter_async(agen: AsyncIterator[T]) -> AsyncIterator[T]:
    """Drive an async iterator on the private loop from another event loop."""
    try:
        while True:
            done, item = await run_async(_anext(agen))
            if done:
                return
            yield item
    finally:
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
