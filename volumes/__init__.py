"""Volumes, CloudBucketMounts and NetworkFileSystems on fsspec (`modal_ray.volumes`).

| module | role |
|---|---|
| `store.py` | the volume store: names, committed versions (manifests), blobs, on any fsspec URL |
| `manifest.py` | one committed version, and how concurrent commits merge (last write wins) |
| `ops.py` | reads and writes of committed state (`listdir`, `batch_upload`, the CLI) |
| `download.py` | `modal volume get` / `modal nfs get`: safe local writes |
| `paths.py` | path safety: nothing reads or writes outside a volume's root |
| `workcopy.py` | a container's private working copy: commit and reload |
| `mounts.py` | mounting at absolute paths with a per-process view; the worker hooks |
| `bucket.py`, `fuse_daemon.py` | CloudBucketMount: FUSE through s3fs, or a mirror without FUSE |
| `nfs.py` | NetworkFileSystem mounts and file operations |
| `localfs.py` | local copies (reflink where possible) and read-only protection |

| `protocol.py` | `Mountable`: how a core object hands over its mount spec (no core import here) |

`prepare_mounts(volumes, network_file_systems, environment)` is called by the caller when a
function is built: it validates the mount paths, resolves names (creating volumes with
`create_if_missing=True`) and Secrets, and returns the picklable `MountSet` whose
`task_start()` / `task_end()` and `container_start()` / `container_stop()` the worker calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from modal_ray.exception import InvalidError

from . import paths
from .bucket import BucketMountSpec
from .mounts import MountSet
from .nfs import NfsMountSpec
from .protocol import Mountable, MountSpec
from .workcopy import VolumeMountSpec


def _spec_of(obj: object, path: str, environment: str) -> MountSpec | None:
    """The object's mount spec, or None if it is not a `Mountable`."""
    if not isinstance(obj, Mountable):
        return None
    return obj._mount_spec(path, environment)


def prepare_mounts(
    volumes: Mapping[Any, Any], network_file_systems: Mapping[Any, Any], environment: str
) -> MountSet | None:
    if not isinstance(volumes, Mapping):
        raise InvalidError(
            f"`volumes=` takes a dict of mount paths to modal.Volume or modal.CloudBucketMount,"
            f" not {type(volumes).__name__}."
        )
    if not isinstance(network_file_systems, Mapping):
        raise InvalidError(
            "`network_file_systems=` takes a dict of mount paths to modal.NetworkFileSystem, not"
            f" {type(network_file_systems).__name__}."
        )
    specs: list[MountSpec] = []
    volume_paths: dict[str, list[str]] = {}
    for raw_path, obj in volumes.items():
        path = paths.mount_path(raw_path, "Volume")
        spec = _spec_of(obj, path, environment)
        if isinstance(spec, VolumeMountSpec):
            volume_paths.setdefault(spec.volume_id, []).append(path)
        elif not isinstance(spec, BucketMountSpec):
            raise InvalidError(
                f"Object of type {type(obj)} mounted at '{path}' is not usable as a volume."
            )
        specs.append(spec)
    for mounted in volume_paths.values():
        if len(mounted) > 1:
            raise InvalidError(
                "The same Volume cannot be mounted in multiple locations for the same function: "
                + ", ".join(sorted(mounted))
            )
    for raw_path, obj in network_file_systems.items():
        path = paths.mount_path(raw_path, "NetworkFileSystem")
        nfs_spec = _spec_of(obj, path, environment)
        if not isinstance(nfs_spec, NfsMountSpec):
            raise InvalidError(
                f"Object of type {type(obj)} mounted at '{path}' is not useable as a network file"
                " system."
            )
        specs.append(nfs_spec)
    seen: list[str] = []
    for spec in specs:
        for other in seen:
            if spec.path == other:
                raise InvalidError(f"Two mounts share the path {other}.")
            if spec.path.startswith(other + "/") or other.startswith(spec.path + "/"):
                raise InvalidError(
                    f"Mount paths cannot be nested: {min(other, spec.path)} and"
                    f" {max(other, spec.path)}."
                )
        seen.append(spec.path)
    if not specs:
        return None
    return MountSet(uuid.uuid4().hex[:12], environment, tuple(specs))


__all__ = ["MountSet", "Mountable", "MountSpec", "prepare_mounts"]
