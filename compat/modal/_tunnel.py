"""`modal._tunnel`: where `modal.Tunnel` and `modal.forward` live (implementation in
`modal_ray.tunnel`)."""

from modal_ray.tunnel import Tunnel, forward

__all__ = ["Tunnel", "forward"]
