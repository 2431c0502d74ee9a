"""`modal.sandbox`: Sandboxes (implementation in `modal_ray.sandbox`)."""

from modal_ray.probe import Probe
from modal_ray.sandbox import Sandbox

__all__ = ["Probe", "Sandbox"]
