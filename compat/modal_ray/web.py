"""Serving an app's web endpoints while it runs (`modal run`, `with app.run():`).

When an app starts, each function with a web decorator is compiled into its container pool
(`FunctionOptions.compile_function`) and handed to the backend, which deploys it and gives it
its own origin (`Backend.serve_web`); the URLs are printed. Stopping the app removes the pools
and their origins with the run's other pools (`Backend.stop_services`).

A deployed app's endpoints (`modal deploy`) are served by the deploying process once the
registry holds the new version (`plan_deployment`, `serve_deployment`): their pools are the
deployment's, which no janitor removes, and the gateway keeps listening after that process
exits. Each label asks for the port it had in the app's previous deploy (the registry keeps
them), so URLs stay the same across redeploys and rollbacks (`serve_current_version`);
`modal app stop` closes them with the pools.

Labels name endpoints as Modal's hostnames do: `label=` or `<app>-<function>`; two endpoints of
one app with the same label are refused before anything is deployed.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from modal_ray.exception import InvalidError

from . import naming, output

if TYPE_CHECKING:
    from modal_ray.backends import Backend
    from modal_ray.serve_adapters.web import WebEndpoint, WebSpec

    from .app import App
    from .cls import Cls
    from .function import Function
    from .records import ClassRecord
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
        web_pool = class_web_pool_name(ctx.environment, ctx.app_id, cls._tag, cls_record.variant)
        service = replace(pool.service, name=web_pool)
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


# -- deployed apps: endpoints served on the cluster after the deploying process exits ---------


def _missing_defaults(tag: str, method: str, record: ClassRecord) -> None:
    missing = [p.name for p in record.parameters if p.init and not p.has_default]
    if missing:
        raise InvalidError(
            f"Web endpoint {tag}.{method}: class {tag} has parameters without"
            f" defaults ({', '.join(missing)}), and a web request cannot give them. Give"
            " them defaults (`modal.parameter(default=...)`)."
        )


def deployed_endpoints(
    app_name: str, objects: Sequence[tuple[str, str, Any]], ports: Mapping[str, int]
) -> list[WebEndpoint]:
    """The web endpoints among a deployed version's records (tag, kind, record): web
    functions, class web methods and Servers, each asking for the port its label had
    (`ports`). InvalidError on a label used twice or a class endpoint without defaults."""
    from modal_ray.serve_adapters.web import WebEndpoint, endpoint_label

    from .records import ClassRecord, FunctionRecord, PoolSpec
    from .server import ServerRecord

    out: list[WebEndpoint] = []
    seen: dict[str, str] = {}
    for tag, _kind, record in objects:
        items: list[tuple[str, Any, PoolSpec, str]] = []
        if isinstance(record, FunctionRecord):
            web = getattr(record, "web", None)
            if web is not None and record.pool is not None:
                items.append((tag, web, record.pool, "__call__"))
        elif isinstance(record, ServerRecord):
            items.append((tag, record.web, record.cls.pool_for({}), "__server__"))
        elif isinstance(record, ClassRecord):
            for m in record.methods:
                web = getattr(m, "web", None)
                if web is None:
                    continue
                _missing_defaults(record.tag, m.name, record)
                pool = record.pool_for({})
                app = record.app
                name = class_web_pool_name(app.environment, app.app_id, record.tag, record.variant)
                service = replace(pool.service, name=name)
                items.append((f"{tag}.{m.name}", web, PoolSpec(service, pool.container), m.name))
        for item_tag, web, pool, method in items:
            label = endpoint_label(app_name, item_tag, web.label)
            if label in seen:
                raise InvalidError(
                    f"Web endpoints {seen[label]!r} and {item_tag!r} of app {app_name!r} have"
                    f" the same label {label!r}; give one of them another `label=`."
                )
            seen[label] = item_tag
            out.append(
                WebEndpoint(pool.service, pool.container, web, label, method, ports.get(label))
            )
    return out


def plan_deployment(
    backend: Backend, environment: str, app_id: str, app_name: str, objects: Sequence[Any]
) -> list[WebEndpoint]:
    """Before a deploy is registered: the endpoints of its objects (tag, kind, pickled record),
    on the ports their labels had in earlier deploys of the app."""
    records = [(tag, kind, pickle.loads(data)) for tag, kind, data in objects]
    if not any(_is_web(r) for _, _, r in records):
        return []
    ports = backend.registry_call_sync(environment, "web_ports", (app_id,))
    return deployed_endpoints(app_name, records, ports)


def _is_web(record: Any) -> bool:
    from .records import ClassRecord
    from .server import ServerRecord

    if isinstance(record, ServerRecord):
        return True
    if isinstance(record, ClassRecord):
        return any(getattr(m, "web", None) is not None for m in record.methods)
    return getattr(record, "web", None) is not None


def serve_deployment(
    backend: Backend, environment: str, app_id: str, endpoints: Sequence[WebEndpoint]
) -> list[str]:
    """Serve a registered deploy's endpoints on the cluster (they outlive this process: the
    registry owns their pools) and keep their ports for the next deploy; their URLs."""
    if not endpoints:
        return []
    urls = backend.serve_web(endpoints)
    ports = {e.label: int(url.rsplit(":", 1)[1]) for e, url in zip(endpoints, urls, strict=True)}
    backend.registry_call_sync(environment, "set_web_ports", (app_id, ports))
    for e, url in zip(endpoints, urls, strict=True):
        output.status(f"✓ Created web endpoint {e.service.tag} => {url}")
    return urls


def serve_current_version(backend: Backend, environment: str, app_name: str) -> list[str]:
    """Serve the endpoints of the app's current version again (after `modal app rollback`,
    which makes an earlier version current), on the ports they had; their URLs."""
    info = backend.registry_call_sync(environment, "lookup_app", (app_name,))
    app_id = str(info["app_id"])
    objects = []
    for obj in backend.registry_call_sync(environment, "app_objects", (app_id,)):
        found = backend.registry_call_sync(
            environment, "lookup", (app_name, obj["tag"], obj["kind"])
        )
        objects.append((obj["tag"], obj["kind"], found["record"]))
    endpoints = plan_deployment(backend, environment, app_id, app_name, objects)
    for e in endpoints:  # the version's code packages, if the engine dropped them since
        backend.restore_code(environment, e.service.runtime_env)
    return serve_deployment(backend, environment, app_id, endpoints)


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


def class_web_pool_name(environment: str, app_id: str | None, tag: str, variant: str) -> str:
    """The pool of a class's web methods: one pool for all of them, made with the class's
    default parameters (its `@enter` hooks run once per container, as on Modal)."""
    return naming.pool_name(environment, app_id, tag, {}, f"{variant}|web")


def method_pool_name(ctx: RunContext, tag: str, variant: str, method: str) -> str:
    """The gateway route of a class's web method (`WebEndpoint.key`): its class's web pool,
    and the method as the sub-path."""
    return f"{class_web_pool_name(ctx.environment, ctx.app_id, tag, variant)}/{method}"
