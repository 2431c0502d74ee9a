"""Dict and Queue on Ray: each object's storage server hosted by one named actor.

The storage rules (tables, TTLs, partitions, FIFO, waits, limits, request ids, group commit) are
engine-neutral and live in `modal_ray.storage`. This module only:
- creates or finds the actor that hosts an object's server: detached and pinned to the head node
  for a named object (so its file lives on one machine's disk), owned by its creator for an
  ephemeral one (so it dies with it); and re-creates a named object's actor after it was killed;
- carries each call to it in one actor round trip: a Dict's actor is a plain actor (calls run
  one at a time on its main thread, as with a raw actor); a Queue's actor has a `wait` thread
  group for the operations that may block, so a waiting `get` never holds up the `put` that ends
  its wait;
- translates errors: the server's Modal errors travel back as (name, message) and are raised
  again here, Ray's own errors go through `errors.translate`, and a caller that gives up on a
  `get` sends `release` so that nothing it took (or would take) is lost;
- runs listing and file removal where the files are (the head node), and in "direct" mode (the
  CLI with no cluster configured) hosts the same servers in-process instead of starting Ray.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import ray
import ray.exceptions as rex

from modal_ray import config, exception, storage
from modal_ray.exception import Error, InternalError, NotFoundError
from modal_ray.storage import layout, local
from modal_ray.storage.queue_server import QueueServer
from modal_ray.storage.sqlite import remove_files

from . import runtime
from .errors import translate

if TYPE_CHECKING:
    from modal_ray.specs import StoreRef

T = TypeVar("T")
_PROTOCOL = 5  # pickle protocol of requests and replies

CALL_ATTEMPTS = 12  # ~10 s of retries while an actor is re-created or restarts
# Callers one Queue holds blocked at once (a thread each; more threads cost every waiting call
# more CPU). Further blocked callers queue in Ray for a free thread: a wait lasts at most 50 s
# before its caller re-issues it, and nothing is lost.
WAIT_THREADS = 64
GROUP_THREADS = 4  # operations run at once when commits fsync, so that they share commits

_HEAD = {"node:__internal_head__": 0.001}
_ACTOR_OPTIONS: dict[str, Any] = {
    "num_cpus": 0,
    "max_restarts": -1,
    "max_task_retries": -1,
    "resources": _HEAD,
}
_QUEUE_OPTIONS: dict[str, Any] = {**_ACTOR_OPTIONS, "concurrency_groups": {"wait": WAIT_THREADS}}
_WAITING = {"dict": frozenset[str](), "queue": QueueServer.WAITING}
# Operations whose caller, giving up, sends `release(rid)` (their request id is last).
_RELEASE_IF_ABANDONED = {
    "dict": frozenset[str](),
    "queue": frozenset({"get", "get_wait", "put_wait"}),
}


class _Failure:
    """A server's Modal error on its way back: (class name, message). Sent as a value, so that
    no exception class has to be pickled, and so that the reply stays one plain bytes object."""

    __slots__ = ("message", "name")

    def __init__(self, name: str, message: str) -> None:
        self.name, self.message = name, message


def unpack_reply(reply: bytes) -> Any:
    """A server actor's reply: its value, or its `_Failure` raised as the Modal error it names
    (`Error` for a name that is not one)."""
    result = pickle.loads(reply)
    if type(result) is not _Failure:
        return result
    cls = getattr(exception, result.name, None)
    if not (isinstance(cls, type) and issubclass(cls, Error)):
        cls = Error
    raise cls(result.message)


def _request(method: str, create: bool, args: tuple[Any, ...]) -> bytes:
    # One bytes argument and one bytes reply: Ray carries bytes on its fastest path, while each
    # extra argument, tuple or list costs both sides serialisation work on every call.
    return pickle.dumps((method, create, args), protocol=_PROTOCOL)


class _Host:
    """Hosts one object's server; a call is `request` bytes in, reply bytes out."""

    def __init__(self, kind: str, path: str, ttl_s: float | None, sync: str, eph: bool) -> None:
        self._server = storage.SERVERS[kind](path, ttl_s=ttl_s, sync=sync)
        self._ephemeral = eph

    def call(self, request: bytes) -> bytes:
        method, create, args = pickle.loads(request)
        try:
            result = self._server.call(method, create, args)
        except Error as exc:
            result = _Failure(type(exc).__name__, str(exc))
        else:
            if method == "open" and self._ephemeral and not result:
                layout.sweep_ephemeral(self._server.path, _ephemeral_alive)
        return pickle.dumps(result, protocol=_PROTOCOL)


class _QueueHost(_Host):
    @ray.method(concurrency_group="wait")  # type: ignore[misc]
    def wait(self, request: bytes) -> bytes:
        return self.call(request)


_HOSTS: dict[str, Any] = {
    "dict": ray.remote(**_ACTOR_OPTIONS)(_Host),
    "queue": ray.remote(**_QUEUE_OPTIONS)(_QueueHost),
}


def _host(kind: str, name: str, namespace: str, sync: str, detached: bool) -> Any:
    """The actor class of `kind` with its options. With `synchronous=FULL` a commit is an fsync,
    worth sharing: up to `GROUP_THREADS` operations run at once and `Database` groups their
    commits. Otherwise a commit is a WAL append, and one thread (no GIL hand-offs, calls run as
    on a raw actor) is faster, as measured in bench/bench_dict_queue.py."""
    options: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "max_concurrency": 1 if sync in ("OFF", "NORMAL") else GROUP_THREADS,
    }
    if detached:
        options.update(lifetime="detached", get_if_exists=True)
    return _HOSTS[kind].options(**options)


def _ephemeral_alive(kind: str, object_id: str) -> bool:
    namespace = ray.get_runtime_context().namespace
    try:
        ray.get_actor(f"modal-{kind}-eph.{object_id}", namespace=namespace)
    except ValueError:
        return False
    return True


# -- client side ------------------------------------------------------------------------------


class _Conn:
    """A live actor and its two entry points (bound once: an attribute lookup on an actor
    handle builds a method object)."""

    __slots__ = ("call", "handle", "wait")

    def __init__(self, handle: Any, kind: str) -> None:
        self.handle = handle
        self.call = handle.call  # AttributeError: an actor of an older modal-ray
        self.wait = handle.wait if kind == "queue" else self.call


_conns: dict[StoreRef, _Conn] = {}
_direct_allowed = False


def allow_direct(enabled: bool = True) -> None:
    """Let one-shot tools (the CLI) read and write the files in-process when no cluster is
    configured and Ray is not running here, instead of starting an embedded Ray."""
    global _direct_allowed
    _direct_allowed = enabled


def path_of(ref: StoreRef) -> Path:
    if ref.ephemeral_id is not None:
        gcs: str = ray.get_runtime_context().gcs_address
        cluster = gcs.replace(":", "-").replace("/", "-")
        return layout.ephemeral_path(ref.root, ref.environment, cluster, ref.kind, ref.ephemeral_id)
    assert ref.name is not None
    return layout.named_path(ref.root, ref.kind, ref.environment, ref.name)


def actor_name(ref: StoreRef) -> str:
    if ref.ephemeral_id is not None:
        return f"modal-{ref.kind}-eph.{ref.ephemeral_id}"
    return f"modal-{ref.kind}.{ref.name}"


def _key(ref: StoreRef) -> tuple[str, str]:
    return (config.namespace_for(ref.environment), actor_name(ref))


def _is_direct(ref: StoreRef) -> bool:
    return (
        _direct_allowed
        and ref.ephemeral_id is None
        and not ray.is_initialized()
        and config.ray_address() is None
    )


def _adopt(ref: StoreRef, handle: Any) -> _Conn | None:
    """Cache `handle` for `ref`; None if it is an actor of an older modal-ray: that one is
    stopped (the file is compatible), and its name freed for a current actor over the file."""
    try:
        conn = _conns[ref] = _Conn(handle, ref.kind)
    except AttributeError:
        _kill(handle)
        namespace, name = _key(ref)
        for _ in range(100):
            try:
                ray.get_actor(name, namespace=namespace)
            except ValueError:
                break
            time.sleep(0.1)
        return None
    return conn


def _live(ref: StoreRef) -> _Conn | None:
    """The object's actor if it is running (cached per process), else None."""
    conn = _conns.get(ref)
    if conn is None:
        runtime.connect(ref.environment)
        namespace, name = _key(ref)
        try:
            handle = ray.get_actor(name, namespace=namespace)
        except ValueError:
            return None
        conn = _adopt(ref, handle)
    return conn


def _connect(ref: StoreRef, create: bool) -> _Conn:
    """The object's actor, started over its file if it is not running (named objects only)."""
    for _ in range(3):
        conn = _live(ref)
        if conn is not None:
            return conn
        if ref.ephemeral_id is not None:
            raise NotFoundError("gone")
        path = str(path_of(ref))
        # Starting an actor costs a process: check first that there is something to serve. Once
        # per object and process, so a blocking task round trip is fine here.
        if not create and not ray.get(_remote(_exists).remote(path)):
            raise NotFoundError("not found")
        namespace, name = _key(ref)
        sync = storage.store_sync()
        handle = _host(ref.kind, name, namespace, sync, detached=True).remote(
            ref.kind, path, storage.dict_ttl(), sync, False
        )
        conn = _adopt(ref, handle)
        if conn is not None:
            return conn
    raise InternalError(  # pragma: no cover - an old actor that would not stop
        f"The {ref.kind} {ref.name!r} is served by an actor of an older modal-ray that does not"
        f" stop; stop it with `ray.kill(ray.get_actor({_key(ref)[1]!r},"
        f" namespace={_key(ref)[0]!r}))` and retry."
    )


def _kill(handle: Any) -> None:
    try:
        ray.kill(handle, no_restart=True)
    except Exception:  # already gone
        pass


def _forget(ref: StoreRef, kill: bool = False) -> None:
    conn = _conns.pop(ref, None)
    if kill:
        handle = conn.handle if conn is not None else None
        if handle is None:
            try:
                handle = ray.get_actor(actor_name(ref), namespace=_key(ref)[0])
            except ValueError:
                return
        _kill(handle)


def _submit(conn: _Conn, ref: StoreRef, method: str, args: tuple[Any, ...], create: bool) -> Any:
    entry = conn.wait if method in _WAITING[ref.kind] else conn.call
    return entry.remote(_request(method, create, args))


def _abandon(ref: StoreRef, method: str, args: tuple[Any, ...]) -> None:
    """The caller gave up on a call: make sure it takes nothing (fire and forget)."""
    conn = _conns.get(ref)
    if conn is not None and method in _RELEASE_IF_ABANDONED[ref.kind]:
        conn.call.remote(_request("release", False, (args[-1],)))


def _result(ref: StoreRef, reply: bytes) -> Any:
    result = pickle.loads(reply)
    if type(result) is not _Failure:
        return result
    name, message = result.name, result.message
    cls = getattr(exception, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Error)):
        cls = Error
    if issubclass(cls, NotFoundError):
        # The object was deleted: do not leave an idle actor behind for the name.
        _forget(ref, kill=ref.ephemeral_id is None)
    raise cls(message)


def _failed(ref: StoreRef, method: str, exc: BaseException, attempt: int) -> float:
    """Handle a failed call: raise the error to report, or return the delay before a retry."""
    if isinstance(exc, rex.ActorDiedError | rex.ActorUnavailableError):
        if isinstance(exc, rex.ActorDiedError):
            _forget(ref)  # killed or crashed for good: the next attempt re-creates it
            if ref.ephemeral_id is not None:
                raise NotFoundError("gone") from None
        if attempt < CALL_ATTEMPTS - 1:
            return float(min(0.05 * 2.0**attempt, 1.0))
    raise translate(exc, f"{ref.kind} {method}") from exc


async def call(ref: StoreRef, method: str, args: tuple[Any, ...], *, create: bool = False) -> Any:
    """Run `method(create, *args)` on the object's server: one actor round trip. Safe on any
    event loop (the first call's lookups run in a thread).

    Raises NotFoundError (bare message; the caller words it) when the object does not exist.
    """
    if _is_direct(ref):
        return await local.call(ref.kind, path_of(ref), method, create, args, storage.dict_ttl())
    for attempt in range(CALL_ATTEMPTS):
        conn = _conns.get(ref)
        if conn is None:
            conn = await asyncio.to_thread(_connect, ref, create)
        oref = _submit(conn, ref, method, args, create)
        try:
            reply = await oref
        except asyncio.CancelledError:
            _abandon(ref, method, args)
            raise
        except rex.RayError as exc:
            await asyncio.sleep(_failed(ref, method, exc, attempt))
            continue
        return _result(ref, reply)
    raise AssertionError("unreachable")  # pragma: no cover


def call_sync(ref: StoreRef, method: str, args: tuple[Any, ...], *, create: bool = False) -> Any:
    """`call` for a blocking caller: `ray.get` in the caller's thread, with no hop through
    modal-ray's event-loop thread."""
    if _is_direct(ref):
        return local.call_sync(ref.kind, path_of(ref), method, create, args, storage.dict_ttl())
    for attempt in range(CALL_ATTEMPTS):
        conn = _conns.get(ref)
        if conn is None:
            conn = _connect(ref, create)
        oref = _submit(conn, ref, method, args, create)
        try:
            reply = ray.get(oref)
        except KeyboardInterrupt:
            _abandon(ref, method, args)
            raise
        except rex.RayError as exc:
            time.sleep(_failed(ref, method, exc, attempt))
            continue
        return _result(ref, reply)
    raise AssertionError("unreachable")  # pragma: no cover


async def create(ref: StoreRef) -> bool:
    """Create the object if needed; True if it already existed."""
    if ref.ephemeral_id is None:
        return bool(await call(ref, "open", (), create=True))
    runtime.connect(ref.environment)
    namespace, name = _key(ref)
    # Not detached: owned by this process, so Ray kills it when its creator exits.
    sync = storage.store_sync()
    handle = _host(ref.kind, name, namespace, sync, detached=False).remote(
        ref.kind, str(path_of(ref)), None, sync, True
    )
    conn = _conns[ref] = _Conn(handle, ref.kind)
    try:
        reply = await conn.call.remote(_request("open", True, ()))
    except rex.RayError as exc:
        raise translate(exc, f"creating an ephemeral {ref.kind}") from exc
    return bool(_result(ref, reply))


async def delete(ref: StoreRef) -> bool:
    """Delete the object's file and stop its actor; True if it existed."""
    if _is_direct(ref):
        return local.delete(ref.kind, path_of(ref))
    if _live(ref) is None:
        if ref.ephemeral_id is not None:
            return False
        return bool(await _on_head(_remove_path, str(path_of(ref))))
    try:
        existed = bool(await call(ref, "destroy", ()))
    except NotFoundError:
        return False
    _forget(ref, kill=True)
    return existed


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _remove_path(path: str) -> bool:
    return remove_files(Path(path))


_HEAD_TASK = ray.remote(num_cpus=0, resources=_HEAD, max_retries=3)
_remote_fns: dict[Callable[..., Any], Any] = {}


def _remote(fn: Callable[..., Any]) -> Any:
    """`fn` as a small task that runs where the store's files are (the head node)."""
    remote = _remote_fns.get(fn)
    if remote is None:
        remote = _remote_fns[fn] = _HEAD_TASK(fn)
    return remote


async def _on_head(fn: Callable[..., T], *args: Any) -> T:
    try:
        result: T = await _remote(fn).remote(*args)
    except rex.RayError as exc:
        raise translate(exc, f"the state store operation {fn.__name__}") from exc
    return result


async def list_names(root: str, kind: str, environment: str) -> list[dict[str, Any]]:
    if _direct_allowed and not ray.is_initialized() and config.ray_address() is None:
        return layout.list_objects(root, kind, environment)
    runtime.connect(environment)
    return await _on_head(layout.list_objects, root, kind, environment)
