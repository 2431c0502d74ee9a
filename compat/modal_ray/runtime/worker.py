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
import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import secrets
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from modal_ray import context, homes
from modal_ray.errors import RemoteFailure


class _InputTimeout(BaseException):
    """Raised by the alarm handler; a BaseException so `except Exception` in user code can't
    eat it."""


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """A function or class found by import in the worker, as Modal imports the user's module.

    `root` is the `sys.path` entry in which the caller found the module's top-level package. A
    worker that cannot import the module from its own path appends `root` to it: a folder added
    to the caller's `sys.path` after Ray started (pytest's rootdir insertion, a notebook's
    `sys.path.append`, a script's `sys.path.insert`) is on no worker's path.

    `entrypoint` marks the caller's `__main__` (a script run as `python app.py`, or `python -m`).
    The worker imports it as the module `module` (from `file` when that exists on its node),
    never as `__main__`, so the script's global scope runs there (globals bound under
    `image.imports()` exist) and its `if __name__ == "__main__":` block does not. Values of that
    module travel back by value: the caller knows it as `__main__`, and Modal too re-declares
    the types of the entrypoint file in results.
    """

    module: str
    qualname: str
    root: str = ""
    file: str = ""
    entrypoint: bool = False

    @staticmethod
    def locate(
        module: ModuleType, qualname: str, include_source: bool = True
    ) -> FunctionRef | None:
        """How a worker can import `qualname` of `module` (caller side), or None: code with no
        file (a notebook, `python -c`), a nested definition, or a script whose running top-level
        statements (outside its `if __name__ == "__main__":` block) would run again on import."""
        if "<locals>" in qualname or not qualname:
            return None
        name = module.__name__
        known = _entrypoints.get(name)  # in a worker: a module it imported as an entrypoint
        ref: FunctionRef | None
        if known is not None and sys.modules.get(name) is module:
            ref = FunctionRef(name, qualname, known.root, known.file, entrypoint=True)
        elif name != "__main__":
            ref = FunctionRef(name, qualname, _root_of(name, getattr(module, "__file__", None)))
        elif include_source:
            ref = _main_ref(module, qualname)
        else:
            return None  # the script is not shipped: its functions travel by value
        if ref is None or include_source:
            return ref
        return FunctionRef(ref.module, qualname, entrypoint=ref.entrypoint)

    def home(self) -> str | None:
        """The folder the user's module was imported from (after `resolve`): a container's
        working directory, as Modal's (`/root`) holds the app's file. None when unknown."""
        file = getattr(sys.modules.get(self.module), "__file__", None)
        if not isinstance(file, str):
            return None
        root = _root_of(self.module, file)
        return root if os.path.isdir(root) else None

    def resolve(self) -> Callable[..., Any]:
        obj: Any = self._import()
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        # A modal.Function or modal.Cls stands where the user's function or class was defined.
        raw = getattr(obj, "_modal_raw_object", None)
        return raw() if callable(raw) else obj  # type: ignore[no-any-return]

    def _import(self) -> ModuleType:
        global _importing
        with _import_lock:
            _importing += 1
            try:
                if self.file and os.path.isfile(self.file):
                    module = _import_file(self.module, self.file, self.root)
                else:
                    module = _import_by_name(self.module, self.root)
            finally:
                _importing -= 1
            if self.entrypoint and module.__name__ not in _entrypoints:
                _entrypoints[module.__name__] = self
                _pickle_by_value(module)
        return module


# Modules this process imported as a caller's entrypoint (see `FunctionRef`), by module name.
_entrypoints: dict[str, FunctionRef] = {}
_import_lock = threading.RLock()
_importing = 0  # > 0 while a worker imports user code for a FunctionRef
# The copies of cloudpickle that may pickle a worker's results (Ray ships its own, vendored).
_PICKLERS = ("cloudpickle", "ray.cloudpickle")


def importing_user_code() -> bool:
    """True while this worker imports the user's module to find a function or class."""
    return _importing > 0


def refuse_calls_during_import(what: str) -> None:
    """Calls made while a worker imports the user's module would start the app again in every
    container, each importing the module again (Modal refuses them too)."""
    if _importing:
        from modal_ray.exception import InvalidError

        raise InvalidError(
            f"{what} was called while a container imported the module that defines it: code at "
            "the top level of that module runs again in every container. Put `app.run()` and "
            'remote calls under `if __name__ == "__main__":` or in an '
            "`@app.local_entrypoint()`."
        )


def _root_of(name: str, origin: str | None) -> str:
    """The `sys.path` entry from which `name` was imported, given its file."""
    if not origin:
        return ""
    path = os.path.dirname(os.path.abspath(origin))
    levels = name.count(".") + (1 if os.path.basename(origin).startswith("__init__.") else 0)
    for _ in range(levels):
        path = os.path.dirname(path)
    return path


def _main_ref(main: ModuleType, qualname: str) -> FunctionRef | None:
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py") or not os.path.isfile(file):
        return None  # a notebook, `python -c`, stdin
    file = os.path.realpath(file)
    if not _safe_to_import(main, file):
        return None
    spec = getattr(main, "__spec__", None)
    spec_name = getattr(spec, "name", None)
    if isinstance(spec_name, str) and spec_name and spec_name != "__main__":  # python -m pkg.app
        return FunctionRef(spec_name, qualname, _root_of(spec_name, file), entrypoint=True)
    name = os.path.splitext(os.path.basename(file))[0]
    if not name.isidentifier():
        return None
    return FunctionRef(name, qualname, os.path.dirname(file), file, entrypoint=True)


def _safe_to_import(main: ModuleType, file: str) -> bool:
    """False while the script runs a top-level statement outside its `__main__` guard (such as
    an unguarded `with app.run():`): importing the file in a worker would run it again."""
    threads = [sys._getframe(), sys._current_frames().get(threading.main_thread().ident or 0)]
    for frame in threads:
        while frame is not None:
            if frame.f_code.co_name == "<module>" and frame.f_globals is main.__dict__:
                return any(a <= frame.f_lineno <= b for a, b in _main_guards(file))
            frame = frame.f_back
    return True


@functools.lru_cache(maxsize=16)
def _main_guards(file: str) -> tuple[tuple[int, int], ...]:
    """Line ranges of the top-level `if __name__ == "__main__":` blocks of a script."""
    import ast

    try:
        with open(file, "rb") as fh:
            tree = ast.parse(fh.read(), file)
    except (OSError, SyntaxError, ValueError):
        return ()
    out = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            out.append((node.lineno, node.end_lineno or node.lineno))
    return tuple(out)


def _is_main_test(test: Any) -> bool:
    import ast

    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and values == ["__main__"]


def _import_by_name(name: str, root: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not (name == missing or name.startswith(missing + ".")) or not missing:
            raise  # something the module itself imports is missing
        if not root or root in sys.path or not os.path.isdir(root):
            raise
    # Appended, not inserted: the worker's own packages keep precedence over the caller's folder.
    sys.path.append(root)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def _import_file(name: str, file: str, root: str) -> ModuleType:
    """Import a script as the module `name` (a fresh name if another module holds it)."""
    existing = sys.modules.get(name)
    if existing is not None:
        origin = getattr(existing, "__file__", None)
        if origin and os.path.realpath(origin) == file:
            return existing
        digest = hashlib.sha1(file.encode()).hexdigest()[:10]
        name = f"{name}_{digest}"
        if name in sys.modules:
            return sys.modules[name]
    if root and root not in sys.path and os.path.isdir(root):
        sys.path.append(root)  # the script's own sibling imports, as `python app.py` allows
    module = exec_file_as_module(name, file)
    if module is None:
        raise ImportError(f"Cannot import {file} as a module", name=name, path=file)
    return module


def exec_file_as_module(name: str, file: str | os.PathLike[str]) -> ModuleType | None:
    """Run a source file as the module `name` (registered in `sys.modules`, and removed again if
    its code raises); None when the file cannot be loaded as Python source. Shared by the CLI
    (`modal run app.py`) and workers, so both import a script the same way."""
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _pickle_by_value(module: ModuleType) -> None:
    import cloudpickle  # noqa: F401 - loaded, so that the loop below registers with it

    for name in _PICKLERS:
        register = getattr(sys.modules.get(name), "register_pickle_by_value", None)
        if callable(register):
            with contextlib.suppress(Exception):
                register(module)


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
    _home: str | None = None  # the working directory of its inputs (`FunctionRef.home`)

    def __getstate__(self) -> dict[str, Any]:
        skip = ("_fn", "_item_start", "_home")
        return {k: getattr(self, k) for k in self.__slots__ if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self._fn = None
        self._home = None
        self._item_start = None

    def function(self) -> Callable[..., Any]:
        fn = self._fn
        if fn is None:
            if isinstance(self.target, FunctionRef):
                fn = self.target.resolve()
                self._home = self.target.home()
            else:
                fn = self.target
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
        # An image's `workdir` is the run's: the worker process, which outlives the run, goes
        # back to where it was (the run's directories are removed when it ends). Without one,
        # inputs run in the folder that holds the app's module, as Modal's containers do.
        by_ref = isinstance(self.target, FunctionRef)
        cwd = _cwd() if self.setup is not None or by_ref else None
        undo_setup = None  # what the setup undoes after the input (an image's package layer)
        try:
            if self.setup is not None:
                undo_setup = self.setup.apply()
            if by_ref:
                self.function()
                if self._home is not None and _cwd() == cwd:
                    os.chdir(self._home)
            if self.mounts is not None:
                self.mounts.task_start()
                mounted = True
            yield alarm
        finally:
            if cwd is not None:
                with contextlib.suppress(OSError):
                    os.chdir(cwd)
            if callable(undo_setup):
                undo_setup()
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


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


_entered_env: str | None = None


def enter_container(environment: str) -> None:
    """Each input: this process is a container now (`is_local()` is False), in `environment`."""
    global _entered_env
    # Set on every input, not once: they are the user's environment variables, and user code (or
    # a secret restored after an input, or another thread's input) may have changed or removed
    # them since. `setdefault` keeps a clustered rank's own task id.
    environ = os.environ
    environ["MODAL_ENVIRONMENT"] = environment
    if "MODAL_TASK_ID" not in environ:
        environ["MODAL_TASK_ID"] = f"ta-{os.uname().nodename}-{os.getpid()}"
    environ.setdefault("MODAL_REGION", "local")
    environ.setdefault("MODAL_CLOUD_PROVIDER", "ray")
    if _entered_env == environment:
        return
    context.mark_remote()
    # Modal's exceptions claim `modal.exception` as their home: the module must be loaded here,
    # or cloudpickle would ship them by value and `except`/`isinstance` would fail in the caller.
    homes.load()
    _entered_env = environment  # last: a failure above is retried on the next input


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
