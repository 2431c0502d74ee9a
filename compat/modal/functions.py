"""`modal.functions`: Function and FunctionCall (implementation in `modal_ray.function`)."""

from typing import Any

from modal_ray.function import Function
from modal_ray.function_call import FunctionCall
from modal_ray.warn import deprecation


def gather(*function_calls: FunctionCall[Any]) -> Any:
    """Deprecated alias of `modal.FunctionCall.gather`."""
    deprecation(
        "functions.gather",
        "`modal.functions.gather` is deprecated; use `modal.FunctionCall.gather`.",
    )
    return FunctionCall.gather(*function_calls)


__all__ = ["Function", "FunctionCall", "gather"]
