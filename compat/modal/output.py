"""`modal.output`: `enable_output()`."""

from modal_ray.output import enable_output

__all__ = ["enable_output"]
