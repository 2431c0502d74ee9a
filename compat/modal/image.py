"""`modal.image`: container images as a Ray runtime_env (implemented in `modal_ray.image`)."""

from modal_ray.image import Image

__all__ = ["Image"]
