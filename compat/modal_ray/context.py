"""Per-input context: whether code runs remotely, and the ids of the current input and call.

The worker wrapper sets these around each input (contextvars, so concurrent inputs on threads or
asyncio tasks each see their own ids). Outside a worker both ids are None and `is_local()` is True.
"""

from __future__ import annotations

import contextvars
import os

current_input: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "modal_current_input", default=None
)
current_call: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "modal_current_call", default=None
)

_remote = False


def mark_remote() -> None:
    """Called by the worker wrapper: from now on this process is a container."""
    global _remote
    if not _remote:
        _remote = True
        os.environ["MODAL_IS_REMOTE"] = "1"


def is_local() -> bool:
    """True on the machine that launched the app, False inside a function's worker."""
    return not (_remote or os.environ.get("MODAL_IS_REMOTE") == "1")


def current_input_id() -> str | None:
    return current_input.get()


def current_function_call_id() -> str | None:
    return current_call.get()
