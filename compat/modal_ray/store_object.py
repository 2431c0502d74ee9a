"""What `modal.Dict` and `modal.Queue` share: a reference to a stored object, and its plumbing.

A Dict or Queue object here is only a reference: a `StoreRef` (in `specs`) naming the object
(kind, environment, name or ephemeral id, state root). The data lives in one storage server per
object (`modal_ray.storage`, hosted by the backend), so the same reference works in the driver,
in remote functions and inside other Dicts and Queues: objects pickle to their reference, never
to their contents. This module holds the common base (`_StoreObject`: lookup, ids, hydration,
pickling), the `.objects` manager (`list`, `delete`), value (de)serialisation and `op`, which
turns an operation written once as a generator of store calls into a blocking method with `.aio`.

Invariants:
- keys and values are cloudpickled here, on the caller's side (plain scalars with `pickle`, which
  gives the same bytes); the server sees only bytes;
- each operation is one round trip to the server, sync or `.aio`; `from_name` is lazy, and the
  first operation creates a missing object when `create_if_missing=True`, or raises
  `NotFoundError`.
"""

from __future__ import annotations

import base64
import builtins
import pickle
import secrets
import uuid
from collections.abc import Callable, Coroutine, Generator
from datetime import datetime, timezone
from typing import Any, ClassVar, Concatenate, TypeVar, cast

import cloudpickle
from typing_extensions import ParamSpec

from modal_ray import config, state
from modal_ray.exception import (
    AlreadyExistsError,
    DeserializationError,
    InvalidError,
    NotFoundError,
    SerializationError,
)

from .specs import StoreRef
from .synchronizer import DualContext, DualMethod, check_blocking_call, dual, sync_and_aio

S = TypeVar("S", bound="_StoreObject")
R = TypeVar("R")
P = ParamSpec("P")

MIB = 1024 * 1024


def _backend() -> Any:
    from modal_ray.backends import get_backend

    return get_backend()


# Values of these exact types pickle to the same bytes with `pickle` as with cloudpickle (equal
# keys stay equal bytes), ten times faster: a `put_many` of small items is mostly pickling.
_PLAIN_TYPES = frozenset({str, bytes, int, float, bool, type(None)})
_PROTOCOL = cloudpickle.DEFAULT_PROTOCOL


def dumps(value: Any, what: str) -> bytes:
    if type(value) in _PLAIN_TYPES:
        return pickle.dumps(value, protocol=_PROTOCOL)
    try:
        return bytes(cloudpickle.dumps(value, protocol=_PROTOCOL))
    except Exception as exc:
        raise SerializationError(
            f"Could not serialize {what} with cloudpickle ({type(exc).__name__}: {exc})."
        ) from exc


def loads(data: bytes) -> Any:
    try:
        return cloudpickle.loads(data)
    except Exception as exc:
        raise DeserializationError(
            f"Could not deserialize a stored value ({type(exc).__name__}: {exc}). The reading"
            " process needs the library that defines the value's type, at a compatible version."
        ) from exc


def new_request_id() -> str:
    return uuid.uuid4().hex


def _encode_id(prefix: str, environment: str, key: str) -> str:
    raw = f"{environment}/{key}".encode()
    return f"{prefix}-{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"


def _decode_id(object_id: str, prefix: str, label: str) -> tuple[str, str]:
    head, _, body = object_id.partition("-")
    try:
        if head != prefix:
            raise ValueError(object_id)
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        environment, key = raw.split("/", 1)
    except ValueError:
        raise InvalidError(f"Invalid {label} id {object_id!r}.") from None
    return environment, key


Call = tuple[Any, ...]  # (method, *args): one round trip to the object's store
Op = Generator[Call, Any, R]  # an operation: yields store calls, returns its value


def op(fn: Callable[Concatenate[S, P], Op[R]]) -> DualMethod[P, R, Coroutine[Any, Any, R]]:
    """Decorator for a Dict/Queue operation written once as a generator: it yields the store
    calls it needs, `(method, *args)`, receives each result, and returns the operation's value.

    `obj.m(...)` drives it in the caller's thread with blocking store calls (`ray.get` there: no
    hop through modal-ray's event-loop thread, the larger part of a small operation's latency);
    `await obj.m.aio(...)` drives it on the caller's event loop with awaited store calls (the
    store's async calls are safe on any loop). Either way each store call is one round trip to
    the object's server. The pair is one `sync_and_aio` method.
    """

    def blocking(obj: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        check_blocking_call(method.name)
        gen = fn(obj, *args, **kwargs)
        try:
            request = next(gen)
            while True:
                request = gen.send(obj._call_sync(*request))
        except StopIteration as done:
            return cast(R, done.value)

    async def aio(obj: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        gen = fn(obj, *args, **kwargs)
        try:
            request = next(gen)
            while True:
                request = gen.send(await obj._call(*request))
        except StopIteration as done:
            return cast(R, done.value)

    method = sync_and_aio(blocking, aio, wrapped=fn)
    return method


class _StoreObject:
    """A reference to one named or ephemeral Dict / Queue."""

    _kind: ClassVar[str] = ""
    _label: ClassVar[str] = ""
    _id_prefix: ClassVar[str] = ""

    def __init__(self, ref: StoreRef, create_if_missing: bool = False) -> None:
        self._ref = ref
        self._create_if_missing = create_if_missing
        self._hydrated = False
        self._created_at_cache: float | None = None

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def _from_name(
        cls: type[S], name: str, environment_name: str | None, create_if_missing: bool
    ) -> S:
        state.check_object_name(name, cls._label)
        env = config.environment_name(environment_name)
        return cls(
            StoreRef(cls._kind, env, name, None, str(config.state_root())), create_if_missing
        )

    @classmethod
    def _from_object_id(cls: type[S], object_id: str) -> S:
        env, key = _decode_id(object_id, cls._id_prefix, cls._label)
        root = str(config.state_root())
        if key.startswith("~"):
            return cls(StoreRef(cls._kind, env, None, key[1:], root))
        return cls(StoreRef(cls._kind, env, key, None, root))

    @classmethod
    def _ephemeral(cls: type[S], environment_name: str | None) -> DualContext[S]:
        """`X.ephemeral()`: created when the block is entered, deleted when it exits."""
        env = config.environment_name(environment_name)
        obj = cls(StoreRef(cls._kind, env, None, secrets.token_hex(8), str(config.state_root())))

        async def enter() -> S:
            await _backend().store_create(obj._ref)
            obj._hydrated = True
            return obj

        async def exit_(ok: bool) -> None:
            await _backend().store_delete(obj._ref)

        return DualContext(f"{cls._label}.ephemeral", enter, exit_)

    def __reduce__(self) -> tuple[Any, ...]:
        r = self._ref
        return (
            _restore,
            (type(self), r.environment, r.name, r.ephemeral_id, r.root, self._create_if_missing),
        )

    def __repr__(self) -> str:
        if self._ref.name is not None:
            return f"{self._label}.from_name({self._ref.name!r})"
        return f"{self._label}.ephemeral(<{self._ref.ephemeral_id}>)"

    # -- plumbing ---------------------------------------------------------------------------

    def _not_found(self) -> NotFoundError:
        r = self._ref
        if r.name is None:
            return NotFoundError(
                f"This ephemeral {self._label} no longer exists: its `with"
                f" {self._label}.ephemeral()` block has exited, or the process that created it"
                " has ended."
            )
        cli = self._label.lower()
        return NotFoundError(
            f"{self._label} {r.name!r} not found in environment {r.environment!r}. Create it with"
            f" `modal.{self._label}.from_name({r.name!r}, create_if_missing=True)` or"
            f" `modal {cli} create {r.name}`."
        )

    async def _call(self, method: str, *args: Any) -> Any:
        create = self._create_if_missing and not self._hydrated
        try:
            result = await _backend().store_call(self._ref, method, args, create=create)
        except NotFoundError:
            self._hydrated = False
            raise self._not_found() from None
        self._hydrated = True
        return result

    def _call_sync(self, method: str, *args: Any) -> Any:
        create = self._create_if_missing and not self._hydrated
        try:
            result = _backend().store_call_sync(self._ref, method, args, create=create)
        except NotFoundError:
            self._hydrated = False
            raise self._not_found() from None
        self._hydrated = True
        return result

    # -- common public surface --------------------------------------------------------------

    @property
    def name(self) -> str | None:
        return self._ref.name

    @property
    def object_id(self) -> str:
        r = self._ref
        key = r.name if r.name is not None else f"~{r.ephemeral_id}"
        return _encode_id(self._id_prefix, r.environment, key)

    @property
    def client(self) -> None:
        return None

    @property
    def is_hydrated(self) -> bool:
        return self._hydrated

    @op
    def hydrate(self, client: Any = None) -> Op[Any]:
        """Check that the object exists (creating it if `create_if_missing=True`)."""
        yield ("open",)
        return self

    @dual
    async def get_dashboard_url(self) -> str:
        return ""

    def _created_at(self) -> Op[datetime | None]:
        ts = self._created_at_cache
        if ts is None:
            ts = self._created_at_cache = yield ("info",)
        return datetime.fromtimestamp(ts, timezone.utc) if ts else None


def _restore(
    cls: type[_StoreObject],
    environment: str,
    name: str | None,
    ephemeral_id: str | None,
    root: str,
    create_if_missing: bool,
) -> _StoreObject:
    return cls(StoreRef(cls._kind, environment, name, ephemeral_id, root), create_if_missing)


class _StoreManager:
    """`X.objects`: create, list and delete named objects of one kind."""

    _cls: ClassVar[type[_StoreObject]]

    def __get__(self, obj: Any, objtype: Any = None) -> _StoreManager:
        return self

    @dual
    async def create(
        self,
        name: str,
        *,
        allow_existing: bool = False,
        environment_name: str | None = None,
        client: Any = None,
    ) -> None:
        """Create a new named object in the environment."""
        obj = self._cls._from_name(name, environment_name, True)
        existed = await _backend().store_create(obj._ref)
        if existed and not allow_existing:
            label = self._cls._label
            raise AlreadyExistsError(
                f"{label} {name!r} already exists in environment {obj._ref.environment!r}."
            )

    async def _records(self, environment_name: str | None) -> builtins.list[dict[str, Any]]:
        """Raw listing: `name`, `created_at` (epoch s) and, for queues, `partitions`, `items`."""
        env = config.environment_name(environment_name or None)
        records: builtins.list[dict[str, Any]] = await _backend().store_list(
            str(config.state_root()), self._cls._kind, env
        )
        return sorted(records, key=lambda r: r["created_at"], reverse=True)

    @dual
    async def list(
        self,
        *,
        max_objects: int | None = None,
        created_before: datetime | str | None = None,
        environment_name: str = "",
        client: Any = None,
    ) -> builtins.list[Any]:
        """Named objects of the environment, newest first."""
        env = config.environment_name(environment_name or None)
        if isinstance(created_before, str):
            created_before = datetime.fromisoformat(created_before)
        cutoff = None
        if created_before is not None:
            if created_before.tzinfo is None:
                created_before = created_before.replace(tzinfo=timezone.utc)
            cutoff = created_before.timestamp()
        out = []
        for record in await self._records(env):
            if cutoff is not None and record["created_at"] >= cutoff:
                continue
            obj = self._cls._from_name(record["name"], env, False)
            obj._created_at_cache = record["created_at"]
            out.append(obj)
            if max_objects is not None and len(out) >= max_objects:
                break
        return out

    @dual
    async def delete(
        self,
        name: str,
        *,
        allow_missing: bool = False,
        environment_name: str | None = None,
        client: Any = None,
    ) -> None:
        """Delete a named object and all of its data."""
        obj = self._cls._from_name(name, environment_name, False)
        existed = await _backend().store_delete(obj._ref)
        if not existed and not allow_missing:
            raise obj._not_found()
