"""`modal.SandboxSnapshot`: memory snapshots of sandboxes, a Modal platform feature.

Modal takes them with `Sandbox._experimental_snapshot()` (gVisor checkpoints); a process tree
under bubblewrap has no equivalent, so every way to obtain one raises `UnimplementedError`.
The class exists so that programs that name it import and fail with a clear message.
"""

from __future__ import annotations

from typing import Any

from .exception import InvalidError, UnimplementedError
from .synchronizer import dual, dual_static

_WHY = (
    "Sandbox memory snapshots are a Modal platform feature (gVisor checkpoints) with no"
    " equivalent on Ray; create a new sandbox instead."
)


class SandboxSnapshot:
    """A memory snapshot of a sandbox (not available on Ray)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidError("`modal.SandboxSnapshot` has no constructor; see `from_id`.")

    @dual_static
    async def from_id(sandbox_snapshot_id: str, client: Any = None) -> SandboxSnapshot:
        raise UnimplementedError(_WHY)

    @dual
    async def hydrate(self, client: Any = None) -> SandboxSnapshot:
        raise UnimplementedError(_WHY)

    @dual
    async def get_dashboard_url(self) -> str:
        raise UnimplementedError(_WHY)

    @property
    def object_id(self) -> str:
        raise UnimplementedError(_WHY)

    @property
    def client(self) -> None:
        return None


SandboxSnapshot.__module__ = "modal.snapshot"

__all__ = ["SandboxSnapshot"]
