"""Client-side configuration: environment variables first, then `~/.modal.toml`-style defaults.

Variables (default in brackets):

- `MODAL_RAY_ADDRESS` / `RAY_ADDRESS`: Ray cluster to connect to
  [unset: start an embedded local Ray]
- `MODAL_RAY_CONNECT_TIMEOUT`: seconds to wait for that cluster to answer before failing with
  `modal.exception.ConnectionError` [`30`]
- `MODAL_ENVIRONMENT`: Modal environment (Ray namespace `modal-<env>`) [`main`]
- `MODAL_RAY_STATE`: state store root (registry, secrets, ...) [`~/.modal-ray`]
- `MODAL_RAY_NUM_CPUS` / `MODAL_RAY_NUM_GPUS`: logical resources of the embedded Ray [detected]
- `MODAL_RAY_PACKAGES`: `install` image packages through runtime_env, or only `check` them
  [`install`]
- `MODAL_RAY_CHECK_FEASIBLE`: refuse resource requests no node can satisfy
  (`0` on autoscaling clusters) [`1`]
- `MODAL_TRACEBACK`: full tracebacks from the CLI [unset]
"""

from __future__ import annotations

import os
from pathlib import Path

from modal_ray.exception import InvalidError

DEFAULT_ENVIRONMENT = "main"


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() not in ("0", "false", "no", "off")


def ray_address() -> str | None:
    return os.environ.get("MODAL_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or None


DEFAULT_CONNECT_TIMEOUT_S = 30.0


def connect_timeout() -> float:
    """How long the first connection to a cluster at an address may take, in seconds."""
    raw = os.environ.get("MODAL_RAY_CONNECT_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise InvalidError(
            f"MODAL_RAY_CONNECT_TIMEOUT must be a positive number of seconds, not {raw!r}."
        )
    return value


def environment_name(explicit: str | None = None) -> str:
    name = explicit or os.environ.get("MODAL_ENVIRONMENT") or DEFAULT_ENVIRONMENT
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
        raise InvalidError(
            f"Invalid environment name {name!r}: use up to 64 letters, digits, '-', '_' or '.'."
        )
    return name


def namespace_for(environment: str) -> str:
    return f"modal-{environment}"


def state_root() -> Path:
    return Path(os.environ.get("MODAL_RAY_STATE") or Path.home() / ".modal-ray").expanduser()


def embedded_num_cpus() -> float | None:
    raw = os.environ.get("MODAL_RAY_NUM_CPUS")
    return float(raw) if raw else None


def embedded_num_gpus() -> float | None:
    raw = os.environ.get("MODAL_RAY_NUM_GPUS")
    return float(raw) if raw else None


def packages_mode() -> str:
    mode = os.environ.get("MODAL_RAY_PACKAGES", "install").strip().lower()
    if mode not in ("install", "check"):
        raise InvalidError(f"MODAL_RAY_PACKAGES must be 'install' or 'check', not {mode!r}.")
    return mode


def check_feasible() -> bool:
    return _flag("MODAL_RAY_CHECK_FEASIBLE", True)


def show_traceback() -> bool:
    return _flag("MODAL_TRACEBACK", False)
