"""Durable spawned calls on a long-lived cluster: one call keeper per environment.

A call spawned by a driver is a Ray task owned by that driver, and dies with it. On a cluster
that outlives its clients (`MODAL_RAY_ADDRESS`), `.spawn` / `.spawn_map` hand their calls to the
environment's call keeper instead: a detached async actor pinned to the head (as the registry
is) that submits each call, owns it, and writes its outcome into the head's state store
(`calls/<environment>.sqlite`, rules in `modal_ray.storage.calls_server`). Any process of the
cluster then reads the outcome by call id (`FunctionCall.from_id(...).get()`), also after the
spawning process has exited; outcomes are kept `RETENTION_S` (7 days) after the call ended.

Invariants:
- The keeper never unpickles user data: arguments go to the worker pickled and the outcome
  comes back pickled (`RayPrepared.submit_pickled`, `_Replica.pickled`); it unpickles only the
  call's target (a record, which names the user's code without importing it).
- A call is written (pending, with its arguments) before `spawn` returns, so a keeper that
  restarts (Ray restarts it, its state is the file) runs every pending call again; a call whose
  engine task died with the old keeper runs again (at least once).
- Calls bound to a driver (spawned by an ephemeral run that is not detached) are cancelled when
  that driver's job is dead, as Modal stops an ephemeral app whose client went away; calls of a
  deployed app, or of a detached run, are bound to nothing.
- The plain `.remote` path never touches the keeper; on the embedded Ray (nothing outlives the
  process) `.spawn` keeps its in-process path (`durable()` is False there).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import pickle
import time
from typing import Any

import cloudpickle
import ray
import ray.exceptions as rex

from modal_ray import config, exception, storage
from modal_ray.exception import Error, NotFoundError
from modal_ray.storage.calls_server import CallsServer, calls_path

from . import runtime
from .errors import translate
from .store import _Failure, unpack_reply

KEEPER_NAME = "modal-call-keeper"
CALL_ATTEMPTS = 12
DEFAULT_IN_FLIGHT = 1000  # calls of one target running at once, unless max_containers says less
OWNER_CHECK_S = 2.0
EPHEMERAL_KEY = b"modal-ray:ephemeral-cluster"
_HEAD = {"node:__internal_head__": 0.001}
_log = logging.getLogger(__name__)


class _Target:
    """What a target runs, built in the keeper from its record: the engine's prepared function
    and the call spec (retries)."""

    def __init__(self, prepared: Any, spec: Any, limit: int) -> None:
        self.prepared = prepared
        self.spec = spec
        self.queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self.limit = limit
        self.workers = 0


def _build(blob: bytes) -> _Target:
    """Rebuild the Function (or class method) a target describes and prepare it."""
    from modal_ray import naming
    from modal_ray.cls import Cls
    from modal_ray.function import Function

    from . import serve

    record, method, params = pickle.loads(blob)
    # The pools of a run belong to its driver (the janitor watches it), never to the keeper.
    serve._watched_prefixes.add(naming.run_prefix(record.app.environment, record.app.app_id))
    if method is None:
        fn: Any = Function._from_record(record)
    else:
        fn = getattr(Cls._from_record(record)(**params), method)
    prepared = fn._ensure_prepared()
    spec = fn._spec
    limit = DEFAULT_IN_FLIGHT
    if spec is not None and spec.max_containers:
        limit = max(1, min(limit, int(spec.max_containers)))
    return _Target(prepared, spec, limit)


def _failure_blob(exc: BaseException) -> bytes:
    import traceback

    from modal_ray.errors import RemoteFailure

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return bytes(cloudpickle.dumps(RemoteFailure.capture(exc, tb, "user")))


def _state_of(ok: bool, blob: bytes) -> str:
    if ok:
        return "success"
    try:
        failure = pickle.loads(blob)  # a RemoteFailure: the user's exception stays pickled in it
    except Exception:
        return "failure"
    return "timeout" if getattr(failure, "kind", "") == "timeout" else "failure"


# Waits (`get` on calls still running) each hold a slot while they last: many slots, so that
# thousands of waiting callers never hold up a `spawn`. A slot is only a coroutine.
MAX_CONCURRENCY = 20_000
_OPTIONS: dict[str, Any] = {
    "num_cpus": 0,
    "max_restarts": -1,
    "max_task_retries": -1,
    "max_concurrency": MAX_CONCURRENCY,
    "resources": _HEAD,
}


@ray.remote(**_OPTIONS)
class _CallKeeper:
    """Runs and records the spawned calls of one environment (see the module docstring)."""

    def __init__(self, environment: str) -> None:
        self._environment = environment
        path = calls_path(config.state_root(), environment)
        self._server = CallsServer(path, sync=storage.store_sync())
        self._targets: dict[str, _Target] = {}
        self._building: dict[str, asyncio.Future[_Target]] = {}
        self._inflight: dict[str, Any] = {}  # call id -> its engine pending
        self._runs: dict[str, asyncio.Task[None]] = {}  # call id -> the task running it
        self._waiters: dict[str, asyncio.Event] = {}
        self._started: asyncio.Future[None] | None = None
        self._owner_task: asyncio.Task[None] | None = None
        self._workers: set[asyncio.Task[None]] = set()

    async def _db(self, method: str, *args: Any) -> Any:
        return await asyncio.to_thread(self._server.call, method, True, args)

    async def _start(self) -> None:
        """First call after (re)start: run every call the file says is pending."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await asyncio.to_thread(runtime.connect, self._environment)
                for call_id, digest, args in await self._db("open_calls"):
                    await self._enqueue(digest, None, [(call_id, args)])
                if await self._db("owned"):
                    self._watch_owners()
            finally:
                self._started.set_result(None)
        await self._started

    # -- entry points ------------------------------------------------------------------------

    async def spawn(self, request: bytes) -> bytes:
        """Record and start calls: request `(digest, target blob or None, meta, [(call id,
        pickled (args, kwargs))])`. Replies `_Failure("NotFoundError")` for an unknown target
        sent without its blob."""
        await self._start()
        digest, blob, meta, calls = pickle.loads(request)
        try:
            new = set(await self._db("submit", digest, blob, meta, calls))
        except Error as exc:
            return pickle.dumps(_Failure(type(exc).__name__, str(exc)))
        await self._enqueue(digest, blob, [c for c in calls if c[0] in new])
        if meta.get("owner_job"):
            self._watch_owners()
        return pickle.dumps(None)

    async def wait(self, call_id: str, timeout: float) -> bytes:
        """`(state, pickled outcome or None, function name)` once the call ended or `timeout`
        seconds passed (state "pending"); `_Failure` for an unknown id."""
        await self._start()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            event = self._waiters.get(call_id)
            if event is None:
                event = self._waiters[call_id] = asyncio.Event()
            try:
                state, result, name = await self._db("outcome", call_id)
            except Error as exc:
                return pickle.dumps(_Failure(type(exc).__name__, str(exc)))
            remaining = deadline - time.monotonic()
            if state != "pending" or remaining <= 0:
                return pickle.dumps((state, result, name))
            try:
                await asyncio.wait_for(event.wait(), min(remaining, 10.0))
            except asyncio.TimeoutError:
                pass

    async def cancel(self, call_ids: list[str], force: bool) -> list[str]:
        await self._start()
        marked = await self._db("cancel", call_ids)
        self._stop_runs(marked, force)
        return list(marked)

    async def cancel_app(self, app_id: str) -> list[str]:
        await self._start()
        marked = await self._db("cancel_app", app_id)
        # The app stopped: its calls end now (a task's worker is killed, as Modal stops a
        # stopped app's containers; a polite cancel would not reach code running in a thread).
        self._stop_runs(marked, True)
        return list(marked)

    async def graph(self, call_id: str) -> bytes:
        await self._start()
        try:
            return pickle.dumps(await self._db("graph", call_id))
        except Error as exc:
            return pickle.dumps(_Failure(type(exc).__name__, str(exc)))

    async def busy(self, app_id: str) -> int:
        await self._start()
        return int(await self._db("busy", app_id))

    async def ping(self) -> bool:
        await self._start()
        return True

    # -- running calls -----------------------------------------------------------------------------

    async def _target(self, digest: str, blob: bytes | None) -> _Target:
        target = self._targets.get(digest)
        if target is not None:
            return target
        building = self._building.get(digest)
        if building is None:
            building = self._building[digest] = asyncio.get_running_loop().create_future()
            try:
                if blob is None:
                    blob = await self._db("target", digest)
                target = await asyncio.to_thread(_build, blob)
                self._targets[digest] = target
                building.set_result(target)
            except BaseException as exc:
                building.set_exception(exc)
                building.exception()  # retrieved: every waiter gets it below
            finally:
                self._building.pop(digest, None)
        return await building

    async def _enqueue(
        self, digest: str, blob: bytes | None, calls: list[tuple[str, bytes]]
    ) -> None:
        if not calls:
            return
        try:
            target = await self._target(digest, blob)
        except Exception as exc:
            failure = _failure_blob(
                exception.ExecutionError(f"The spawned function could not be prepared: {exc}")
            )
            for call_id, _ in calls:
                await self._finish(call_id, "failure", failure)
            return
        target.queue.extend(calls)
        loop = asyncio.get_running_loop()
        while target.workers < target.limit and target.workers < len(target.queue):
            target.workers += 1
            worker = loop.create_task(self._work(target))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    async def _work(self, target: _Target) -> None:
        try:
            while target.queue:
                call_id, args = target.queue.popleft()
                task = asyncio.get_running_loop().create_task(self._run(target, call_id, args))
                self._runs[call_id] = task
                try:
                    await task
                except asyncio.CancelledError:
                    pass  # this call was cancelled; go on with the next
                except Exception:
                    _log.exception("call keeper: running %s failed", call_id)
                finally:
                    self._runs.pop(call_id, None)
        finally:
            target.workers -= 1

    async def _run(self, target: _Target, call_id: str, args: bytes) -> None:
        retries = getattr(target.spec, "retries", None)
        attempt = 0
        while True:
            try:
                pending = target.prepared.submit_pickled(args, call_id)
            except Exception as exc:
                ok, blob = False, _failure_blob(exc)
            else:
                self._inflight[call_id] = pending
                try:
                    ok, blob = await pending.result_async()
                except asyncio.CancelledError:
                    pending.cancel(force=False)
                    raise
                except Error as exc:  # the engine's failure (a worker lost for good)
                    ok, blob = False, _failure_blob(exc)
                finally:
                    self._inflight.pop(call_id, None)
            if ok or retries is None or attempt >= retries.max_retries:
                break
            attempt += 1
            await asyncio.sleep(retries.delay_for(attempt))
        await self._finish(call_id, _state_of(ok, blob), blob)

    async def _finish(self, call_id: str, state: str, blob: bytes | None) -> None:
        await self._db("finish", call_id, state, blob)
        self._wake(call_id)

    def _wake(self, call_id: str) -> None:
        event = self._waiters.pop(call_id, None)
        if event is not None:
            event.set()

    def _stop_runs(self, call_ids: list[str], force: bool) -> None:
        dropped = set(call_ids)
        for target in self._targets.values():
            if target.queue and any(c in dropped for c, _ in target.queue):
                target.queue = collections.deque(c for c in target.queue if c[0] not in dropped)
        for call_id in call_ids:
            pending = self._inflight.pop(call_id, None)
            if pending is not None:
                pending.cancel(force=force)
            task = self._runs.get(call_id)
            if task is not None:
                task.cancel()
            self._wake(call_id)

    # -- calls bound to a driver ----------------------------------------------------------------

    def _watch_owners(self) -> None:
        if self._owner_task is None or self._owner_task.done():
            self._owner_task = asyncio.get_running_loop().create_task(self._owners_loop())

    async def _owners_loop(self) -> None:
        while True:
            await asyncio.sleep(OWNER_CHECK_S)
            try:
                owned = await self._db("owned")
                if not owned:
                    return
                jobs = await asyncio.to_thread(ray._private.state.jobs)  # type: ignore[no-untyped-call]
                dead = {j["JobID"] for j in jobs if j.get("IsDead")}
                for job, app_id in owned:
                    if job in dead:
                        self._stop_runs(await self._db("cancel_app", app_id), True)
            except Exception:
                _log.exception("call keeper: checking the drivers of bound calls failed")


# -- client side -------------------------------------------------------------------------------

_handles: dict[str, Any] = {}
_sent: set[tuple[str, str]] = set()  # (environment, digest) whose target this process sent
_durable: bool | None = None


def _handle(environment: str) -> Any:
    handle = _handles.get(environment)
    if handle is None:
        runtime.connect(environment)
        handle = _CallKeeper.options(  # type: ignore[attr-defined]
            name=KEEPER_NAME,
            namespace=config.namespace_for(environment),
            lifetime="detached",
            get_if_exists=True,
        ).remote(environment)
        _handles[environment] = handle
    return handle


async def _call(environment: str, method: str, *args: Any) -> Any:
    """One keeper operation, retried while Ray restarts the keeper."""
    for attempt in range(CALL_ATTEMPTS):
        handle = _handles.get(environment)
        if handle is None:
            handle = await asyncio.to_thread(_handle, environment)
        try:
            return await getattr(handle, method).remote(*args)
        except (rex.ActorDiedError, rex.ActorUnavailableError) as exc:
            _handles.pop(environment, None)
            if attempt == CALL_ATTEMPTS - 1:
                raise translate(exc, f"the call keeper's {method}") from exc
            await asyncio.sleep(min(0.05 * 2.0**attempt, 1.0))
        except rex.RayError as exc:
            raise translate(exc, f"the call keeper's {method}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def durable() -> bool:
    """Do spawned calls go to the keeper? Yes on a cluster that outlives this process: one
    reached by address, or, in a worker or a process that attached to a running Ray, any Ray
    that was not started by a process for itself alone (the embedded Ray, or a `ray.init()`
    of the user's that started a local Ray, mark the cluster as such)."""
    global _durable
    if _durable is not None:
        return _durable
    mode = runtime.mode()
    if mode == "embedded":
        _durable = False
    elif mode == "address":
        _durable = True
    else:
        node = getattr(ray._private.worker, "_global_node", None)
        if node is not None and getattr(node, "head", False):
            mark_ephemeral()  # this process started its Ray: it dies with it
            _durable = False
        else:
            from ray.experimental.internal_kv import _internal_kv_get

            _durable = _internal_kv_get(EPHEMERAL_KEY) is None
    return _durable


def mark_ephemeral() -> None:
    """Record in the cluster that it lives only as long as the process that started it, so that
    its workers keep spawned calls in-process too."""
    from ray.experimental.internal_kv import _internal_kv_put

    try:
        _internal_kv_put(EPHEMERAL_KEY, b"1", overwrite=True)
    except Exception:
        _log.debug("could not mark the cluster as ephemeral", exc_info=True)


def target_blob(
    target: tuple[Any, str | None, dict[str, Any] | None], prepared: Any
) -> tuple[str, bytes]:
    """The digest and pickled form of a call target `(record, method, params)`. A task-backed
    record gets the runtime env its prepared function resolved (the code uploaded to the
    cluster), so the keeper's workers need nothing of this process."""
    from dataclasses import replace

    from modal_ray.records import FunctionRecord

    from .tasks import RayPrepared

    record, method, params = target
    if not hasattr(prepared, "submit_pickled"):
        what = getattr(prepared, "what", None) or f"Function {getattr(record, 'tag', '')!r}"
        raise exception.InvalidError(
            f"{what} cannot be spawned on a long-lived cluster in this version of modal-ray"
            " (its kind of function has no durable calls yet). Call it with `.remote(...)`."
        )
    if isinstance(record, FunctionRecord) and isinstance(prepared, RayPrepared):
        env = dict(prepared.declared_env)
        spec = replace(record.spec, runtime_env=env, include_source=False)
        record = replace(record, spec=spec)
    blob = bytes(cloudpickle.dumps((record, method, params)))
    return hashlib.sha256(blob).hexdigest(), blob


async def spawn(
    environment: str,
    digest: str,
    blob: bytes,
    meta: dict[str, Any],
    calls: list[tuple[str, bytes]],
) -> None:
    """Hand calls to the keeper; returns once they are recorded."""
    meta = dict(meta)
    # Only a client (a driver) binds its run's calls to itself. A call spawned inside a
    # running function is never bound: the worker's job is whoever made the keeper, and a
    # dead one would take the whole app's calls with it.
    worker = ray._private.worker.global_worker
    if meta.pop("bound", False) and worker.mode == ray._private.worker.SCRIPT_MODE:
        meta["owner_job"] = ray.get_runtime_context().get_job_id()
    key = (environment, digest)
    send = None if key in _sent else blob
    try:
        unpack_reply(await _call(environment, "spawn", pickle.dumps((digest, send, meta, calls))))
    except NotFoundError:  # the keeper forgot the target (pruned): send it with the calls
        unpack_reply(await _call(environment, "spawn", pickle.dumps((digest, blob, meta, calls))))
    _sent.add(key)


async def wait(environment: str, call_id: str, timeout: float) -> tuple[str, bytes | None, str]:
    result: tuple[str, bytes | None, str] = unpack_reply(
        await _call(environment, "wait", call_id, timeout)
    )
    return result


async def cancel(environment: str, call_ids: list[str], force: bool) -> None:
    await _call(environment, "cancel", call_ids, force)


async def cancel_app(environment: str, app_id: str) -> None:
    """Cancel an app run's unfinished calls (nothing to do, and no keeper made, where none
    runs)."""
    if environment not in _handles:
        try:
            ray.get_actor(KEEPER_NAME, namespace=config.namespace_for(environment))
        except ValueError:
            return
    await _call(environment, "cancel_app", app_id)


async def graph(environment: str, call_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = unpack_reply(await _call(environment, "graph", call_id))
    return result


def busy(prefix: str) -> bool:
    """Has the app run of a pool-name prefix unfinished spawned calls? (The janitor keeps the
    pools of a detached run while it has.) False where no keeper runs."""
    from modal_ray import naming

    try:
        environment, app_id = naming.parse_run_prefix(prefix)
        handle = ray.get_actor(KEEPER_NAME, namespace=config.namespace_for(environment))
    except ValueError:
        return False
    return bool(ray.get(handle.busy.remote(app_id)))


__all__ = [
    "KEEPER_NAME",
    "busy",
    "cancel",
    "cancel_app",
    "durable",
    "graph",
    "mark_ephemeral",
    "spawn",
    "target_blob",
    "wait",
]
