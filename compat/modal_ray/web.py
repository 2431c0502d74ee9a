"""Serving an app's web endpoints while it runs (`modal run`, `with app.run():`).

When an app starts, each function with a web decorator is compiled into its container pool
(`FunctionOptions.compile_function`) and handed to the backend, which deploys it and gives it
its own origin (`Backend.serve_web`); the URLs are printed. Stopping the app removes the pools
and their origins with the run's other pools (`Backend.stop_services`).

Labels name endpoints as Modal's hostnames do: `label=` or `<app>-<function>`; two endpoints of
one app with the same label are refused before anything is deployed.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from modal_ray.exception import InvalidError

from . import naming, output

if TYPE_CHECKING:
    from modal_ray.serve_adapters.web import WebSpec

    from .app import App
    from .cls import Cls
    from .function import Function
    from .run_context import RunContext
    from .server import Server


# `modal serve`: the ports endpoints had before a reload (label -> port), and those of the
# endpoints this process serves now.
_requested_ports: dict[str, int] = {}
_served_ports: dict[str, int] = {}


def request_ports(ports: dict[str, int]) -> None:
    """Serve the endpoints with these labels on these ports where they are free."""
    _requested_ports.clear()
    _requested_ports.update(ports)


def served_ports() -> dict[str, int]:
    """label -> port of the endpoints started by this process."""
    return dict(_served_ports)


def web_functions(app: App) -> list[Function[..., Any]]:
    return [f for f in app.registered_functions.values() if f._options.web is not None]


def web_methods(app: App) -> list[tuple[Cls, str, WebSpec]]:
    """(class, method name, spec) of the web endpoints defined on the app's classes."""
    out = []
    for cls in app.registered_classes.values():
        for name, opts in cls._method_opts.items():
            if opts.get("web") is not None:
                out.append((cls, name, opts["web"]))
    return out


def servers(app: App) -> list[Server]:
    """The app's `@app.server` classes."""
    return list(app.__dict__.get("_servers", {}).values())


def labels(app: App) -> dict[str, str]:
    """tag (`f` or `Cls.method`) -> label of the app's web endpoints; InvalidError on a label
    used twice."""
    from modal_ray.serve_adapters.web import endpoint_label

    tags = [(fn._tag, fn._options.web) for fn in web_functions(app)]
    tags += [(f"{cls._tag}.{name}", spec) for cls, name, spec in web_methods(app)]
    tags += [(server._tag, server._web) for server in servers(app)]
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for tag, spec in tags:
        label = endpoint_label(app.name, tag, spec.label)
        if label in seen:
            raise InvalidError(
                f"Web endpoints {seen[label]!r} and {tag!r} of app {app.name!r} have the"
                f" same label {label!r}; give one of them another `label=`."
            )
        seen[label] = tag
        out[tag] = label
    return out


async def start_endpoints(app: App) -> None:
    """Deploy every web endpoint of the running `app` and print its URL."""
    functions = web_functions(app)
    methods = web_methods(app)
    app_servers = servers(app)
    if not functions and not methods and not app_servers:
        return
    names = labels(app)
    from modal_ray.backends import get_backend
    from modal_ray.serve_adapters.web import WebEndpoint

    endpoints = []
    for fn in functions:
        record = fn._record()
        assert record.pool is not None
        label = names[fn._tag]
        endpoints.append(
            WebEndpoint(
                record.pool.service,
                record.pool.container,
                fn._options.web,
                label,
                port=_requested_ports.get(label),
            )
        )
    ctx = app.run_context()
    for cls, name, spec in methods:
        cls_record = cls._record()
        missing = [p.name for p in cls_record.parameters if p.init and not p.has_default]
        if missing:
            raise InvalidError(
                f"Web endpoint {cls._tag}.{name}: class {cls._tag} has parameters without"
                f" defaults ({', '.join(missing)}), and a web request cannot give them. Give"
                " them defaults (`modal.parameter(default=...)`)."
            )
        pool = cls_record.pool_for({})
        service = replace(
            pool.service,
            name=method_pool_name(ctx, cls._tag, cls_record.variant, name),
            tag=f"{cls._tag}.{name}",
        )
        tag = f"{cls._tag}.{name}"
        label = names[tag]
        endpoints.append(
            WebEndpoint(service, pool.container, spec, label, name, _requested_ports.get(label))
        )
    for server in app_servers:
        pool = server._pool()
        label = names[server._tag]
        endpoints.append(
            WebEndpoint(
                pool.service,
                pool.container,
                server._web,
                label,
                "__server__",
                _requested_ports.get(label),
            )
        )
    urls = await asyncio.get_running_loop().run_in_executor(
        None, get_backend().serve_web, endpoints
    )
    tags = [fn._tag for fn in functions] + [f"{c._tag}.{n}" for c, n, _ in methods]
    tags += [server._tag for server in app_servers]
    for fn, url in zip(functions, urls, strict=False):
        fn._web_url = url
    for server, url in zip(app_servers, urls[len(urls) - len(app_servers) :], strict=True):
        server._url = url
    for tag, url, endpoint in zip(tags, urls, endpoints, strict=True):
        _served_ports[endpoint.label] = int(url.rsplit(":", 1)[1])
        output.status(f"✓ Created web function {tag} => {url}")


def proxy_tokens(method: str, *args: Any, environment: str | None = None) -> Any:
    """An operation on the cluster's proxy-auth tokens (`modal workspace proxy-tokens`):
    `create` -> (token_id, secret), `list`, `revoke(id)`, `delete(id)` -> found."""
    from modal_ray import config
    from modal_ray.backends import get_backend

    backend = get_backend()
    backend.connect(config.environment_name(environment))
    return backend.proxy_token_call(method, args)


def pool_name(environment: str, app_id: str | None, tag: str) -> str:
    """The pool (and gateway route) of a web function of a run."""
    return naming.pool_name(environment, app_id, tag, {}, "")


def method_pool_name(ctx: RunContext, tag: str, variant: str, method: str) -> str:
    """The pool (and gateway route) of a class's web method: one pool per web method, made
    with the class's default parameters (its `@enter` hooks run in each)."""
    return naming.pool_name(ctx.environment, ctx.app_id, tag, {}, f"{variant}|web:{method}")
