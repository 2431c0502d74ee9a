"""`modal.cli`: the `modal` command as a module (implementation in `modal_ray.cli`)."""

from modal_ray.cli import main

__all__ = ["main"]
