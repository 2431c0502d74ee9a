"""A Modal container inside one engine replica: lifecycle hooks, concurrency, batching, timeouts.

Engine-neutral: the Ray backend creates one `Container` per Serve replica and forwards calls to
it; nothing here imports Ray. A container serves one class (with one parameter set) or one
function that needs container semantics (`@modal.concurrent`, `@modal.batched`,
`min_containers`).

Invariants:
- `@modal.enter` hooks run once, in order (`snap=True` ones first), before the first input; if
  one raises, the container stays up and every input fails with that error (no hang, no restart
  loop);
- sync inputs run on a thread pool of `max_inputs` threads, async inputs as tasks on the
  replica's event loop (Modal's `@modal.concurrent` semantics); the engine caps how many inputs
  are in flight;
- a batched method receives one list per parameter and must return a list of the same length;
  every caller gets its own element, or the batch's error (`batching.py`);
- secrets and `env=` are set once for the process: a replica serves only this container;
- `@modal.exit` hooks run once when the engine stops the replica.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import functools
import inspect
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modal_ray import context
from modal_ray.errors import RemoteFailure

from .batching import _Batcher
from .worker import FunctionRef, enter_container


@dataclass(slots=True)
class ContainerSpec:
    """What a replica needs to become a container. Pickled once per deployment."""

    tag: str
    target: Any  # FunctionRef or the class / function itself
    is_class: bool
    params: Mapping[str, Any]
    environment: str
    env: Mapping[str, str] = field(default_factory=dict)
    setup: Any = None
    # Volumes and bucket mounts: an object with .container_start() / .container_stop().
    mounts: Any = None
    timeout: float | None = None
    max_inputs: int = 1
    batch_max_size: int | None = None
    batch_wait_ms: int = 0
    batched_method: str | None = None  # the method (or "__call__") that is batched


def _hooks(user_cls: type, kind: str) -> list[tuple[str, bool]]:
    """Names of `@enter` (with snap flag) or `@exit` methods, in definition order (bases first)."""
    seen: dict[str, tuple[str, bool]] = {}
    for klass in reversed(user_cls.__mro__):
        for name, value in vars(klass).items():
            opts = getattr(value, "_modal_options", None)
            if opts and opts.get(kind):
                seen[name] = (name, bool(opts.get("snap")))
    return list(seen.values())


def instantiate(user_cls: Any, params: Mapping[str, Any]) -> Any:
    """Create the user's object without calling `__init__`, with its parameters set."""
    obj = user_cls.__new__(user_cls)
    for klass in reversed(user_cls.__mro__):
        for name, value in list(vars(klass).items()):
            if isinstance(value, dataclasses.Field) and value.metadata.get("modal_parameter"):
                if name in params:
                    setattr(obj, name, params[name])
                elif value.default is not dataclasses.MISSING:
                    setattr(obj, name, value.default)
    for name, value in params.items():
        setattr(obj, name, value)
    return obj


async def _call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Container:
    def __init__(self, spec: ContainerSpec) -> None:
        self.spec = spec
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, spec.max_inputs), thread_name_prefix=f"modal-{spec.tag}"
        )
        self._obj: Any = None
        self._fn: Callable[..., Any] | None = None
        self._enter_failure: RemoteFailure | None = None
        self._stopped = False
        self._batcher: Any = None
        # At most `max_inputs` inputs (or batches) run at once; the rest wait here, in order.
        self._slots: asyncio.Semaphore | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Import the code, build the object, run `@enter` hooks. Failures are kept, not raised."""
        spec = self.spec
        enter_container(spec.environment)
        os.environ.update(spec.env)
        try:
            cwd = os.getcwd()
            if spec.setup is not None:
                await asyncio.get_running_loop().run_in_executor(self._pool, spec.setup.apply)
            if spec.mounts is not None:
                await asyncio.get_running_loop().run_in_executor(
                    self._pool, spec.mounts.container_start
                )
            target = spec.target.resolve() if isinstance(spec.target, FunctionRef) else spec.target
            home = spec.target.home() if isinstance(spec.target, FunctionRef) else None
            if home is not None and os.getcwd() == cwd:
                # No image `workdir`: the container works in the folder that holds the app's
                # module, as Modal's (`/root`) does. The process is this container's alone.
                os.chdir(home)
            if spec.is_class:
                self._obj = instantiate(target, spec.params)
                hooks = _hooks(type(self._obj), "enter")
                # snap=True hooks run first (Modal: before the memory snapshot), then the others.
                for name, _snap in sorted(hooks, key=lambda h: not h[1]):
                    await self._run_hook(name)
            else:
                self._fn = target
        except BaseException as exc:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self._enter_failure = RemoteFailure.capture(exc, tb)
            self._enter_failure.retryable = False

    async def _run_hook(self, name: str) -> None:
        method = getattr(self._obj, name)
        if inspect.iscoroutinefunction(method):
            await method()
        else:
            await asyncio.get_running_loop().run_in_executor(self._pool, method)

    async def stop(self) -> None:
        """Run `@exit` hooks once (scale-down, app stop, driver exit)."""
        if self._stopped:
            return
        self._stopped = True
        if self._obj is not None and self._enter_failure is None:
            for name, _ in _hooks(type(self._obj), "exit"):
                try:
                    await self._run_hook(name)
                except Exception:
                    traceback.print_exc()
        if self.spec.mounts is not None and self._enter_failure is None:
            try:
                # Modal commits a container's volume changes when it stops.
                await asyncio.get_running_loop().run_in_executor(
                    self._pool, self.spec.mounts.container_stop
                )
            except Exception:
                traceback.print_exc()
        self._pool.shutdown(wait=False)

    # -- calls -------------------------------------------------------------------------------

    @property
    def start_failure(self) -> RemoteFailure | None:
        """The error `start()` kept (a failing import or `@modal.enter` hook), if any."""
        return self._enter_failure

    def user_callable(self, method: str) -> Callable[..., Any]:
        """The user's function, or the bound `method` of the container's object (web
        endpoints call it directly, under the engine's HTTP concurrency limit)."""
        return self._callable(method)

    def _callable(self, method: str) -> Callable[..., Any]:
        if self._fn is not None:
            return self._fn
        return getattr(self._obj, method)  # type: ignore[no-any-return]

    def _failure(self, exc: BaseException) -> RemoteFailure:
        if isinstance(exc, asyncio.TimeoutError | TimeoutError) and self.spec.timeout:
            return RemoteFailure(
                "timeout", None, f"{self.spec.tag} timed out after {self.spec.timeout:g}s", ""
            )
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return RemoteFailure.capture(exc, tb)

    async def _invoke(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, self.spec.max_inputs))
        async with self._slots:
            return await self._invoke_now(fn, args, kwargs)

    async def _invoke_now(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if inspect.iscoroutinefunction(fn):
            coro = fn(*args, **kwargs)
        else:
            ctx = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            coro = loop.run_in_executor(self._pool, functools.partial(ctx.run, fn, *args, **kwargs))
        if self.spec.timeout:
            return await asyncio.wait_for(coro, self.spec.timeout)
        return await coro

    async def call(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None
    ) -> Any:
        """One input: its value, or a `RemoteFailure`."""
        if self._enter_failure is not None:
            return self._enter_failure
        call_id = call_id or f"fc-{os.urandom(11).hex()}"
        t_call = context.current_call.set(call_id)
        t_input = context.current_input.set(call_id.replace("fc-", "in-", 1) + "-0")
        try:
            if self.spec.batch_max_size and method == self.spec.batched_method:
                return await self._batched(method, args, kwargs)
            return await self._invoke(self._callable(method), args, kwargs)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            return self._failure(exc)
        finally:
            context.current_input.reset(t_input)
            context.current_call.reset(t_call)

    async def call_chunk(
        self,
        method: str,
        args_list: list[tuple[Any, ...]],
        kwargs: dict[str, Any],
        call_id: str,
        first: int,
    ) -> tuple[list[Any], float]:
        """Several inputs of one map in one request; they run concurrently up to `max_inputs`."""
        start = time.perf_counter()
        prefix = call_id.replace("fc-", "in-", 1)

        async def one(i: int, args: tuple[Any, ...]) -> Any:
            token = context.current_input.set(f"{prefix}-{first + i}")
            try:
                return await self.call(method, args, kwargs, call_id)
            finally:
                context.current_input.reset(token)

        if self.spec.max_inputs > 1 or self.spec.batch_max_size:
            results = list(await asyncio.gather(*(one(i, a) for i, a in enumerate(args_list))))
        else:
            results = [await one(i, a) for i, a in enumerate(args_list)]
        return results, time.perf_counter() - start

    async def call_stream(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str
    ) -> AsyncIterator[Any]:
        """A generator method: items as produced; a failure is the last item."""
        if self._enter_failure is not None:
            yield self._enter_failure
            return
        context.current_call.set(call_id)
        context.current_input.set(call_id.replace("fc-", "in-", 1) + "-0")
        try:
            gen = self._callable(method)(*args, **kwargs)
            if inspect.isasyncgen(gen):
                async for item in gen:
                    yield item
            else:
                loop = asyncio.get_running_loop()
                done = object()
                while True:
                    item = await loop.run_in_executor(self._pool, next, gen, done)
                    if item is done:
                        break
                    yield item
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:
            yield self._failure(exc)

    # -- dynamic batching ----------------------------------------------------------------------

    async def _batched(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._batcher is None:
            self._batcher = _Batcher(
                self, method, self.spec.batch_max_size or 1, self.spec.batch_wait_ms / 1000
            )
        return await self._batcher.submit(args, kwargs)
