"""Warnings that fire once per process and key: meaningless-off-Modal parameters and
deprecations."""

from __future__ import annotations

import threading
import warnings

from modal_ray.exception import DeprecationError

_seen: set[str] = set()
_lock = threading.Lock()


def warn_once(
    key: str, message: str, category: type[Warning] = UserWarning, stacklevel: int = 3
) -> None:
    with _lock:
        if key in _seen:
            return
        _seen.add(key)
    warnings.warn(message, category, stacklevel=stacklevel)


def deprecation(key: str, message: str, stacklevel: int = 3) -> None:
    warn_once(key, message, DeprecationError, stacklevel=stacklevel + 1)


def reset_for_tests() -> None:
    with _lock:
        _seen.clear()
