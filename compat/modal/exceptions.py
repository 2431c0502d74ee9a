"""Legacy home of `UserCodeException`, the wrapper Modal <1.0.5 leaked from
`map(return_exceptions=True)`."""

from modal_ray.errors import UserCodeException

__all__ = ["UserCodeException"]
