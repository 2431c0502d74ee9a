"""`modal.environments`: Environment objects (implementation in `modal_ray.environment`)."""

from modal_ray.environment import Environment

__all__ = ["Environment"]
