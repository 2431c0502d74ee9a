"""`modal.types`: small records returned by info/stats methods."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class FunctionStats:
    backlog: int = 0
    num_total_runners: int = 0


FunctionCurrentStats = FunctionStats


@dataclass
class SecretInfo:
    name: str | None
    created_at: datetime | None
    created_by: str | None


@dataclass
class AppInfo:
    app_id: str | None
    name: str | None
    state: str


@dataclass
class AppStats:
    num_functions: int
    num_running: int


@dataclass
class FunctionInfo:
    name: str
    extra: dict[str, Any]


from modal_ray.dict import DictInfo  # noqa: E402 - re-exported as `modal.types.DictInfo`
from modal_ray.queue import QueueInfo  # noqa: E402
from modal_ray.volume import FileEntry, FileEntryType, VolumeInfo  # noqa: E402

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
