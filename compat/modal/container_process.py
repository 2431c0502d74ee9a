"""`modal.container_process`: processes run in a sandbox (implementation in `modal_ray`)."""

from modal_ray.container_process import ContainerProcess

__all__ = ["ContainerProcess"]
