"""Modal Functions as Ray tasks: options from `Resources`, three task kinds, and result handles.

Each prepared function owns up to three Ray remote functions, created lazily: one input per task,
a chunk of inputs per task (`.map` groups small inputs), and a streaming generator. Their closures
hold the function's `Invocation`, so Ray exports the user's code once and each call ships only its
arguments, exactly like a raw `ray.remote` function.

Ray's own `max_retries` stays on for system failures (a worker process or node dying); user
exceptions come back as values and are retried by the caller with Modal's backoff.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import cloudpickle
import ray
import ray.exceptions as rex

from modal_ray import config
from modal_ray.exception import InvalidError, SerializationError
from modal_ray.runtime.worker import Invocation
from modal_ray.specs import FunctionSpec, Resources
from modal_ray.warn import warn_once

from . import image_env
from .errors import translate

if TYPE_CHECKING:
    from modal_ray.backends import Pending

PendingT = TypeVar("PendingT", bound="Pending")

SYSTEM_RETRIES = 3
# Carries a spawned call's id to the worker; user code never sees it.
CALL_ID_KWARG = "__modal_ray_call_id__"


def task_options(
    resources: Resources, runtime_env: dict[str, Any] | None, name: str
) -> dict[str, Any]:
    resources = placed_resources(resources, f"Function {name!r}")
    opts: dict[str, Any] = {
        "num_cpus": resources.num_cpus,
        "name": name,
        "max_retries": SYSTEM_RETRIES,
    }
    if resources.num_gpus:
        opts["num_gpus"] = resources.num_gpus
    if resources.memory_bytes:
        opts["memory"] = resources.memory_bytes
    if resources.accelerator_type:
        opts["accelerator_type"] = resources.accelerator_type
    if resources.label_selector is not None:
        opts["label_selector"] = dict(resources.label_selector)
    if resources.fallback_label_selectors:
        opts["fallback_strategy"] = [
            {"label_selector": dict(s)} for s in resources.fallback_label_selectors
        ]
    if runtime_env:
        opts["runtime_env"] = _upload_local_packages(runtime_env)
    return opts


def with_source(runtime_env: dict[str, Any], target: Any, include_source: bool) -> dict[str, Any]:
    """Ship the user's module with the job (Modal's include_source) on a remote cluster.

    On the embedded Ray (and a Ray this process started) workers share this machine's files: a
    `FunctionRef` carries the folder its module was imported from, and a worker that cannot
    import the module from its own path adds that folder (see
    `modal_ray.runtime.worker.FunctionRef`).
    On a cluster reached by address the module that defines the function (its top-level
    package, or the single file, a script run as `python app.py` included) goes into
    `py_modules`. Set MODAL_RAY_SHIP_SOURCE=1 to ship it in every mode, 0 never to."""
    from . import runtime

    module_name = getattr(target, "module", None)
    if not include_source or not module_name:
        return runtime_env
    ship = config.ship_source()
    if ship is False or (ship is None and runtime.mode() != "address"):
        return runtime_env
    path = _source_path(target)
    if not path or "site-packages" in path or "dist-packages" in path:
        return runtime_env
    modules = list(runtime_env.get("py_modules") or [])
    if path not in modules:
        modules.append(path)
    return {**runtime_env, "py_modules": modules}


def _source_path(target: Any) -> str | None:
    """The local folder (a package) or file (a module) that holds the target's top level."""
    file = getattr(target, "file", "")
    if file and os.path.isfile(file):
        return str(file)  # the caller's script, imported by workers under its stem
    top_name = str(target.module).split(".")[0]
    top = sys.modules.get(top_name)
    if top is not None:
        paths = list(getattr(top, "__path__", []) or [])
        path = paths[0] if paths else getattr(top, "__file__", None)
        return str(path) if path else None
    root = getattr(target, "root", "")
    for candidate in (os.path.join(root, top_name), os.path.join(root, top_name + ".py")):
        if root and os.path.exists(candidate):
            return candidate
    return None


def _upload_local_packages(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """The runtime_env as a task or actor gets it. Ray accepts local `py_modules` /
    `working_dir` paths only at the job level: upload them to the cluster's object store
    (content-addressed `gcs://` URIs) so a per-task env can use them. An env that installs
    packages gets the worker guard (`worker_guard.py`)."""
    from .worker_guard import with_guard

    runtime_env = with_guard(runtime_env)
    if runtime_env.get("py_modules"):
        from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

        runtime_env = upload_py_modules_if_needed(dict(runtime_env), include_gitignore=True)
    if runtime_env.get("working_dir"):
        from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

        runtime_env = upload_working_dir_if_needed(dict(runtime_env), include_gitignore=True)
    return runtime_env


def _live_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]


def _fits(node: dict[str, Any], resources: Resources) -> bool:
    """Could `node` ever hold one container of `resources` (its totals, not what is free)?"""
    res = node.get("Resources", {})
    if res.get("CPU", 0) < resources.num_cpus:
        return False
    if resources.num_gpus and res.get("GPU", 0) < resources.num_gpus:
        return False
    if resources.memory_bytes and res.get("memory", 0) < resources.memory_bytes:
        return False
    if resources.accelerator_type and f"accelerator_type:{resources.accelerator_type}" not in res:
        return False
    selectors = [resources.label_selector, *resources.fallback_label_selectors]
    if resources.label_selector is not None or resources.fallback_label_selectors:
        labels = node.get("Labels", {}) or {}
        return any(all(labels.get(k) == v for k, v in (s or {}).items()) for s in selectors)
    return True


def _without_gpu(resources: Resources) -> Resources:
    return replace(
        resources,
        num_gpus=0,
        accelerator_type=None,
        label_selector=None,
        fallback_label_selectors=(),
        gpu_spec=None,
    )


def placed_resources(resources: Resources, what: str) -> Resources:
    """What the cluster is asked for one container of `resources`: the request itself, or,
    with the operator's `MODAL_RAY_GPU_FALLBACK=cpu`, the request without its GPU when no live
    node has that GPU (a warning says so, once per GPU spelling)."""
    if not resources.num_gpus or config.settings().gpu_fallback != "cpu":
        return resources
    nodes = _live_nodes()
    if not nodes or any(_fits(n, resources) for n in nodes):
        return resources
    stripped = _without_gpu(resources)
    if not any(_fits(n, stripped) for n in nodes):
        return resources  # short of more than the GPU: check_feasible says what
    warn_once(
        f"gpu-fallback:{resources.gpu_spec}",
        f"{what} asks for gpu={resources.gpu_spec!r}, which no node of this Ray cluster has;"
        " it runs without a GPU because MODAL_RAY_GPU_FALLBACK=cpu.",
    )
    return stripped


def check_feasible(resources: Resources, what: str) -> None:
    """Refuse a request that no live node can ever satisfy, instead of pending forever."""
    if not config.check_feasible():
        return
    resources = placed_resources(resources, what)
    nodes = _live_nodes()
    if not nodes:
        return
    if any(_fits(n, resources) for n in nodes):
        return
    have = []
    for n in nodes:
        res = n.get("Resources", {})
        accel = sorted(k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:"))
        have.append(
            f"CPU={res.get('CPU', 0):g} GPU={res.get('GPU', 0):g}"
            f" memory={res.get('memory', 0) / 2**20:.0f}MiB"
            + (f" accelerators={accel}" if accel else "")
        )
    want = f"cpu={resources.num_cpus:g}"
    if resources.memory_bytes:
        want += f", memory={resources.memory_bytes // 2**20}MiB"
    gpu_hint = ""
    if resources.num_gpus:
        want += f", gpu={resources.gpu_spec}"
        if any(_fits(n, _without_gpu(resources)) for n in nodes):
            gpu_hint = (
                "; to run GPU requests without a GPU where none exists (development machines),"
                " an operator sets MODAL_RAY_GPU_FALLBACK=cpu"
            )
    raise InvalidError(
        f"{what} asks for {want}, but no node of this Ray cluster can ever provide it "
        f"(nodes: {'; '.join(have)}). Lower the request or add such a node; on an autoscaling "
        f"cluster set MODAL_RAY_CHECK_FEASIBLE=0 to let the request wait for new nodes{gpu_hint}."
    )


def _argument_error(
    exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any], what: str
) -> Exception:
    """Name the argument Ray could not serialize."""
    for i, a in enumerate(args):
        try:
            cloudpickle.dumps(a)
        except Exception as e:
            return SerializationError(
                f"Argument {i} of {what} ({type(a).__name__}) cannot be serialized with"
                f" cloudpickle: {e}"
            )
    for k, v in kwargs.items():
        try:
            cloudpickle.dumps(v)
        except Exception as e:
            return SerializationError(
                f"Keyword argument {k!r} of {what} ({type(v).__name__}) cannot be serialized"
                f" with cloudpickle: {e}"
            )
    return SerializationError(f"The arguments of {what} cannot be serialized: {exc}")


def dumps(value: Any) -> bytes:
    """Pickle a whole chunk at once with cloudpickle (by value for `__main__` code, as Ray does).

    Ray serializes each object of a task's arguments through its own Python-level hooks; a chunk
    of thousands of small inputs is much cheaper to ship as one `bytes` object."""
    return cloudpickle.dumps(value, protocol=5)  # type: ignore[no-any-return]


def run_pickled(inv: Invocation, blob: bytes, call_id: str) -> tuple[bool, bytes]:
    """Run one input given as pickled `(args, kwargs)`: (succeeded, the pickled value or
    `RemoteFailure`)."""
    from modal_ray.errors import RemoteFailure

    try:
        args, kwargs = pickle.loads(blob)
    except Exception as exc:
        import traceback

        failure = RemoteFailure.capture(exc, traceback.format_exc(), "deserialization")
        return False, dumps(failure)
    value = inv.run_one(args, kwargs, call_id)
    try:
        return type(value) is not RemoteFailure, dumps(value)
    except Exception as exc:
        import traceback

        return False, dumps(RemoteFailure.capture(exc, traceback.format_exc(), "serialization"))


class EnginePending:
    """What the pendings of this backend share: one asyncio future on the running loop, made the
    first time the call is awaited (`_future`). Awaiting, `result_async` and `wait_any` all use
    that future, so a call can be waited on any number of times and by several waiters."""

    __slots__ = ()

    def _future(self) -> asyncio.Future[Any]:
        raise NotImplementedError

    async def result_async(self) -> Any:
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result_async().__await__()


async def wait_any(pendings: Sequence[PendingT], timeout: float | None = None) -> list[PendingT]:
    """Wait until at least one of `pendings` is finished; return the finished ones.

    Waits on each pending's own future: no task per pending and round, which matters to a map
    that keeps thousands of calls in flight and waits after every completion."""
    futs: dict[asyncio.Future[Any], PendingT] = {}
    for p in pendings:
        if not isinstance(p, EnginePending):
            raise TypeError(f"{type(p).__name__} is not a call submitted to the Ray backend")
        futs[p._future()] = p
    done, _ = await asyncio.wait(futs, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    return [futs[f] for f in done]


class RayPending(EnginePending):
    """A call running as a Ray task (`ref` is its result)."""

    __slots__ = ("_decode", "_fut", "ref", "what")

    def __init__(self, ref: ray.ObjectRef[Any], what: str, decode: bool = False) -> None:
        self.ref = ref
        self.what = what
        self._decode = decode
        self._fut: asyncio.Future[Any] | None = None

    def result(self, timeout: float | None = None) -> Any:
        try:
            value = ray.get(self.ref, timeout=timeout)
            return pickle.loads(value) if self._decode else value
        except rex.GetTimeoutError:
            raise TimeoutError(f"{self.what} is not finished yet") from None
        except rex.RayError as exc:
            raise translate(exc, self.what) from None

    def _future(self) -> asyncio.Future[Any]:
        if self._fut is None:
            self._fut = asyncio.wrap_future(self.ref.future())
        return self._fut

    async def result_async(self) -> Any:
        try:
            value = await self._future()
        except rex.RayError as exc:
            raise translate(exc, self.what) from None
        return pickle.loads(value) if self._decode else value

    def done(self) -> bool:
        ready, _ = ray.wait([self.ref], timeout=0)
        return bool(ready)

    def cancel(self, force: bool = False) -> None:
        try:
            ray.cancel(self.ref, force=force)
        except (rex.RayError, ValueError, TypeError):
            pass
        if self._fut is not None:  # nobody awaits it now: its error is not "never retrieved"
            self._fut.add_done_callback(drop_outcome)


def drop_outcome(fut: asyncio.Future[Any]) -> None:
    """Retrieve a cancelled call's outcome so asyncio does not log it at exit."""
    if not fut.cancelled():
        fut.exception()


class RayPendingStream:
    def __init__(self, gen: Any, what: str) -> None:
        self._gen = gen
        self.what = what

    def __iter__(self) -> Iterator[Any]:
        try:
            for ref in self._gen:
                yield ray.get(ref)
        except rex.RayError as exc:
            raise translate(exc, self.what) from None

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for ref in self._gen:
                yield await ref
        except rex.RayError as exc:
            raise translate(exc, self.what) from None

    def cancel(self) -> None:
        try:
            ray.cancel(self._gen, force=True)
        except (rex.RayError, ValueError, TypeError):
            pass


class RayPrepared:
    """A Modal Function bound to Ray task options; remote functions are made on first use."""

    service: None = None  # runs as tasks, on no container pool

    def __init__(self, spec: FunctionSpec, invocation: Invocation) -> None:
        self.spec = spec
        self.invocation = invocation
        self.what = f"Function {spec.tag!r}" if spec.tag else "the function"
        runtime_env = with_source(dict(spec.runtime_env), invocation.target, spec.include_source)
        self._options = task_options(spec.resources, runtime_env, spec.tag or "modal")
        if spec.max_calls:
            self._options["max_calls"] = spec.max_calls
        self._one: Any = None
        self._chunk: Any = None
        self._stream: Any = None
        self._pickled: Any = None
        self._image_ready = False
        # The runtime_env as declared (before `_prepare_image` may move its packages to a layer),
        # for whoever prepares this function again elsewhere (the call keeper).
        self.declared_env: dict[str, Any] = dict(self._options.get("runtime_env") or {})

    def _prepare_image(self) -> None:
        """Before the first remote function: install the image's packages, or switch them to
        a layer of their own where they cannot live beside the worker runtime (`image_env`)."""
        if self._image_ready:
            return
        env = self._options.get("runtime_env")
        if env:
            setup = self.invocation.setup
            env, layered = image_env.prepare(env, setup, self.what)
            if layered is not setup:
                self._options["runtime_env"] = env
                self.invocation = replace(self.invocation, setup=layered)
        self._image_ready = True

    def _remote(self, kind: str) -> Any:
        self._prepare_image()
        inv = self.invocation
        if kind == "one":
            # Same shape as a raw `ray.remote` function: Ray ships the user's args as they are.
            def run(*args: Any, **kwargs: Any) -> Any:
                return inv.run_one(args, kwargs, kwargs.pop(CALL_ID_KWARG, None))

            opts = self._options
        elif kind == "chunk":

            def run(blob: bytes, kwargs: dict[str, Any], call_id: str, first: int) -> Any:  # type: ignore[misc]
                return dumps(inv.run_chunk(pickle.loads(blob), kwargs, call_id, first))

            opts = self._options
        elif kind == "pickled":

            def run(blob: bytes, call_id: str) -> Any:  # type: ignore[misc]
                return run_pickled(inv, blob, call_id)

            opts = self._options
        else:

            def run(args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str) -> Any:  # type: ignore[misc]
                yield from inv.run_gen(args, kwargs, call_id)

            opts = {**self._options, "num_returns": "streaming"}
        run.__name__ = run.__qualname__ = (self.spec.tag or "modal").replace(".", "_")
        return ray.remote(run).options(**opts)

    def submit(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str | None = None
    ) -> RayPending:
        if self._one is None:
            self._one = self._remote("one")
        if call_id is not None:
            kwargs = {**kwargs, CALL_ID_KWARG: call_id}
        try:
            return RayPending(self._one.remote(*args, **kwargs), self.what)
        except TypeError as exc:
            raise _argument_error(exc, args, kwargs, self.what) from None

    def submit_chunk(
        self, args_list: list[tuple[Any, ...]], kwargs: dict[str, Any], call_id: str, first: int
    ) -> RayPending:
        if self._chunk is None:
            self._chunk = self._remote("chunk")
        try:
            blob = dumps(args_list)
            return RayPending(self._chunk.remote(blob, kwargs, call_id, first), self.what, True)
        except (TypeError, pickle.PicklingError, AttributeError) as exc:
            for args in args_list:
                err = _argument_error(exc, args, kwargs, self.what)
                if "rgument" in str(err):
                    raise err from None
            raise SerializationError(
                f"The inputs of {self.what} cannot be serialized: {exc}"
            ) from None

    def submit_pickled(self, blob: bytes, call_id: str) -> RayPending:
        """One input whose arguments and outcome stay pickled on the caller's side: the value
        is `(succeeded, pickled outcome)` (see `run_pickled`), for a caller (the call keeper)
        that must not import the user's types."""
        if self._pickled is None:
            self._pickled = self._remote("pickled")
        return RayPending(self._pickled.remote(blob, call_id), self.what)

    def submit_stream(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str
    ) -> RayPendingStream:
        if self._stream is None:
            self._stream = self._remote("stream")
        try:
            return RayPendingStream(self._stream.remote(args, kwargs, call_id), self.what)
        except TypeError as exc:
            raise _argument_error(exc, args, kwargs, self.what) from None
