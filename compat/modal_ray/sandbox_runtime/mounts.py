"""Volumes of a sandbox: a private working copy per volume, bound at its mount path.

A sandbox is a container: it gets the latest committed version of each volume when it starts
(a working copy kept in the sandbox's own directory on the node, bound read-write, or read-only
for a read-only mount, at the mount path inside) and its changes are committed when it ends, as
a function container's are at stop. Nothing is linked into the node's own filesystem.

CloudBucketMounts and NetworkFileSystems are node-wide, as for functions: the sandbox binds the
node's mount (a FUSE mount of the bucket, or its mirror; the file system's folder) and holds it
while it lives, like an input does; a mirror's changes are uploaded when the sandbox ends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modal_ray.exception import UnimplementedError

log = logging.getLogger(__name__)


def volume_copies(mounts: Sequence[Any], base: Path) -> list[Any]:
    """Populated working copies of `mounts` (volume mount specs) under `base`."""
    if not mounts:
        return []
    from modal_ray.volumes import bucket, nfs
    from modal_ray.volumes.workcopy import VolumeMountSpec, WorkingCopy

    staging = base / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    copies: list[Any] = []
    try:
        for spec in mounts:
            if isinstance(spec, VolumeMountSpec):
                wc = WorkingCopy(spec, str(base / spec.volume_id), str(staging))
                wc.populate()
                copies.append(wc)
            elif isinstance(spec, bucket.BucketMountSpec | nfs.NfsMountSpec):
                copies.append(_NodeMount.start(spec))
            else:
                raise UnimplementedError(f"{spec!r} cannot be mounted in a sandbox.")
    except BaseException:
        for wc in copies:
            with contextlib.suppress(Exception):
                wc.discard()
        raise
    return copies


@dataclass(frozen=True, slots=True)
class _Bind:
    path: str
    read_only: bool
    label: str


class _NodeMount:
    """A node-wide mount (bucket or network file system) held by one sandbox."""

    def __init__(self, spec: _Bind, node: Any, directory: str) -> None:
        self.spec = spec
        self._node = node
        self.dir = directory
        self._held = True

    @staticmethod
    def start(spec: Any) -> _NodeMount:
        from modal_ray.volumes import bucket, nfs

        node: Any
        if isinstance(spec, bucket.BucketMountSpec):
            node = bucket.node_mount(spec)
        else:
            node = nfs.node_mount(spec)
        bind = _Bind(spec.path, bool(getattr(spec, "read_only", False)), spec.label)
        return _NodeMount(bind, node, node.start_input())

    def commit(self) -> None:
        if self._held:
            self._held = False
            self._node.end_input()

    def discard(self) -> None:
        self.commit()

    def reload(self) -> None:
        return None  # always the bucket's / file system's current files


def commit_volumes(copies: Sequence[Any]) -> None:
    for wc in copies:
        try:
            wc.commit()
        except Exception:  # one volume failing must not keep the others' changes back
            log.exception("committing %s of a sandbox failed", wc.spec.label)
