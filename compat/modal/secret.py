"""`modal.secret`: named and inline Secrets (implementation in `modal_ray.secret`)."""

from modal_ray.secret import Secret

__all__ = ["Secret"]
