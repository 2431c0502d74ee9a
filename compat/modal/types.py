"""`modal.types`: small records returned by info/stats methods (defined in the core:
`modal_ray.types` and the modules of the objects they describe)."""

from modal_ray.dict import DictInfo
from modal_ray.queue import QueueInfo
from modal_ray.types import (
    AppInfo,
    AppStats,
    FunctionCurrentStats,
    FunctionInfo,
    FunctionStats,
    SecretInfo,
)
from modal_ray.volume import FileEntry, FileEntryType, VolumeInfo

__all__ = [
    "AppInfo",
    "AppStats",
    "DictInfo",
    "FileEntry",
    "FileEntryType",
    "FunctionCurrentStats",
    "FunctionInfo",
    "FunctionStats",
    "QueueInfo",
    "SecretInfo",
    "VolumeInfo",
]
