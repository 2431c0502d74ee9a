"""Volumes and bucket mounts (placeholder until the Volume issue lands).

`prepare_mounts(volumes, network_file_systems, environment)` returns the picklable object a
worker uses around inputs: `.task_start()` / `.task_end()` around each task-backed input and
`.container_start()` / `.container_stop()` for container pools.
"""

from __future__ import annotations

from typing import Any

from modal_ray.exception import UnimplementedError


def prepare_mounts(
    volumes: dict[Any, Any], network_file_systems: dict[Any, Any], environment: str
) -> Any:
    raise UnimplementedError(
        "`volumes=` / `network_file_systems=`: modal.Volume is not supported by this version of"
        " modal-ray yet. Remove the mounts or wait for Volume support."
    )
