"""`modal.file_io`: files inside a sandbox (implementation in `modal_ray.file_io`)."""

from modal_ray.file_io import (
    FileIO,
    FileWatchEvent,
    FileWatchEventType,
    delete_bytes,
    replace_bytes,
)

__all__ = ["FileIO", "FileWatchEvent", "FileWatchEventType", "delete_bytes", "replace_bytes"]
