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
from typing import TYPE_CHECKING, Any

from modal_ray.exception import InvalidError

from . import naming, output

if TYPE_CHECKING:
    from .app import App
    from .function import Function


def web_functions(app: App) -> list[Function[..., Any]]:
    return [f for f in app.registered_functions.values() if f._options.web is not None]


def labels(app: App) -> dict[str, str]:
    """tag -> label of the app's web functions; InvalidError on a label used twice."""
    from modal_ray.serve_adapters.web import endpoint_label

    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for fn in web_functions(app):
        label = endpoint_label(app.name, fn._tag, fn._options.web.label)
        if label in seen:
            raise InvalidError(
                f"Web endpoints {seen[label]!r} and {fn._tag!r} of app {app.name!r} have the"
                f" same label {label!r}; give one of them another `label=`."
            )
        seen[label] = fn._tag
        out[fn._tag] = label
    return out


async def start_endpoints(app: App) -> None:
    """Deploy every web endpoint of the running `app` and print its URL."""
    functions = web_functions(app)
    if not functions:
        return
    names = labels(app)
    from modal_ray.backends import get_backend
    from modal_ray.serve_adapters.web import WebEndpoint

    endpoints = []
    for fn in functions:
        record = fn._record()
        assert record.pool is not None
        endpoints.append(
            WebEndpoint(record.pool.service, record.pool.container, fn._options.web, names[fn._tag])
        )
    urls = await asyncio.get_running_loop().run_in_executor(
        None, get_backend().serve_web, endpoints
    )
    for fn, url in zip(functions, urls, strict=True):
        fn._web_url = url
        output.status(f"✓ Created web function {fn._tag} => {url}")


def pool_name(environment: str, app_id: str | None, tag: str) -> str:
    """The pool (and gateway route) of a web function of a run."""
    return naming.pool_name(environment, app_id, tag, {}, "")
