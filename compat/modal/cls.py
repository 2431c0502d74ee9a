"""`modal.cls`: Modal classes (implementation in `modal_ray.cls`)."""

from modal_ray.cls import Cls, Obj
from modal_ray.partial_function import _NO_DEFAULT, parameter

__all__ = ["_NO_DEFAULT", "Cls", "Obj", "parameter"]
