"""Volumes of a sandbox: a private working copy per volume, bound at its mount path.

A sandbox is a container: it gets the latest committed version of each volume when it starts
(a working copy kept in the sandbox's own directory on the node, bound read-write, or read-only
for a read-only mount, at the mount path inside) and its changes are committed when it ends, as
a function container's are at stop. Nothing is linked into the node's own filesystem.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modal_ray.exception import UnimplementedError

log = logging.getLogger(__name__)


def volume_copies(mounts: Sequence[Any], base: Path) -> list[Any]:
    """Populated working copies of `mounts` (volume mount specs) under `base`."""
    if not mounts:
        return []
    from modal_ray.volumes.workcopy import VolumeMountSpec, WorkingCopy

    staging = base / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    copies: list[Any] = []
    try:
        for spec in mounts:
            if not isinstance(spec, VolumeMountSpec):
                raise UnimplementedError(
                    f"Only modal.Volume mounts are supported in sandboxes yet, not {spec!r}."
                )
            wc = WorkingCopy(spec, str(base / spec.volume_id), str(staging))
            wc.populate()
            copies.append(wc)
    except BaseException:
        for wc in copies:
            with contextlib.suppress(Exception):
                wc.discard()
        raise
    return copies


def commit_volumes(copies: Sequence[Any]) -> None:
    for wc in copies:
        try:
            wc.commit()
        except Exception:  # one volume failing must not keep the others' changes back
            log.exception("committing %s of a sandbox failed", wc.spec.label)
