"""`modal.partial_function`: decorators that stack under `@app.function` / `@app.cls`."""

from modal_ray.partial_function import (
    PartialFunction,
    asgi_app,
    batched,
    clustered,
    concurrent,
    enter,
    exit,
    fastapi_endpoint,
    method,
    parameter,
    sessioned,
    web_endpoint,
    web_server,
    wsgi_app,
)

__all__ = [
    "PartialFunction",
    "asgi_app",
    "batched",
    "clustered",
    "concurrent",
    "enter",
    "exit",
    "fastapi_endpoint",
    "method",
    "parameter",
    "sessioned",
    "web_endpoint",
    "web_server",
    "wsgi_app",
]
