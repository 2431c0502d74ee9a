"""`modal.network_file_system`: the legacy NetworkFileSystem (implementation in
`modal_ray.network_file_system` and `modal_ray.volumes.nfs`)."""

from modal_ray.network_file_system import NetworkFileSystem

__all__ = ["NetworkFileSystem"]
