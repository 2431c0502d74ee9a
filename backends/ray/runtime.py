"""Connecting to Ray: the user's own `ray.init`, a cluster address, or an embedded local Ray.

Order of preference:
1. Ray is already initialised in this process (a notebook user called `ray.init(...)`, or we
   are inside a worker): use it as it is.
2. `MODAL_RAY_ADDRESS` or `RAY_ADDRESS` names a cluster: connect to it.
3. Otherwise start an embedded Ray private to this process: `address="local"` (never attach to
   another Ray on the machine), bound to 127.0.0.1, dashboard off, Ray's own logging at ERROR,
   token authentication left on (we set `RAY_AUTH_MODE=token` explicitly, which also silences
   Ray's warning about it). Ray shuts it down when the process exits.
"""

from __future__ import annotations

import logging
import os
import threading

import ray

from modal_ray import config
from modal_ray.exception import ConnectionError as ModalConnectionError

_lock = threading.Lock()
_mode: str | None = None  # "user" | "address" | "embedded"


def _quiet_ray_loggers() -> None:
    for name in ("ray", "ray.serve", "ray._private", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _keep_token_auth() -> None:
    """Token auth on, stated explicitly: Ray then skips its warning about the default.

    Ray caches its config at import time, so setting the variable must also refresh that cache
    (the same two steps Ray's own default path takes), or the driver and the GCS disagree.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()
    except ImportError:  # pragma: no cover - a Ray without token auth
        os.environ["RAY_AUTH_MODE"] = "token"


def connect(environment: str) -> str:
    """Make sure this process is connected; return how ("user", "address" or "embedded")."""
    global _mode
    if ray.is_initialized():
        if _mode is None:
            _mode = "user"
        return _mode
    with _lock:
        if ray.is_initialized():
            return _mode or "user"
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        namespace = config.namespace_for(environment)
        address = config.ray_address()
        try:
            if address:
                ray.init(
                    address=address,
                    namespace=namespace,
                    logging_level=logging.ERROR,
                    log_to_driver=True,
                )
                _mode = "address"
            else:
                _keep_token_auth()
                kwargs: dict[str, object] = {}
                if (cpus := config.embedded_num_cpus()) is not None:
                    kwargs["num_cpus"] = cpus
                if (gpus := config.embedded_num_gpus()) is not None:
                    kwargs["num_gpus"] = gpus
                ray.init(
                    address="local",
                    namespace=namespace,
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    log_to_driver=True,
                    _node_ip_address="127.0.0.1",
                    **kwargs,  # type: ignore[arg-type]
                )
                _mode = "embedded"
        except ray.exceptions.RayError as exc:
            raise ModalConnectionError(
                f"Could not connect to Ray ({address or 'embedded'}): {exc}"
            ) from exc
        except ConnectionError as exc:
            raise ModalConnectionError(
                f"Could not connect to the Ray cluster at {address!r}: {exc}. Check "
                "MODAL_RAY_ADDRESS / RAY_ADDRESS, or unset them to use an embedded local Ray."
            ) from exc
        _quiet_ray_loggers()
        return _mode


def mode() -> str | None:
    return _mode
