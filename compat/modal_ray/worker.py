"""What runs inside a worker around every input: context, environment, timeout, failure capture.

Engine-neutral: the Ray backend wraps `Invocation.run_one` / `run_chunk` / `run_gen` in a Ray
task, but nothing here imports Ray. An `Invocation` is pickled once per function and cached by
the engine, so per-input work is only the arguments.

Invariants:
- user exceptions never propagate as exceptions: they come back as a `RemoteFailure` value, so
  the engine's own retry and error logging stay out of user errors; the caller applies Modal's
  retry policy and re-raises the original type with the remote traceback;
- secrets and `env=` variables are set in `os.environ` for the duration of each input and then
  restored, because one worker process may serve several functions;
- `timeout=` is enforced per input with SIGALRM on the worker's main thread (Python code is
  interrupted; a C call that never returns to Python runs until it does).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import secrets
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import context
from .errors import RemoteFailure


class _InputTimeout(BaseException):
    """Raised by the alarm handler; a BaseException so `except Exception` in user code can't
    eat it."""


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """A function found by import in the worker, as Modal re-imports the user's module."""

    module: str
    qualname: str

    def resolve(self) -> Callable[..., Any]:
        obj: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        # A modal.Function or modal.Cls stands where the user's function or class was defined.
        raw = getattr(obj, "_modal_raw_object", None)
        return raw() if callable(raw) else obj  # type: ignore[no-any-return]


@dataclass(slots=True)
class Invocation:
    """Everything the worker needs to run inputs of one function."""

    tag: str
    target: Any  # FunctionRef or the raw callable (pickled by value)
    timeout: float | None
    environment: str
    env: Mapping[str, str] = field(default_factory=dict)  # secrets + env=, applied per input
    setup: Any = None  # an object with .apply(), e.g. the image's worker setup
    # Volumes and bucket mounts: an object with .task_start() / .task_end() (see volumes/).
    mounts: Any = None
    is_async: bool = False
    bound_self: Any = None  # reserved for class methods
    _fn: Callable[..., Any] | None = None
    _item_start: float | None = None  # when the running input started (alarm bookkeeping)

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k not in ("_fn", "_item_start")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self._fn = None
        self._item_start = None

    def function(self) -> Callable[..., Any]:
        fn = self._fn
        if fn is None:
            fn = self.target.resolve() if isinstance(self.target, FunctionRef) else self.target
            self._fn = fn
        return fn  # type: ignore[return-value]

    # -- per-input machinery -------------------------------------------------------------

    @contextlib.contextmanager
    def _scope(self, call_id: str) -> Iterator[bool]:
        """Environment, secrets, image setup and the timeout alarm around one engine task.

        Yields whether the per-input alarm is armed (only on the main thread, with a timeout).
        """
        enter_container(self.environment)
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        token = context.current_call.set(call_id)
        alarm = bool(self.timeout) and threading.current_thread() is threading.main_thread()
        previous = None
        if alarm:
            # One interval timer per engine task; the handler re-arms it for the input that is
            # running, so each input still gets its own `timeout` without two syscalls per input.
            previous = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.timeout)  # type: ignore[arg-type]
        mounted = False
        try:
            if self.setup is not None:
                self.setup.apply()
            if self.mounts is not None:
                self.mounts.task_start()
                mounted = True
            yield alarm
        finally:
            if mounted:
                self.mounts.task_end()
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            context.current_call.reset(token)
            for k, old in saved.items():
                if old is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = old

    def _on_alarm(self, signum: int, frame: Any) -> None:
        start = self._item_start
        timeout = self.timeout or 0.0
        remaining = timeout if start is None else start + timeout - time.monotonic()
        if start is None or remaining > 0.001:
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001))
            return
        self._item_start = None
        raise _InputTimeout()

    def _failure(self, exc: BaseException) -> RemoteFailure:
        if isinstance(exc, _InputTimeout | asyncio.TimeoutError):
            return RemoteFailure(
                "timeout", None, f"{self.tag} timed out after {self.timeout:g}s", ""
            )
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return RemoteFailure.capture(exc, tb)

    def _call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        input_id: str,
        alarm: bool,
    ) -> Any:
        token = context.current_input.set(input_id)
        try:
            if self.is_async:
                return _run_coroutine(fn(*args, **kwargs), self.timeout)
            if alarm:
                self._item_start = time.monotonic()
                try:
                    result = fn(*args, **kwargs)
                finally:
                    self._item_start = None
            else:
                result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                return _run_coroutine(result, self.timeout)
            return result
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            return self._failure(exc)
        finally:
            context.current_input.reset(token)

    def run_one(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None = None
    ) -> Any:
        """One input; ids are made here when the caller did not need to know them."""
        call_id = call_id or f"fc-{secrets.token_hex(11)}"
        try:
            with self._scope(call_id) as alarm:
                return self._call(
                    self.function(), args, kwargs, call_id.replace("fc-", "in-", 1) + "-0", alarm
                )
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            return self._failure(exc)

    def run_chunk(
        self, args_list: list[tuple[Any, ...]], kwargs: dict[str, Any], call_id: str, first: int
    ) -> tuple[list[Any], float]:
        """Run a group of small inputs in one engine task: (one outcome per input, seconds)."""
        prefix = call_id.replace("fc-", "in-", 1)
        start = time.perf_counter()
        try:
            with self._scope(call_id) as alarm:
                fn = self.function()
                call = self._call
                results = [
                    call(fn, args, kwargs, f"{prefix}-{first + i}", alarm)
                    for i, args in enumerate(args_list)
                ]
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            failure = self._failure(exc)
            results = [failure] * len(args_list)
        return results, time.perf_counter() - start

    def run_gen(self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str) -> Iterator[Any]:
        """Yield the generator's items; a failure is yielded as the last item."""
        try:
            with self._scope(call_id) as alarm:
                context.current_input.set(call_id.replace("fc-", "in-", 1) + "-0")
                fn = self.function()
                gen = fn(*args, **kwargs)
                if inspect.isasyncgen(gen):
                    yield from _drain_async_gen(gen, self.timeout)
                    return
                if alarm:
                    self._item_start = time.monotonic()
                try:
                    yield from gen
                finally:
                    self._item_start = None
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            yield self._failure(exc)


_entered_env: str | None = None


def enter_container(environment: str) -> None:
    """First input in this process: it is a container now (`is_local()` is False)."""
    global _entered_env
    if _entered_env == environment:
        return
    _entered_env = environment
    context.mark_remote()
    # Modal's exceptions claim `modal.exception` as their home: the module must be loaded here,
    # or cloudpickle would ship them by value and `except`/`isinstance` would fail in the caller.
    import modal.exception  # noqa: F401

    os.environ["MODAL_ENVIRONMENT"] = environment
    os.environ.setdefault("MODAL_TASK_ID", f"ta-{os.uname().nodename}-{os.getpid()}")
    os.environ.setdefault("MODAL_REGION", "local")
    os.environ.setdefault("MODAL_CLOUD_PROVIDER", "ray")


def _run_coroutine(coro: Any, timeout: float | None) -> Any:
    async def _bounded() -> Any:
        return await asyncio.wait_for(coro, timeout) if timeout else await coro

    return asyncio.run(_bounded())


def _drain_async_gen(agen: Any, timeout: float | None) -> Iterator[Any]:
    loop = asyncio.new_event_loop()
    deadline = loop.time() + timeout if timeout else None
    try:
        while True:
            step = agen.__anext__()
            if deadline is not None:
                step = asyncio.wait_for(step, max(0.0, deadline - loop.time()))
            try:
                yield loop.run_until_complete(step)
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(agen.aclose())
        loop.close()
