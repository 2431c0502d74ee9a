"""Records: what fully describes a Function or a Cls of a running app, as plain values.

A live `Function` / `Cls` compiles its record once per app run (`_record()`; the run context and
the options go in, the image is packed and the secrets merged here, once). `Function._from_record`
/ `Cls._from_record` rebuild a callable object from a record in any process connected to the same
cluster: that process needs `modal_ray`, never the user's module (the code is named by a
`FunctionRef`, which only workers import). `from_name`, deployments and schedules build on this.

Invariants:
- every field is a frozen dataclass of `specs`, an `Invocation` / `ContainerSpec` of the runtime,
  a `FunctionRef`, or builtins: a record pickles with `pickle` when the code travels by import,
  and with cloudpickle when it travels by value (notebooks, nested code, `serialized=True`);
- a record names its pools through its app identity (environment, app id), so it is valid while
  that app run's pools exist; the pool of a class parameter set is named by `naming.pool_name`,
  exactly as the live class names it, so a rebuilt class attaches to the live class's pools;
- a record carries the run's resolved secrets (the environment its workers get): store it only
  where those secrets may be stored;
- a rebuilt object has no user code: `.local()` raises `ExecutionError` (`NoLocalCode`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from . import naming
from .exception import ExecutionError
from .freshness import watched
from .run_context import RunContext
from .runtime.container import ContainerSpec
from .runtime.worker import Invocation
from .specs import FunctionSpec, ServiceSpec


@dataclass(frozen=True, slots=True)
class AppIdentity:
    """The app run a record belongs to (its pools are named after it)."""

    environment: str
    app_id: str | None
    app_name: str | None = None

    @classmethod
    def of(cls, ctx: RunContext) -> AppIdentity:
        return cls(ctx.environment, ctx.app_id, ctx.app_name)

    def run_context(self) -> RunContext:
        """The context an object rebuilt from a record runs in: this app run's, owned by no
        task group of this process."""
        return RunContext(
            environment=self.environment, app_id=self.app_id, app_name=self.app_name, running=True
        )


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A container pool: the engine's service and what each of its containers runs."""

    service: ServiceSpec
    container: ContainerSpec


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    """An `@app.function`: task-backed (`invocation`) or backed by one container pool (`pool`).

    `spec` holds what every call needs (retries, timeout, the generator flag, `max_containers`)."""

    tag: str
    app: AppIdentity
    spec: FunctionSpec
    invocation: Invocation | None = None
    pool: PoolSpec | None = None
    web: Any = None  # a web endpoint's `serve_adapters.web.WebSpec`

    def __post_init__(self) -> None:
        if (self.invocation is None) == (self.pool is None):
            raise ValueError("A FunctionRecord has either an invocation or a pool, not both.")

    @property
    def is_generator(self) -> bool:
        return self.spec.is_generator


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One `@modal.method` / `@modal.batched` of a class."""

    name: str
    is_generator: bool = False
    batch_max_size: int | None = None
    batch_wait_ms: int | None = None
    web: Any = None  # a web endpoint's `serve_adapters.web.WebSpec`


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """One `modal.parameter()` of a class: `Cls(...)` validates against these."""

    name: str
    type: type  # str, int, bool or bytes
    default: Any = None
    has_default: bool = False
    init: bool = True


@dataclass(frozen=True, slots=True)
class ClassRecord:
    """An `@app.cls`: its method table, parameter schema, and the pool of a parameter set.

    `pool` is the template every parameter set's pool is made from (`pool_for`); `spec` holds
    what every method call needs (retries, timeout)."""

    tag: str
    app: AppIdentity
    variant: str  # `with_options` / `with_concurrency` / `with_batching` variants have their own
    methods: tuple[MethodSpec, ...]
    parameters: tuple[ParameterSpec, ...]
    spec: FunctionSpec
    pool: PoolSpec

    def method(self, name: str) -> MethodSpec | None:
        return next((m for m in self.methods if m.name == name), None)

    def method_spec(self, name: str) -> FunctionSpec:
        """The call spec of one method (its tag and generator flag)."""
        method = self.method(name)
        return replace(
            self.spec,
            tag=f"{self.tag}.{name}",
            is_generator=bool(method and method.is_generator),
        )

    def pool_for(self, params: Mapping[str, Any]) -> PoolSpec:
        """The pool of one parameter set (validated by the caller)."""
        name = naming.pool_name(
            self.app.environment, self.app.app_id, self.tag, params, self.variant
        )
        return PoolSpec(
            replace(self.pool.service, name=name),
            replace(self.pool.container, params=dict(params)),
        )


class NoLocalCode:
    """Stands in for the user's function in an object rebuilt from a record: calling it (what
    `.local()` does) raises `ExecutionError`."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ExecutionError(
            f"{self.what} was rebuilt from a record: its code is not in this process, so it"
            " cannot run locally. Call it with `.remote(...)` (or `.map`, `.spawn`)."
        )

    def __repr__(self) -> str:
        return f"<no local code: {self.what}>"


def stand_in_class(record: ClassRecord) -> type:
    """A class with the record's name and methods that runs nothing locally: creating an
    instance of it (what `.local()` and local attribute access do) raises `ExecutionError`."""
    refuse = NoLocalCode(f"Class {record.tag!r}")

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        refuse()

    namespace: dict[str, Any] = {"__new__": __new__, "__module__": __name__}
    for method in record.methods:
        namespace[method.name] = NoLocalCode(f"Method {record.tag}.{method.name}")
    return type(record.tag.rsplit(".", 1)[-1], (), namespace)


class DeferredLookup:
    """A Function or Cls looked up by name or id (mixed in before the class it stands for).

    The lookup runs when the object is first used (any attribute it does not have yet: a call,
    `.hydrate()`, `object_id`): it fetches the record and fills the object in as `_from_record`
    would. Until then it pickles as its lookup, so it is looked up again where it is used. Once
    filled, it follows redeploys of its app (`freshness.Watch`).
    """

    _label = ""  # "Function" / "Cls", for the repr

    def __init__(self, lookup: Callable[[], tuple[Any, str]], what: str) -> None:
        self.__dict__.update(_lookup=lookup, _what=what)

    def _rebuild(self, record: Any) -> Any:
        """The object `record` describes (`Function._from_record` / `Cls._from_record`)."""
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        lookup = self.__dict__.get("_lookup")
        if lookup is None:
            parent = getattr(super(), "__getattr__", None)
            if parent is None:
                raise AttributeError(name)
            return parent(name)
        if name.startswith("__"):
            raise AttributeError(name)
        record, object_id, watch = watched(lookup)  # the watch follows redeploys (`freshness`)
        self.__dict__.update(self._rebuild(record).__dict__)
        self.__dict__.update(_object_id=object_id, _lookup=None, _watch=watch)
        return getattr(self, name)

    def __repr__(self) -> str:
        if self.__dict__.get("_lookup") is not None:
            return f"{self._label}({self.__dict__['_what']!r}, not hydrated)"
        return super().__repr__()

    def __getstate__(self) -> Any:
        if self.__dict__.get("_lookup") is not None:
            return {"_lookup": self.__dict__["_lookup"], "_what": self.__dict__["_what"]}
        return super().__getstate__()  # type: ignore[misc]

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("_lookup") is not None:
            self.__dict__.update(state)
        else:
            super().__setstate__(state)  # type: ignore[misc]


__all__ = [
    "DeferredLookup",
    "AppIdentity",
    "ClassRecord",
    "FunctionRecord",
    "MethodSpec",
    "NoLocalCode",
    "ParameterSpec",
    "PoolSpec",
]
