"""The client's handle on one sandbox: its environment and id, and one call into its node.

Every sandbox operation of the client (`Sandbox`, `ContainerProcess`, the stream readers and
writers, `FileIO`) goes through `SandboxRef.call`, which forwards to the backend's supervisor of
the sandbox's node. Connecting to the cluster happens on first use in this process, so a handle
made by `Sandbox.from_id` in another process works as well as the creator's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

_connected: set[str] = set()


async def connect(environment: str) -> Any:
    """The backend, connected to the cluster of `environment` (once per process)."""
    from modal_ray.backends import get_backend

    backend = get_backend()
    if environment not in _connected:
        await asyncio.get_running_loop().run_in_executor(None, backend.connect, environment)
        _connected.add(environment)
    return backend


@dataclass(frozen=True)
class SandboxRef:
    environment: str
    sandbox_id: str

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        backend = await connect(self.environment)
        return await backend.sandbox_call(self.environment, self.sandbox_id, method, args, kwargs)
