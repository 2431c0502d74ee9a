"""`modal.volume`: Volumes (implementation in `modal_ray.volume`, storage in
`modal_ray.volumes`)."""

from modal_ray.volume import (
    AbstractVolumeUploadContextManager,
    FileEntry,
    FileEntryType,
    Volume,
    VolumeInfo,
    VolumeUploadContextManager,
)

__all__ = [
    "AbstractVolumeUploadContextManager",
    "FileEntry",
    "FileEntryType",
    "Volume",
    "VolumeInfo",
    "VolumeUploadContextManager",
]
