"""Small records returned by info/stats methods (`App.info()`, `Secret.info()`, ...).

Defined in the core so the core needs nothing from the public package; each claims
`modal.types` as its home, which re-exports it (reprs and pickles name the Modal module).
The records of store objects and volumes (`DictInfo`, `QueueInfo`, `VolumeInfo`, ...) live
with their objects and are re-exported by `modal.types` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class FunctionStats:
    """Live counts of a function (`Function.get_current_stats()`)."""

    backlog: int = 0
    num_total_runners: int = 0


FunctionCurrentStats = FunctionStats


@dataclass
class SecretInfo:
    """Information about a Secret (`Secret.info()`)."""

    name: str | None
    created_at: datetime | None
    created_by: str | None


@dataclass
class AppInfo:
    """Information about an App (`App.info()`)."""

    app_id: str | None
    name: str | None
    state: str


@dataclass
class AppStats:
    """Counts of an App's functions (`App.stats()`)."""

    num_functions: int
    num_running: int


@dataclass
class FunctionInfo:
    """Name and extra fields of a function."""

    name: str
    extra: dict[str, Any]


# Set after @dataclass, which looks the module up while it runs.
for _record in (FunctionStats, SecretInfo, AppInfo, AppStats, FunctionInfo):
    _record.__module__ = "modal.types"
del _record

__all__ = [
    "AppInfo",
    "AppStats",
    "FunctionCurrentStats",
    "FunctionInfo",
    "FunctionStats",
    "SecretInfo",
]
