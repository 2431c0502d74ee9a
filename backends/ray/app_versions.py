"""The current version of each deployed app, published where any process reads it cheaply.

The registry actor writes an app's version into Ray's GCS key-value store when a deploy or a
rollback commits, and removes it when the app is stopped (`publish`); on start it publishes
every deployed app again (`publish_all`: the GCS of a restarted head starts empty). A handle
looked up by name reads it (`read`: one GCS request, no actor call) to learn that its app moved
on (`modal_ray.freshness`).

Keys: `app-version/<environment>/<app id>` in the `modal-ray` namespace; values: the version
number as ASCII digits. A missing key reads as None (stopped, or not published yet): a reader
then looks the app up again, which settles it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import ray
from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get, _internal_kv_put

from . import runtime

NAMESPACE = "modal-ray"
logger = logging.getLogger(__name__)
_PUBLISHING = frozenset({"deploy", "rollback", "stop"})


def _key(environment: str, app_id: str) -> str:
    return f"app-version/{environment}/{app_id}"


def publish(environment: str, method: str, result: Any) -> None:
    """After the registry's `method` committed with `result`: publish the version it made
    current (deploy, rollback) or remove the app's (stop); other methods publish nothing."""
    if method not in _PUBLISHING or not isinstance(result, Mapping) or "app_id" not in result:
        return
    key = _key(environment, str(result["app_id"]))
    try:
        if method == "stop":
            _internal_kv_del(key, namespace=NAMESPACE)
        else:
            version = str(int(result["version"]))
            _internal_kv_put(key, version, overwrite=True, namespace=NAMESPACE)
    except Exception as exc:  # the change is committed: its reply must still say so
        logger.warning(
            "Could not publish the version of app %s after %s (%s): handles looked up by name"
            " follow it when their containers are gone, or after the next deploy.",
            result["app_id"],
            method,
            exc,
        )


def publish_all(environment: str, apps: Iterable[Mapping[str, Any]]) -> None:
    """Publish the version of every deployed app of `list_apps`."""
    for app in apps:
        if app.get("state") == "deployed":
            publish(environment, "deploy", app)


def read(environment: str, app_id: str) -> int | None:
    """The published version of the app, None if it has none (stopped, or not published)."""
    if not ray.is_initialized():
        runtime.connect(environment)
    value = _internal_kv_get(_key(environment, app_id), namespace=NAMESPACE)
    return None if value is None else int(value)


__all__ = ["NAMESPACE", "publish", "publish_all", "read"]
