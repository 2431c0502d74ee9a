"""Engine-neutral error helpers: the remote-failure envelope and the legacy map wrapper.

A function that raises on a worker does not raise through Ray: the worker wrapper returns a
`RemoteFailure` as the call's value. That keeps Ray's own retry and error-logging machinery out of
user exceptions, and lets the caller re-raise the original type with the remote traceback attached.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import cloudpickle

from modal_ray.exception import DeserializationError, ExecutionError, FunctionTimeoutError


class UserCodeException(Exception):
    """Wraps an exception returned by `map(..., return_exceptions=True)`
    (legacy Modal behaviour)."""

    __module__ = "modal.exceptions"

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc

    def __repr__(self) -> str:
        return f"UserCodeException({self.exc!r})"


class _RemoteTraceback(Exception):
    """Carries the remote traceback text; chained as `__cause__` so Python prints it."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return "\n\nRemote traceback:\n" + self.tb


@dataclass(slots=True)
class RemoteFailure:
    """What a worker returns instead of raising. `exc_bytes` is the cloudpickled exception."""

    kind: str  # "user" | "timeout" | "serialization" | "deserialization"
    exc_bytes: bytes | None
    message: str
    traceback: str
    retryable: bool = True

    @classmethod
    def capture(cls, exc: BaseException, tb: str, kind: str = "user") -> RemoteFailure:
        try:
            blob: bytes | None = cloudpickle.dumps(exc)
        except Exception:
            blob = None
        return cls(kind, blob, f"{type(exc).__name__}: {exc}", tb)

    def to_exception(self, function_name: str = "") -> BaseException:
        """Rebuild the exception to raise in the caller, remote traceback attached."""
        exc: BaseException
        if self.kind == "timeout":
            exc = FunctionTimeoutError(self.message)
        elif self.exc_bytes is not None:
            try:
                exc = pickle.loads(self.exc_bytes)
            except Exception as e:
                exc = DeserializationError(
                    "Could not deserialize the exception raised by"
                    f" {function_name or 'the function'}"
                    f" ({self.message}): {type(e).__name__}: {e}. Is the module that defines it"
                    " importable locally?"
                )
        else:
            exc = ExecutionError(
                f"{function_name or 'The function'} raised an exception that cannot be pickled:"
                f" {self.message}"
            )
        if self.traceback:
            exc.__cause__ = _RemoteTraceback(self.traceback)
        return exc


def is_failure(value: Any) -> bool:
    return type(value) is RemoteFailure
