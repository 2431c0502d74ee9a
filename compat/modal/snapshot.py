"""`modal.snapshot`: `SandboxSnapshot` (implementation in `modal_ray.snapshot`)."""

from modal_ray.snapshot import SandboxSnapshot

__all__ = ["SandboxSnapshot"]
