"""Placeholders for Modal names whose feature modal-ray does not provide yet.

Importing them works (so `except`/`isinstance`/annotations in user code keep working); using
them raises `UnimplementedError` with a message saying what is missing. Nothing is silently ignored.
"""

from __future__ import annotations

from typing import Any

from modal_ray.exception import UnimplementedError


class _UnsupportedMeta(type):
    _feature: str

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise UnimplementedError(f"`modal.{cls.__name__}.{name}`: {cls._feature}")

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise UnimplementedError(f"`modal.{cls.__name__}(...)`: {cls._feature}")


def placeholder(name: str, feature: str, module: str) -> type:
    """A class named `name` that raises `UnimplementedError(feature)` when used."""
    return _UnsupportedMeta(
        name, (), {"_feature": feature, "__module__": module, "__doc__": feature}
    )
