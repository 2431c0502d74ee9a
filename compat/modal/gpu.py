"""Deprecated GPU objects (`modal.gpu.H100()`), accepted with a warning and turned into strings."""

from __future__ import annotations

from modal_ray.warn import deprecation


class _GPUConfig:
    _name = "ANY"

    def __init__(self, *, count: int = 1, size: str | None = None) -> None:
        deprecation(
            f"gpu.{type(self).__name__}",
            f"`modal.gpu.{type(self).__name__}()` is deprecated;"
            f' use a string such as gpu="{self._name}".',
        )
        self.count = count
        self.size = size

    def _modal_gpu_string(self) -> str:
        name = self._name
        if self.size:
            name = f"{name}-{self.size.upper()}"
        return f"{name}:{self.count}" if self.count != 1 else name


def _gpu(name: str) -> type[_GPUConfig]:
    return type(
        name,
        (_GPUConfig,),
        {"_name": name.upper() if name != "Any" else "ANY", "__module__": __name__},
    )


T4 = _gpu("T4")
L4 = _gpu("L4")
A10G = _gpu("A10G")
A100 = _gpu("A100")
L40S = _gpu("L40S")
H100 = _gpu("H100")
H200 = _gpu("H200")
B200 = _gpu("B200")
Any = _gpu("Any")

__all__ = ["A10G", "A100", "B200", "H100", "H200", "L4", "L40S", "T4", "Any"]
