"""Decorators that stack under `@app.function` / `@app.cls`: they record options on the function.

`@modal.concurrent`, `@modal.batched`, `@modal.method`, `@modal.enter`, `@modal.exit` return a
`PartialFunction` (or mark the function) and `@app.function` / `@app.cls` read the options back.
Web endpoint decorators raise until web endpoints are supported, saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Protocol, TypeVar, overload

from typing_extensions import ParamSpec

from modal_ray.exception import InvalidError, UnimplementedError

from .warn import deprecation

if TYPE_CHECKING:
    from .function import Function

P = ParamSpec("P")
R = TypeVar("R")
L = TypeVar("L")
T = TypeVar("T")


class PartialFunction(Generic[P, R, L]):
    """A function plus options that `@app.function` / `@app.cls` will apply.

    For type checkers it carries the function's parameters `P` (a method's without `self`), what
    its remote calls return `R`, and what a local call returns `L`, so that `@app.function` and a
    Modal class's methods keep them.
    """

    __module__ = "modal.partial_function"

    def __init__(self, raw_f: Callable[..., Any], options: dict[str, Any]) -> None:
        self.raw_f = raw_f
        self._modal_options = options
        self.__wrapped__ = raw_f
        self.__doc__ = getattr(raw_f, "__doc__", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw_f(*args, **kwargs)

    @overload
    def __get__(self, obj: None, objtype: Any = None) -> PartialFunction[P, R, L]: ...
    @overload
    def __get__(self, obj: object, objtype: Any = None) -> MethodFunction[P, R, L]: ...
    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # On the driver, `C(...)` is a `modal.cls.Obj` whose `obj.m` is a Function; in the
        # container (and for type checkers' sake, in `self.m(...)`) it is the bound method.
        if obj is None:
            return self
        return self.raw_f.__get__(obj, objtype)


if TYPE_CHECKING:

    class MethodFunction(Function[P, R, L]):
        """What `obj.method` is to a type checker: a Function (`.remote`, `.map`, `.spawn`,
        `.local`) that a method of the class can also call directly (`self.other(...)`)."""

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> L: ...


class _MethodDecorator(Protocol):
    @overload
    def __call__(
        self, f: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], /
    ) -> PartialFunction[P, R, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, f: Callable[Concatenate[Any, P], R], /) -> PartialFunction[P, R, R]: ...


class _FunctionOrClassDecorator(Protocol):
    @overload
    def __call__(self, f: type[T], /) -> type[T]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, f: PartialFunction[P, R, L], /) -> PartialFunction[P, R, L]: ...
    @overload
    def __call__(
        self, f: Callable[P, Coroutine[Any, Any, R]], /
    ) -> PartialFunction[P, R, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, f: Callable[P, R], /) -> PartialFunction[P, R, R]: ...


def _add(f: Any, **options: Any) -> PartialFunction[..., Any, Any]:
    if isinstance(f, PartialFunction):
        return PartialFunction(f.raw_f, {**f._modal_options, **options})
    if not callable(f):
        raise InvalidError(f"Expected a function, got {type(f).__name__}.")
    return PartialFunction(f, options)


def concurrent(
    *, max_inputs: int | None = None, target_inputs: int | None = None
) -> _FunctionOrClassDecorator:
    """Let one container run up to `max_inputs` inputs at once."""
    if not isinstance(max_inputs, int) or max_inputs < 1:
        raise InvalidError("`@modal.concurrent` needs `max_inputs=` (a positive int).")
    if target_inputs is not None and (
        not isinstance(target_inputs, int) or not 1 <= target_inputs <= max_inputs
    ):
        raise InvalidError("`target_inputs` must be a positive int no larger than `max_inputs`.")

    def wrapper(f: Any) -> Any:
        return _add(f, max_inputs_concurrent=max_inputs, target_inputs=target_inputs)

    return wrapper  # type: ignore[return-value]


# A batched function takes and returns lists, its remote calls one item: left untyped (`...`).
def batched(
    *, max_batch_size: int, wait_ms: int
) -> Callable[[Callable[..., Any]], PartialFunction[..., Any, Any]]:
    """Group concurrent inputs into lists of up to `max_batch_size`, waiting up to `wait_ms`."""
    if not isinstance(max_batch_size, int) or not 1 <= max_batch_size <= 1000:
        raise InvalidError("`max_batch_size` must be an int between 1 and 1000.")
    if not isinstance(wait_ms, int) or not 0 <= wait_ms < 10 * 60 * 1000:
        raise InvalidError("`wait_ms` must be a non-negative int below 10 minutes.")

    def wrapper(f: Any) -> PartialFunction[..., Any, Any]:
        return _add(f, batch_max_size=max_batch_size, batch_wait_ms=wait_ms)

    return wrapper


def method(*, is_generator: bool | None = None) -> _MethodDecorator:
    """Mark a method of an `@app.cls` class as remotely callable."""
    if callable(is_generator):
        raise InvalidError("`@modal.method` was used without parentheses; write `@modal.method()`.")

    def wrapper(f: Any) -> Any:
        return _add(f, method=True, is_generator=is_generator)

    return wrapper  # type: ignore[return-value]


def enter(*, snap: bool = False) -> _MethodDecorator:
    """Run a method once when a container starts."""

    def wrapper(f: Any) -> Any:
        return _add(f, enter=True, snap=snap)

    return wrapper  # type: ignore[return-value]


def exit() -> _MethodDecorator:
    """Run a method once when a container stops."""

    def wrapper(f: Any) -> Any:
        return _add(f, exit=True)

    return wrapper  # type: ignore[return-value]


def _web_unsupported(kind: str) -> UnimplementedError:
    return UnimplementedError(
        f"`@modal.{kind}`: web endpoints (Ray Serve) are not supported by this version of"
        " modal-ray yet."
    )


def fastapi_endpoint(
    *,
    method: str = "GET",
    label: str | None = None,
    custom_domains: Any = None,
    docs: bool = False,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], Any]:
    raise _web_unsupported("fastapi_endpoint")


def web_endpoint(*args: Any, **kwargs: Any) -> None:
    deprecation(
        "web_endpoint", "`@modal.web_endpoint` is deprecated; use `@modal.fastapi_endpoint`."
    )
    raise _web_unsupported("web_endpoint")


def asgi_app(
    *, label: str | None = None, custom_domains: Any = None, requires_proxy_auth: bool = False
) -> Callable[[Any], Any]:
    raise _web_unsupported("asgi_app")


def wsgi_app(
    *, label: str | None = None, custom_domains: Any = None, requires_proxy_auth: bool = False
) -> Callable[[Any], Any]:
    raise _web_unsupported("wsgi_app")


def web_server(
    port: int,
    *,
    startup_timeout: float = 5.0,
    label: str | None = None,
    custom_domains: Any = None,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], Any]:
    raise _web_unsupported("web_server")


def clustered(*, size: int, rdma: bool = False) -> Callable[[Any], Any]:
    raise UnimplementedError("`@modal.clustered` (gang-scheduled containers) is not supported yet.")


def sessioned() -> Callable[[Any], Any]:
    raise UnimplementedError("`@modal.sessioned` is not supported by modal-ray.")


class _NoDefault:
    def __repr__(self) -> str:
        return "modal.cls._NO_DEFAULT"


_NO_DEFAULT: Any = _NoDefault()


def parameter(*, default: Any = _NO_DEFAULT, init: bool = True) -> Any:
    """A class parameter of an `@app.cls` class (`name: str = modal.parameter()`)."""
    import dataclasses

    if default is _NO_DEFAULT:
        return dataclasses.field(init=init, metadata={"modal_parameter": True})
    return dataclasses.field(default=default, init=init, metadata={"modal_parameter": True})
