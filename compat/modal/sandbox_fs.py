"""`modal.sandbox_fs`: `Sandbox.filesystem` (implementation in `modal_ray.sandbox_fs`)."""

from modal_ray.sandbox_fs import FileInfo, SandboxFilesystem

__all__ = ["FileInfo", "SandboxFilesystem"]
