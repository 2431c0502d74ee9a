"""The one thing `modal_ray.volumes` needs from a mountable object: its mount spec.

`modal.Volume`, `modal.CloudBucketMount` and `modal.NetworkFileSystem` live in the core; this
package never imports them. Each is structurally a `Mountable`: asked for the spec of a mount at
`path`, it returns one of this package's picklable specs (`VolumeMountSpec`, `BucketMountSpec`,
`NfsMountSpec`), resolved on the caller (names, versions, Secrets), so a worker needs nothing
else. What kind of mount an object is comes from the spec it returns, not from its class.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias, runtime_checkable

from .bucket import BucketMountSpec
from .nfs import NfsMountSpec
from .workcopy import VolumeMountSpec

MountSpec: TypeAlias = VolumeMountSpec | BucketMountSpec | NfsMountSpec


@runtime_checkable
class Mountable(Protocol):
    def _mount_spec(self, path: str, environment: str) -> MountSpec:
        """The spec of this object mounted at `path` (an absolute, validated path)."""
        ...


__all__ = ["MountSpec", "Mountable"]
