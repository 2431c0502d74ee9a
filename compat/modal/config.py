"""`modal.config`: client configuration, read from the environment (`MODAL_*` variables).

modal-ray has no Modal credentials; the settings that matter are the Ray address, the environment
and the state store (see `modal_ray.config`). Profiles are accepted for compatibility.
"""

from __future__ import annotations

import os
from typing import Any

from modal_ray import config as _core

_DEFAULTS: dict[str, Any] = {
    "environment": _core.DEFAULT_ENVIRONMENT,
    "loglevel": "WARNING",
    "traceback": False,
    "ray_address": None,
    "state": None,
}


class Config:
    """Read configuration values (`MODAL_<KEY>` environment variables override defaults)."""

    def __init__(self) -> None:
        self._overrides: dict[str, str] = {}

    def get(self, key: str, *, profile: str | None = None, use_env: bool = True) -> Any:
        if key in self._overrides:
            return self._overrides[key]
        env_key = "MODAL_RAY_ADDRESS" if key == "ray_address" else f"MODAL_{key.upper()}"
        if use_env and env_key in os.environ:
            value: Any = os.environ[env_key]
            if key == "traceback":
                value = value.lower() not in ("", "0", "false")
            return value
        return _DEFAULTS.get(key)

    def override_locally(self, key: str, value: str) -> None:
        self._overrides[key] = value
        os.environ["MODAL_RAY_ADDRESS" if key == "ray_address" else f"MODAL_{key.upper()}"] = value

    def to_dict(self, *, include_internal: bool = False) -> dict[str, Any]:
        return {k: self.get(k) for k in _DEFAULTS}


config = Config()


def config_profiles() -> list[str]:
    """Profiles are a Modal-cloud concept; modal-ray has one implicit profile."""
    return ["default"]


def config_set_active_profile(profile: str) -> None:
    if profile != "default":
        from modal.exception import InvalidError

        raise InvalidError(
            "modal-ray has a single profile, 'default'; select clusters with MODAL_RAY_ADDRESS."
        )


__all__ = ["Config", "config", "config_profiles", "config_set_active_profile"]
