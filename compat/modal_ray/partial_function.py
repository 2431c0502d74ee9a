"""Decorators that stack under `@app.function` / `@app.cls`: they record options on the function.

`@modal.concurrent`, `@modal.batched`, `@modal.method`, `@modal.enter`, `@modal.exit` return a
`PartialFunction` (or mark the function) and `@app.function` / `@app.cls` read the options back.
The web decorators (`@modal.fastapi_endpoint`, `@modal.asgi_app`, `@modal.wsgi_app`,
`@modal.web_server`) record a `WebSpec` the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Protocol, TypeVar, overload

from typing_extensions import ParamSpec

from modal_ray.exception import InvalidError

from .warn import deprecation, warn_once

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


def _web(kind: str, **fields: Any) -> Callable[[Any], PartialFunction[..., Any, Any]]:
    """A web decorator: records a `WebSpec` (checked now) that `@app.function` / `@app.cls`
    turn into an endpoint served while the app runs."""
    from modal_ray.serve_adapters.web import HTTP_METHODS, WebSpec, check_label

    label = fields.get("label")
    if label is not None:
        try:
            check_label(label)
        except ValueError as exc:
            raise InvalidError(str(exc)) from None
    method = fields.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise InvalidError(
            f"Invalid HTTP method {method!r} for `@modal.{kind}`: use one of"
            f" {', '.join(HTTP_METHODS)}."
        )
    fields["method"] = method.upper()
    fields["requires_proxy_auth"] = bool(fields.get("requires_proxy_auth"))
    if fields.pop("custom_domains", None):
        warn_once(
            "web:custom_domains",
            "`custom_domains=` has no effect on Ray: endpoints are served on 127.0.0.1 ports.",
        )
    spec = WebSpec(kind=kind, **fields)

    def wrapper(f: Any) -> PartialFunction[..., Any, Any]:
        if isinstance(f, PartialFunction) and f._modal_options.get("web") is not None:
            raise InvalidError(f"A function can have only one web decorator (`@modal.{kind}`).")
        raw = f.raw_f if isinstance(f, PartialFunction) else f
        if not callable(raw) or isinstance(raw, type):
            raise InvalidError(f"`@modal.{kind}` decorates a function, not {raw!r}.")
        if kind != "fastapi_endpoint" and _takes_arguments(raw):
            raise InvalidError(
                f"`@modal.{kind}` functions take no arguments (the function builds the app or"
                f" starts the server): {getattr(raw, '__qualname__', raw)!r} has parameters."
                " Parametrize with a `@app.cls` and `modal.parameter()` instead."
            )
        return _add(f, web=spec)

    return wrapper


def _takes_arguments(f: Callable[..., Any]) -> bool:
    import inspect

    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return False
    if params and params[0].name == "self":  # a method: its object is given
        params = params[1:]
    return any(
        p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        for p in params
    )


def fastapi_endpoint(
    _warn_parentheses_missing: Any = None,
    *,
    method: str = "GET",
    label: str | None = None,
    custom_domains: Any = None,
    docs: bool = False,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], PartialFunction[..., Any, Any]]:
    """Serve the function as an HTTP endpoint at `/` (FastAPI parses its parameters)."""
    _no_bare_use("fastapi_endpoint", _warn_parentheses_missing)
    return _web(
        "fastapi_endpoint",
        method=method,
        label=label,
        custom_domains=custom_domains,
        docs=docs,
        requires_proxy_auth=requires_proxy_auth,
    )


def web_endpoint(*args: Any, **kwargs: Any) -> Callable[[Any], PartialFunction[..., Any, Any]]:
    """Deprecated alias of `@modal.fastapi_endpoint` (same arguments; Modal 1.6.4 takes
    `*args, **kwargs` here)."""
    deprecation(
        "web_endpoint",
        "`@modal.web_endpoint` is deprecated; use `@modal.fastapi_endpoint` instead.",
    )
    return _web_endpoint(*args, **kwargs)


def _web_endpoint(
    _warn_parentheses_missing: Any = None,
    *,
    method: str = "GET",
    label: str | None = None,
    custom_domains: Any = None,
    docs: bool = False,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], PartialFunction[..., Any, Any]]:
    _no_bare_use("web_endpoint", _warn_parentheses_missing)
    return _web(
        "fastapi_endpoint",
        method=method,
        label=label,
        custom_domains=custom_domains,
        docs=docs,
        requires_proxy_auth=requires_proxy_auth,
    )


def asgi_app(
    _warn_parentheses_missing: Any = None,
    *,
    label: str | None = None,
    custom_domains: Any = None,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], PartialFunction[..., Any, Any]]:
    """Serve the ASGI app (FastAPI, Starlette, ...) that the function returns."""
    _no_bare_use("asgi_app", _warn_parentheses_missing)
    return _web(
        "asgi_app",
        label=label,
        custom_domains=custom_domains,
        requires_proxy_auth=requires_proxy_auth,
    )


def wsgi_app(
    _warn_parentheses_missing: Any = None,
    *,
    label: str | None = None,
    custom_domains: Any = None,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], PartialFunction[..., Any, Any]]:
    """Serve the WSGI app (Flask, Django, ...) that the function returns."""
    _no_bare_use("wsgi_app", _warn_parentheses_missing)
    return _web(
        "wsgi_app",
        label=label,
        custom_domains=custom_domains,
        requires_proxy_auth=requires_proxy_auth,
    )


def web_server(
    port: int,
    *,
    startup_timeout: float = 5.0,
    label: str | None = None,
    custom_domains: Any = None,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], PartialFunction[..., Any, Any]]:
    """Serve the HTTP server that the function starts, once it listens on `port`."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidError(f"`@modal.web_server` needs a port number (1-65535), not {port!r}.")
    if isinstance(startup_timeout, bool) or not isinstance(startup_timeout, int | float):
        raise InvalidError("`startup_timeout=` takes seconds as a number.")
    if startup_timeout <= 0:
        raise InvalidError(f"`startup_timeout` must be positive, not {startup_timeout!r}.")
    return _web(
        "web_server",
        port=port,
        startup_timeout=float(startup_timeout),
        label=label,
        custom_domains=custom_domains,
        requires_proxy_auth=requires_proxy_auth,
    )


def _no_bare_use(kind: str, f: Any) -> None:
    if f is not None:
        raise InvalidError(
            f"`@modal.{kind}` was used without parentheses; write `@modal.{kind}()`."
        )


def clustered(*, size: int, rdma: bool = False) -> _FunctionOrClassDecorator:
    """Run each input of the Function on `size` gang-scheduled ranks, one per node (see
    `modal_ray.clustered`); the caller gets rank 0's value."""
    from .clustered import check_target, decorator_options

    options = decorator_options(size, rdma)

    def wrapper(f: Any) -> Any:
        check_target(f, getattr(f, "_modal_options", {}))
        return _add(f, **options)

    return wrapper  # type: ignore[return-value]


def sessioned() -> Callable[[Any], Any]:
    """Sticky sessions on a Server (only with `@app.server()`): marks the class, which
    `@app.server` serves with sticky sessions (`Server.sessions`); other decorators refuse the
    mark."""

    def wrapper(f: Any) -> Any:
        return _add(f, sessioned=True)

    return wrapper


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
