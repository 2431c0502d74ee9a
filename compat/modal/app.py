"""`modal.app`: the App object (implementation in `modal_ray.app`)."""

from modal_ray.app import App, LocalEntrypoint

__all__ = ["App", "LocalEntrypoint"]
