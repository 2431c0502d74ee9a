"""`modal.Dict`: a distributed dictionary on one storage server (plumbing in `store_object`).

Modal's documented limits (value size, entries per update) are checked here, before anything is
sent; keys compare by their pickled bytes, as on Modal.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modal_ray import warn
from modal_ray.exception import InvalidError, RequestSizeError

# Dicts and Queues stored before the split pickled as `modal_ray.dict._restore`.
from .store_object import (
    MIB,
    Op,
    _restore,  # noqa: F401
    _StoreManager,
    _StoreObject,
    dumps,
    loads,
    new_request_id,
    op,
)
from .synchronizer import DualContext, dual, dual_class_context, dual_static

DICT_MAX_VALUE_BYTES = 100 * MIB  # "the per-object size limit is 100 MiB"
DICT_MAX_UPDATE = 10_000  # "the maximum number of entries per update is 10,000"
_SCAN_PAGE = 1000
_MISSING: Any = object()


@dataclass
class DictInfo:
    """Information about a Dict (`Dict.info()`)."""

    name: str | None
    created_at: datetime | None
    created_by: str | None


DictInfo.__module__ = "modal.dict"  # set after @dataclass, which looks the module up while it runs


class _DictManager(_StoreManager):
    """`modal.Dict.objects`."""


class Dict(_StoreObject):
    """Distributed dictionary for storage in Modal apps (here: persisted on the Ray cluster).

    Keys and values are anything cloudpickle handles. Entries expire after 7 days without reads
    or writes. Operators (`d[k]`, `k in d`, `len(d)`) are blocking; use the methods' `.aio` forms
    in async code.
    """

    __module__ = "modal.dict"
    _kind = "dict"
    _label = "Dict"
    _id_prefix = "di"

    objects = _DictManager()

    @staticmethod
    def from_name(
        name: str,
        *,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        client: Any = None,
    ) -> Dict:
        """Reference a named Dict, creating it on first use if `create_if_missing=True`."""
        return Dict._from_name(name, environment_name, create_if_missing)

    @staticmethod
    def from_id(dict_id: str, client: Any = None) -> Dict:
        """A Dict from its `object_id`."""
        return Dict._from_object_id(dict_id)

    @dual_class_context
    def ephemeral(
        cls: type[Dict],
        *,
        client: Any = None,
        environment_name: str | None = None,
        _heartbeat_sleep: float = 300,
    ) -> DualContext[Dict]:
        """Create an anonymous Dict that exists for the duration of the context manager.

        `with modal.Dict.ephemeral() as d:` or `async with modal.Dict.ephemeral() as d:`; the
        Dict and its data are deleted when the block exits (or when the creating process ends).
        """
        return cls._ephemeral(environment_name)

    @dual_static
    async def delete(name: str, *, client: Any = None, environment_name: str | None = None) -> None:
        """Deprecated: use `modal.Dict.objects.delete`."""
        warn.deprecation(
            "Dict.delete",
            "`modal.Dict.delete` is deprecated; use `modal.Dict.objects.delete` instead.",
        )
        await Dict.objects.delete.aio(name, environment_name=environment_name)

    @dual_static
    async def lookup(
        name: str,
        data: dict[Any, Any] | None = None,
        namespace: Any = None,
        client: Any = None,
        environment_name: str | None = None,
        create_if_missing: bool = False,
    ) -> Dict:
        """Deprecated: use `modal.Dict.from_name` (and `.hydrate()`)."""
        warn.deprecation(
            "Dict.lookup",
            "`modal.Dict.lookup` is deprecated; use `modal.Dict.from_name(...)` instead (it is"
            " lazy: call `.hydrate()` to check that the Dict exists).",
        )
        d = Dict.from_name(
            name, environment_name=environment_name, create_if_missing=create_if_missing
        )
        await d.hydrate.aio()
        if data:
            await d.update.aio(data)
        return d

    # -- operations -----------------------------------------------------------------------

    @op
    def info(self) -> Op[DictInfo]:
        """Return information about the Dict object."""
        created_at = yield from self._created_at()
        return DictInfo(name=self.name, created_at=created_at, created_by=None)

    @op
    def clear(self) -> Op[None]:
        """Remove all items from the Dict."""
        yield ("clear",)

    @op
    def get(self, key: Any, default: Any | None = None) -> Op[Any]:
        """Get the value associated with a key; `default` if the key does not exist."""
        data = yield ("get", dumps(key, "the key"))
        return default if data is None else loads(data)

    @op
    def contains(self, key: Any) -> Op[bool]:
        """Return if a key is present."""
        return bool((yield ("contains", dumps(key, "the key"))))

    @op
    def len(self) -> Op[int]:
        """Return the length of the Dict (at most 100,000: counting is expensive)."""
        return int((yield ("len",)))

    @op
    def update(self, other: Mapping[Any, Any] | None = None, /, **kwargs: Any) -> Op[None]:
        """Update the Dict with additional items."""
        items = dict(other or {}, **kwargs)
        if builtins.len(items) > DICT_MAX_UPDATE:
            raise InvalidError(
                f"`Dict.update` takes at most {DICT_MAX_UPDATE:,} entries at once, not"
                f" {builtins.len(items):,}; split the update."
            )
        pairs = [(dumps(k, "a key"), _value_bytes(v)) for k, v in items.items()]
        yield ("update", pairs)

    @op
    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> Op[bool]:
        """Add a key-value pair; False if `skip_if_exists` and the key was already there."""
        # Only a conditional put needs a request id: a plain put, retried, writes the same value.
        rid = new_request_id() if skip_if_exists else ""
        call = ("put", dumps(key, "the key"), _value_bytes(value), skip_if_exists, rid)
        return bool((yield call))

    @op
    def pop(self, key: Any, default: Any = _MISSING) -> Op[Any]:
        """Remove a key and return its value (`KeyError` if missing and no `default`)."""
        data = yield ("pop", dumps(key, "the key"), new_request_id())
        if data is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return loads(data)

    async def _scan(self) -> AsyncIterator[tuple[bytes, bytes]]:
        after = 0
        while True:
            page = await self._call("scan", after, _SCAN_PAGE)
            for _, k, v in page:
                yield k, v
            if builtins.len(page) < _SCAN_PAGE:
                return
            after = page[-1][0]

    @dual
    async def keys(self) -> AsyncIterator[Any]:
        """An iterator over the keys (unordered, not a view)."""
        async for k, _ in self._scan():
            yield loads(k)

    @dual
    async def values(self) -> AsyncIterator[Any]:
        """An iterator over the values (unordered, not a view)."""
        async for _, v in self._scan():
            yield loads(v)

    @dual
    async def items(self) -> AsyncIterator[tuple[Any, Any]]:
        """An iterator over the (key, value) pairs (unordered, not a view)."""
        async for k, v in self._scan():
            yield loads(k), loads(v)

    # -- operators: always blocking, like Modal's -------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        missing = object()
        value = self.get(key, missing)
        if value is missing:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def __contains__(self, key: Any) -> bool:
        return bool(self.contains(key))

    def __len__(self) -> int:
        return int(self.len())

    def __iter__(self) -> Any:
        return iter(self.keys())


def _value_bytes(value: Any) -> bytes:
    data = dumps(value, "the value")
    if builtins.len(data) > DICT_MAX_VALUE_BYTES:
        raise RequestSizeError(
            f"Dict value of {builtins.len(data) / MIB:.1f} MiB (pickled) is over the 100 MiB"
            " limit per object; store large data in a Volume and keep its path in the Dict."
        )
    return data


_DictManager._cls = Dict
