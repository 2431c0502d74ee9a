"""`modal.dict`: distributed dictionaries (implementation in `modal_ray.dict`)."""

from modal_ray.dict import Dict, DictInfo

__all__ = ["Dict", "DictInfo"]
