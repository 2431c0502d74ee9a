"""`modal.Volume`: a named or ephemeral file tree with Modal's commit/reload semantics.

A Volume object is a reference (environment and name, or an id) plus, once resolved, the store
that holds it; it pickles to that reference, so it can be passed to functions. The data lives in
the volume store (`modal_ray.volumes.store`, an fsspec URL); mounts are in
`modal_ray.volumes.mounts`.

Semantics kept from Modal:
- `from_name` is lazy; the first use creates a missing volume with `create_if_missing=True`, or
  raises `NotFoundError`;
- `commit()` / `reload()` act on the copy mounted in this container; elsewhere (a local script,
  a function without the mount) they do nothing;
- methods that read or write files (`listdir`, `read_file`, `batch_upload`, ...) work on the
  committed state, from anywhere;
- `batch_upload()` refuses to overwrite files unless `force=True`, and never replaces
  directories; `read_only()` handles refuse writes with `InvalidError`.
"""

from __future__ import annotations

import asyncio
import builtins
import enum
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from modal_ray import config, state, warn
from modal_ray.exception import InvalidError, NotFoundError

from .synchronizer import DualContext, dual, dual_class_context, dual_context, dual_static


class FileEntryType(enum.IntEnum):
    """Type of a file entry listed from a Modal volume."""

    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2
    SYMLINK = 3
    FIFO = 4
    SOCKET = 5


FileEntryType.__module__ = "modal.volume"


@dataclass(frozen=True)
class FileEntry:
    """A file or directory entry listed from a Modal volume."""

    path: str
    type: FileEntryType
    mtime: int
    size: int


@dataclass
class VolumeInfo:
    """Information about a Volume object."""

    name: str | None
    created_at: datetime
    created_by: str | None


FileEntry.__module__ = "modal.volume"
VolumeInfo.__module__ = "modal.volume"

_KINDS = {"f": FileEntryType.FILE, "d": FileEntryType.DIRECTORY, "l": FileEntryType.SYMLINK}
_READ_ONLY = "Read-only Volume can not be written to"


def file_entry(path: str, entry: Any) -> FileEntry:
    return FileEntry(
        path, _KINDS.get(entry.kind, FileEntryType.UNSPECIFIED), int(entry.mtime), entry.size
    )


# -- helpers shared with NetworkFileSystem --------------------------------------------------------


def _store(cfg: Any = None) -> Any:
    from modal_ray.volumes.store import get_store

    return get_store(cfg)


def _created(meta: Any) -> datetime:
    return datetime.fromtimestamp(meta.created_at, timezone.utc)


def _check_version(version: Any) -> int | None:
    if version is None:
        return None
    if version not in (1, 2):
        raise InvalidError("VolumeFS version must be either 1 or 2")
    return int(version)


# -- Volume.objects -------------------------------------------------------------------------------


class _VolumeManager:
    """`modal.Volume.objects`: create, list and delete named Volumes."""

    def __get__(self, obj: Any, objtype: Any = None) -> _VolumeManager:
        return self

    @dual_static
    async def create(
        name: str,
        *,
        version: int | None = None,
        allow_existing: bool = False,
        environment_name: str | None = None,
        client: Any = None,
        experimental_options: dict[str, Any] | None = None,
    ) -> None:
        """Create a new named Volume in the environment."""
        from modal_ray.volumes.store import VOLUME

        state.check_object_name(name, "Volume")
        env = config.environment_name(environment_name)
        fs_version = _check_version(version) or 2
        meta, created = await asyncio.to_thread(
            _store().create, env, VOLUME, name, allow_existing=allow_existing, fs_version=fs_version
        )
        if not created and version is not None and meta.fs_version != version:
            raise InvalidError(
                f"Volume '{name}' exists but has version v{meta.fs_version}, not v{version} as"
                " requested. To access this Volume, either omit the version parameter or use the"
                " correct version."
            )

    @dual_static
    async def list(
        *,
        max_objects: int | None = None,
        created_before: datetime | str | None = None,
        environment_name: str = "",
        client: Any = None,
    ) -> builtins.list[Volume]:
        """Named Volumes of the environment, newest first."""
        from modal_ray.volumes.store import VOLUME

        if max_objects is not None and max_objects < 0:
            raise InvalidError("max_objects cannot be negative")
        env = config.environment_name(environment_name or None)
        store = _store()
        metas = await asyncio.to_thread(store.list, env, VOLUME)
        if isinstance(created_before, str):
            created_before = datetime.fromisoformat(created_before)
        if created_before is not None and created_before.tzinfo is None:
            created_before = created_before.replace(tzinfo=timezone.utc)
        out = []
        for meta in metas:
            if created_before is not None and _created(meta) >= created_before:
                continue
            out.append(Volume._hydrated(meta, store))
            if max_objects is not None and len(out) >= max_objects:
                break
        return out

    @dual_static
    async def delete(
        name: str,
        *,
        allow_missing: bool = False,
        environment_name: str | None = None,
        client: Any = None,
    ) -> None:
        """Delete a named Volume and all of its data (irreversible)."""
        from modal_ray.volumes.store import VOLUME

        state.check_object_name(name, "Volume")
        env = config.environment_name(environment_name)
        store = _store()
        meta = await asyncio.to_thread(store.lookup, env, VOLUME, name)
        if meta is None:
            if allow_missing:
                return
            raise NotFoundError(f"Volume '{name}' not found in environment '{env}'.")
        await asyncio.to_thread(store.delete, meta)


# -- Volume ---------------------------------------------------------------------------------------


def _volume_ephemeral(
    cls: type[Volume],
    client: Any = None,
    environment_name: str | None = None,
    version: int | None = None,
    create_options: Any = None,
    _heartbeat_sleep: float = 300,
) -> DualContext[Volume]:
    """Create an anonymous Volume that exists for the duration of the context manager."""
    from modal_ray.volumes.store import VOLUME

    env = config.environment_name(environment_name)
    fs_version = _check_version(version) or 2
    holder: dict[str, Any] = {}

    async def enter() -> Volume:
        store = _store()
        meta, _ = await asyncio.to_thread(store.create, env, VOLUME, None, fs_version=fs_version)
        holder["meta"], holder["store"] = meta, store
        return Volume._hydrated(meta, store)

    async def exit_(ok: bool) -> None:
        if "meta" in holder:
            await asyncio.to_thread(holder["store"].delete, holder["meta"])

    return DualContext("Volume.ephemeral", enter, exit_)


def _restore_volume(state_: dict[str, Any]) -> Volume:
    vol = Volume._make(**state_)
    return vol


class Volume:
    """A writeable volume that can be used to share files between one or more Modal functions.

    Changes made in a container are visible elsewhere after `commit()` (or when the input or
    container ends); a container sees others' commits after `reload()`.
    """

    __module__ = "modal.volume"

    objects = _VolumeManager()

    _name: str | None
    _environment_name: str | None
    _create_if_missing: bool
    _version: int | None
    _volume_id: str | None
    _store_cfg: Any
    _read_only: bool
    _mount_read_only: bool
    _sub_path: str | None
    _meta: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidError(
            "`modal.Volume(...)` cannot be constructed directly; use"
            " `modal.Volume.from_name(name, create_if_missing=True)` or `modal.Volume.ephemeral()`."
        )

    @classmethod
    def _make(
        cls,
        *,
        name: str | None = None,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        version: int | None = None,
        volume_id: str | None = None,
        store_cfg: Any = None,
        read_only: bool = False,
        mount_read_only: bool = False,
        sub_path: str | None = None,
    ) -> Volume:
        self = object.__new__(cls)
        self._name = name
        self._environment_name = environment_name
        self._create_if_missing = create_if_missing
        self._version = version
        self._volume_id = volume_id
        self._store_cfg = store_cfg
        self._read_only = read_only
        self._mount_read_only = mount_read_only or read_only
        self._sub_path = sub_path
        self._meta = None
        return self

    @classmethod
    def _hydrated(cls, meta: Any, store: Any) -> Volume:
        vol = cls._make(
            name=meta.name,
            environment_name=meta.environment,
            volume_id=meta.id,
            store_cfg=store.cfg,
        )
        vol._meta = meta
        return vol

    def _state(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "environment_name": self._environment_name,
            "create_if_missing": self._create_if_missing,
            "version": self._version,
            "volume_id": self._volume_id,
            "store_cfg": self._store_cfg,
            "read_only": self._read_only,
            "mount_read_only": self._mount_read_only,
            "sub_path": self._sub_path,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_volume, (self._state(),))

    def _copy(self, **changes: Any) -> Volume:
        vol = Volume._make(**{**self._state(), **changes})
        vol._meta = self._meta
        return vol

    def __repr__(self) -> str:
        if self._name:
            return f"Volume.from_name({self._name!r})"
        return "modal.Volume.ephemeral()" if self._volume_id else "Volume()"

    # -- constructors ------------------------------------------------------------------------

    @staticmethod
    def from_name(
        name: str,
        *,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        version: int | None = None,
        create_options: Any = None,
        client: Any = None,
    ) -> Volume:
        """Reference a Volume by name (lazy), optionally creating it on first use."""
        state.check_object_name(name, "Volume")
        return Volume._make(
            name=name,
            environment_name=environment_name,
            create_if_missing=create_if_missing,
            version=_check_version(version),
        )

    @staticmethod
    def from_id(volume_id: str, client: Any = None) -> Volume:
        """A Volume from its `object_id` (lazy)."""
        if not isinstance(volume_id, str) or not volume_id.startswith("vo-"):
            raise InvalidError(f"Invalid Volume id {volume_id!r}.")
        return Volume._make(volume_id=volume_id)

    ephemeral = dual_class_context(_volume_ephemeral)

    @dual_static
    async def lookup(
        name: str,
        namespace: Any = None,
        client: Any = None,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        version: int | None = None,
    ) -> Volume:
        """Deprecated: use `modal.Volume.from_name` (and `.hydrate()`)."""
        warn.deprecation(
            "Volume.lookup",
            "`modal.Volume.lookup` is deprecated; use `modal.Volume.from_name(...)` instead (it is"
            " lazy: call `.hydrate()` to check that the Volume exists).",
        )
        vol = Volume.from_name(
            name,
            environment_name=environment_name,
            create_if_missing=create_if_missing,
            version=version,
        )
        return await vol.hydrate.aio()  # type: ignore[no-any-return]

    @dual_static
    async def delete(name: str, client: Any = None, environment_name: str | None = None) -> None:
        """Deprecated: use `modal.Volume.objects.delete`."""
        warn.deprecation(
            "Volume.delete",
            "`modal.Volume.delete` is deprecated; use `modal.Volume.objects.delete` instead.",
        )
        await Volume.objects.delete.aio(name, environment_name=environment_name)

    @dual_static
    async def rename(
        old_name: str,
        new_name: str,
        *,
        client: Any = None,
        environment_name: str | None = None,
    ) -> None:
        """Rename a named Volume (running containers keep their mounts)."""
        from modal_ray.volumes.store import VOLUME

        state.check_object_name(old_name, "Volume")
        state.check_object_name(new_name, "Volume")
        env = config.environment_name(environment_name)
        await asyncio.to_thread(_store().rename, env, VOLUME, old_name, new_name)

    # -- mount options -----------------------------------------------------------------------

    def read_only(self) -> Volume:
        """A handle that mounts read-only and refuses writes through the SDK."""
        if self._sub_path is not None or (self._mount_read_only and not self._read_only):
            raise InvalidError(
                "Cannot call read_only() on a Volume that has with_mount_options() applied. Use"
                " with_mount_options(read_only=True, ...) instead."
            )
        return self._copy(read_only=True, mount_read_only=True)

    def with_mount_options(
        self,
        *,
        read_only: bool | None = None,
        sub_path: str | PurePosixPath | None = None,
    ) -> Volume:
        """Options for mounting this Volume: read-only, and/or only a sub-directory."""
        if self._read_only:
            raise InvalidError(
                "Cannot call with_mount_options() on a Volume that has .read_only() applied. Use"
                " with_mount_options(read_only=True, ...) instead."
            )
        changes: dict[str, Any] = {}
        if read_only is not None:
            changes["mount_read_only"] = bool(read_only)
        if sub_path is not None:
            from modal_ray.volumes.paths import volume_path

            normalized = volume_path(PurePosixPath(sub_path).as_posix(), what="sub_path")
            changes["sub_path"] = normalized or None
        return self._copy(**changes)

    # -- resolution --------------------------------------------------------------------------

    def _env(self) -> str:
        return config.environment_name(self._environment_name)

    def _active(self) -> Any:
        """The copy of this volume mounted for the running input in this process, if any."""
        from modal_ray.volumes import mounts

        vol_id = self._meta.id if self._meta is not None else self._volume_id
        return mounts.active_copy(vol_id, self._env(), self._name)

    def _store_obj(self) -> Any:
        if self._store_cfg is not None:
            return _store(self._store_cfg)
        wc = self._active()
        return wc.store if wc is not None else _store()

    def _resolve(self) -> Any:
        """The volume's metadata (blocking; creates it when `create_if_missing`)."""
        from modal_ray.volumes.store import VOLUME

        if self._meta is not None:
            return self._meta
        store = self._store_obj()
        if self._volume_id is not None and self._name is None:
            meta = store.meta(self._volume_id)
            if meta is None:
                raise NotFoundError(f"Volume {self._volume_id} not found.")
        else:
            assert self._name is not None
            env = self._env()
            meta = store.lookup(env, VOLUME, self._name)
            if meta is None:
                if not self._create_if_missing:
                    raise NotFoundError(
                        f"Volume '{self._name}' not found in environment '{env}'. Create it with"
                        f" `modal volume create {self._name}` or use `create_if_missing=True`."
                    )
                meta, _ = store.create(
                    env, VOLUME, self._name, allow_existing=True, fs_version=self._version or 2
                )
        if self._version is not None and meta.fs_version != self._version:
            raise InvalidError(
                f"Volume '{meta.name}' exists but has version v{meta.fs_version}, not"
                f" v{self._version} as requested. To access this Volume, either omit the version"
                " parameter or use the correct version."
            )
        self._meta = meta
        self._store_cfg = store.cfg
        return meta

    async def _resolved(self) -> tuple[Any, Any]:
        meta = await asyncio.to_thread(self._resolve)
        return _store(self._store_cfg), meta

    def _mount_spec(self, path: str, environment: str) -> Any:
        """What a worker needs to mount this volume at `path` (resolved on the caller)."""
        from modal_ray.volumes.workcopy import VolumeMountSpec

        if self._environment_name is None and self._meta is None and self._name is not None:
            vol = self._copy(environment_name=environment)
        else:
            vol = self
        meta = vol._resolve()
        store = _store(vol._store_cfg)
        return VolumeMountSpec(
            path=path,
            store=store.cfg,
            store_id=store.store_id(),
            volume_id=meta.id,
            name=meta.name,
            environment=meta.environment,
            read_only=self._mount_read_only,
            sub_path=self._sub_path or "",
        )

    def _check_writable(self) -> None:
        if self._read_only:
            raise InvalidError(_READ_ONLY)

    # -- properties --------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        return self._name if self._meta is None else self._meta.name

    @property
    def object_id(self) -> str:
        return str(self._resolve().id)

    @property
    def client(self) -> None:
        return None

    # -- live methods ------------------------------------------------------------------------

    @dual
    async def hydrate(self, client: Any = None) -> Volume:
        """Look the Volume up (creating it with `create_if_missing=True`)."""
        await asyncio.to_thread(self._resolve)
        return self

    @dual
    async def info(self) -> VolumeInfo:
        """Return information about the Volume object."""
        meta = await asyncio.to_thread(self._resolve)
        return VolumeInfo(name=meta.name, created_at=_created(meta), created_by=meta.created_by)

    @dual
    async def get_dashboard_url(self) -> str:
        """There is no dashboard on Ray: an empty string."""
        return ""

    @dual
    async def commit(self) -> None:
        """Commit changes to the mounted volume (nothing to do where it is not mounted)."""
        wc = self._active()
        if wc is not None:
            await asyncio.to_thread(wc.commit)

    @dual
    async def reload(self) -> None:
        """Make the latest committed state available in this container. Fails ("volume busy")
        while files in the volume are open; pending changes are committed first."""
        wc = self._active()
        if wc is not None:
            await asyncio.to_thread(wc.reload)

    @dual
    async def iterdir(self, path: str, *, recursive: bool = True) -> AsyncIterator[FileEntry]:
        """Iterate over the files in a directory (or one file) of the volume."""
        for entry in await self.listdir.aio(path, recursive=recursive):
            yield entry

    @dual
    async def listdir(self, path: str, *, recursive: bool = False) -> builtins.list[FileEntry]:
        """List the files under a path of the volume (a file path lists only that file)."""
        from modal_ray.volumes import ops

        store, meta = await self._resolved()
        found = await asyncio.to_thread(ops.list_entries, store, meta, path, recursive=recursive)
        return [file_entry(p, e) for p, e in found]

    @dual
    async def read_file(self, path: str) -> AsyncIterator[bytes]:
        """Read a file from the volume, in chunks."""
        from modal_ray.volumes import ops

        store, meta = await self._resolved()
        entry = await asyncio.to_thread(ops.open_file_entry, store, meta, path)
        chunks = ops.read_chunks(store, meta, entry)
        sentinel = b""
        while True:
            chunk = await asyncio.to_thread(next, chunks, sentinel)
            if chunk is sentinel:
                return
            yield chunk

    @dual
    async def read_file_into_fileobj(
        self,
        path: str,
        fileobj: IO[bytes],
        progress_cb: Callable[..., Any] | None = None,
    ) -> int:
        """Read a file of the volume into a binary file object; returns the byte count."""
        total = 0
        async for chunk in self.read_file.aio(path):
            fileobj.write(chunk)
            total += len(chunk)
            if progress_cb is not None:
                progress_cb(advance=len(chunk))
        return total

    @dual
    async def remove_file(self, path: str, recursive: bool = False) -> None:
        """Remove a file or directory from the volume."""
        from modal_ray.volumes import ops

        self._check_writable()
        store, meta = await self._resolved()
        await asyncio.to_thread(ops.remove, store, meta, path, recursive=recursive)

    @dual
    async def copy_files(
        self, src_paths: Sequence[str], dst_path: str, recursive: bool = False
    ) -> None:
        """Copy files within the volume (UNIX `cp` semantics; paths relative to its root)."""
        from modal_ray.volumes import ops

        self._check_writable()
        store, meta = await self._resolved()
        await asyncio.to_thread(ops.copy, store, meta, src_paths, dst_path, recursive=recursive)

    @dual_context
    def batch_upload(self, force: bool = False) -> DualContext[VolumeUploadContextManager]:
        """Upload files in one batch, committed together when the block exits. Existing files
        are only overwritten with `force=True`; directories never are."""
        self._check_writable()
        batch = VolumeUploadContextManager(self, force)

        async def enter() -> VolumeUploadContextManager:
            await asyncio.to_thread(self._resolve)
            return batch

        async def exit_(ok: bool) -> None:
            if ok:
                await batch._finish()

        return DualContext("Volume.batch_upload", enter, exit_)


class VolumeUploadContextManager:
    """What `with vol.batch_upload() as batch:` gives: `put_file` and `put_directory`."""

    __module__ = "modal.volume"

    def __init__(self, volume: Volume, force: bool) -> None:
        self._volume = volume
        self._force = force
        self._items: list[Any] = []

    def put_file(
        self,
        local_file: Path | str | BinaryIO | IO[bytes],
        remote_path: PurePosixPath | str,
        mode: int | None = None,
    ) -> None:
        """Upload a local file or binary file object (parent directories are created)."""
        from modal_ray.volumes import ops

        self._items.append(ops.plan_file(local_file, remote_path, mode))

    def put_directory(
        self,
        local_path: Path | str,
        remote_path: PurePosixPath | str,
        recursive: bool = True,
    ) -> None:
        """Upload all files of a local directory."""
        from modal_ray.volumes import ops

        self._items.extend(ops.plan_directory(local_path, remote_path, recursive))

    async def _finish(self) -> None:
        from modal_ray.volumes import ops

        store, meta = await self._volume._resolved()
        await asyncio.to_thread(ops.upload, store, meta, self._items, force=self._force)


AbstractVolumeUploadContextManager = VolumeUploadContextManager
