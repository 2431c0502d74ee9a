"""`modal.NetworkFileSystem` (legacy): a shared, writable file tree, no commit or reload.

Stored as plain files in the volume store (`modal_ray.volumes.nfs`); mounted with
`network_file_systems={path: nfs}`. File paths are relative to the root and checked like Volume
paths: nothing can be read or written outside it.
"""

from __future__ import annotations

import asyncio
import builtins
import fnmatch
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from modal_ray import config, state, warn
from modal_ray.exception import InvalidError, NotFoundError

from .synchronizer import DualContext, dual, dual_class_context, dual_static
from .volume import FileEntry, FileEntryType, _store

_KINDS = {"f": FileEntryType.FILE, "d": FileEntryType.DIRECTORY, "l": FileEntryType.SYMLINK}


def _entry(e: Any) -> FileEntry:
    return FileEntry(e.path, _KINDS[e.kind], int(e.mtime), e.size)


def _nfs_ephemeral(
    cls: type[NetworkFileSystem],
    client: Any = None,
    environment_name: str | None = None,
    _heartbeat_sleep: float = 300,
) -> DualContext[NetworkFileSystem]:
    """Create an anonymous NetworkFileSystem for the duration of the context manager."""
    from modal_ray.volumes.store import NFS

    env = config.environment_name(environment_name)
    holder: dict[str, Any] = {}

    async def enter() -> NetworkFileSystem:
        store = _store()
        meta, _ = await asyncio.to_thread(store.create, env, NFS, None)
        holder["meta"], holder["store"] = meta, store
        return NetworkFileSystem._hydrated(meta, store)

    async def exit_(ok: bool) -> None:
        if "meta" in holder:
            await asyncio.to_thread(holder["store"].delete, holder["meta"])

    return DualContext("NetworkFileSystem.ephemeral", enter, exit_)


def _restore_nfs(state_: dict[str, Any]) -> NetworkFileSystem:
    return NetworkFileSystem._make(**state_)


class NetworkFileSystem:
    """A shared, writable file system accessible by one or more Modal functions."""

    __module__ = "modal.network_file_system"

    _name: str | None
    _environment_name: str | None
    _create_if_missing: bool
    _nfs_id: str | None
    _store_cfg: Any
    _meta: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidError(
            "`modal.NetworkFileSystem(...)` cannot be constructed directly; use"
            " `modal.NetworkFileSystem.from_name(name, create_if_missing=True)`."
        )

    @classmethod
    def _make(
        cls,
        *,
        name: str | None = None,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        nfs_id: str | None = None,
        store_cfg: Any = None,
    ) -> NetworkFileSystem:
        self = object.__new__(cls)
        self._name = name
        self._environment_name = environment_name
        self._create_if_missing = create_if_missing
        self._nfs_id = nfs_id
        self._store_cfg = store_cfg
        self._meta = None
        return self

    @classmethod
    def _hydrated(cls, meta: Any, store: Any) -> NetworkFileSystem:
        nfs = cls._make(
            name=meta.name, environment_name=meta.environment, nfs_id=meta.id, store_cfg=store.cfg
        )
        nfs._meta = meta
        return nfs

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _restore_nfs,
            (
                {
                    "name": self._name,
                    "environment_name": self._environment_name,
                    "create_if_missing": self._create_if_missing,
                    "nfs_id": self._nfs_id,
                    "store_cfg": self._store_cfg,
                },
            ),
        )

    def __repr__(self) -> str:
        return (
            f"NetworkFileSystem.from_name({self._name!r})" if self._name else "NetworkFileSystem()"
        )

    @staticmethod
    def from_name(
        name: str,
        *,
        environment_name: str | None = None,
        create_if_missing: bool = False,
        client: Any = None,
    ) -> NetworkFileSystem:
        """Reference a NetworkFileSystem by name (lazy), optionally creating it on first use."""
        state.check_object_name(name, "NetworkFileSystem")
        return NetworkFileSystem._make(
            name=name, environment_name=environment_name, create_if_missing=create_if_missing
        )

    ephemeral = dual_class_context(_nfs_ephemeral)

    @dual_static
    async def lookup(
        name: str,
        namespace: Any = None,
        client: Any = None,
        environment_name: str | None = None,
        create_if_missing: bool = False,
    ) -> NetworkFileSystem:
        """Deprecated: use `modal.NetworkFileSystem.from_name` (and `.hydrate()`)."""
        warn.deprecation(
            "NetworkFileSystem.lookup",
            "`modal.NetworkFileSystem.lookup` is deprecated; use"
            " `modal.NetworkFileSystem.from_name(...)` instead.",
        )
        nfs = NetworkFileSystem.from_name(
            name, environment_name=environment_name, create_if_missing=create_if_missing
        )
        return await nfs.hydrate.aio()  # type: ignore[no-any-return]

    @dual_static
    async def delete(name: str, client: Any = None, environment_name: str | None = None) -> None:
        """Delete a named NetworkFileSystem and its files."""
        from modal_ray.volumes.store import NFS

        state.check_object_name(name, "NetworkFileSystem")
        env = config.environment_name(environment_name)
        store = _store()
        meta = await asyncio.to_thread(store.lookup, env, NFS, name)
        if meta is None:
            raise NotFoundError(f"NetworkFileSystem '{name}' not found in environment '{env}'.")
        await asyncio.to_thread(store.delete, meta)

    @dual
    async def create_deployed(
        self,
        deployment_name: str,
        client: Any = None,
        environment_name: str | None = None,
    ) -> str:
        """Deprecated: create a NetworkFileSystem under `deployment_name`; returns its id."""
        from modal_ray.volumes.store import NFS

        state.check_object_name(deployment_name, "NetworkFileSystem")
        env = config.environment_name(environment_name)
        meta, _ = await asyncio.to_thread(
            lambda: _store().create(env, NFS, deployment_name, allow_existing=True)
        )
        return str(meta.id)

    # -- resolution --------------------------------------------------------------------------

    def _resolve(self) -> Any:
        from modal_ray.volumes.store import NFS

        if self._meta is not None:
            return self._meta
        store = _store(self._store_cfg)
        if self._name is None:
            assert self._nfs_id is not None
            meta = store.meta(self._nfs_id)
            if meta is None:
                raise NotFoundError(f"NetworkFileSystem {self._nfs_id} not found.")
        else:
            env = config.environment_name(self._environment_name)
            meta = store.lookup(env, NFS, self._name)
            if meta is None:
                if not self._create_if_missing:
                    raise NotFoundError(
                        f"NetworkFileSystem '{self._name}' not found in environment '{env}'."
                    )
                meta, _ = store.create(env, NFS, self._name, allow_existing=True)
        self._meta = meta
        self._store_cfg = store.cfg
        return meta

    def _files(self) -> Any:
        from modal_ray.volumes.nfs import NfsFiles

        meta = self._resolve()
        return NfsFiles(_store(self._store_cfg), meta.id)

    def _mount_spec(self, path: str, environment: str) -> Any:
        from modal_ray.volumes.nfs import NfsMountSpec

        nfs = self
        if self._environment_name is None and self._meta is None and self._name is not None:
            nfs = NetworkFileSystem._make(
                name=self._name,
                environment_name=environment,
                create_if_missing=self._create_if_missing,
            )
        meta = nfs._resolve()
        store = _store(nfs._store_cfg)
        return NfsMountSpec(path, store.cfg, store.store_id(), meta.id, meta.name, meta.environment)

    # -- properties --------------------------------------------------------------------------

    @property
    def object_id(self) -> str:
        return str(self._resolve().id)

    @property
    def client(self) -> None:
        return None

    # -- live methods ------------------------------------------------------------------------

    @dual
    async def hydrate(self, client: Any = None) -> NetworkFileSystem:
        await asyncio.to_thread(self._resolve)
        return self

    @dual
    async def get_dashboard_url(self) -> str:
        return ""

    @dual
    async def write_file(
        self,
        remote_path: str,
        fp: BinaryIO,
        progress_cb: Callable[..., Any] | None = None,
    ) -> int:
        """Write a file object to a path, atomically (a trailing `/` means a directory: the
        file keeps its own name)."""
        from modal_ray.volumes.paths import volume_path

        target = remote_path
        if remote_path.endswith("/"):
            name = os.path.basename(getattr(fp, "name", "") or "")
            if not name:
                raise InvalidError("remote_path ends with '/', but the file object has no name.")
            target = remote_path + name
        rel = volume_path(target, what="remote path")
        files = await asyncio.to_thread(self._files)
        size: int = await asyncio.to_thread(files.write, rel, fp)
        if progress_cb is not None:
            progress_cb(advance=size)
        return size

    @dual
    async def read_file(self, path: str) -> AsyncIterator[bytes]:
        """Read a file, in chunks."""
        from modal_ray.volumes.paths import volume_path

        rel = volume_path(path)
        files = await asyncio.to_thread(self._files)
        chunks = await asyncio.to_thread(files.read, rel)
        while True:
            chunk = await asyncio.to_thread(next, chunks, b"")
            if not chunk:
                return
            yield chunk

    @dual
    async def iterdir(self, path: str) -> AsyncIterator[FileEntry]:
        """Iterate over a directory (or one file, or a glob with `*` / `**`)."""
        for entry in await self.listdir.aio(path):
            yield entry

    @dual
    async def listdir(self, path: str) -> builtins.list[FileEntry]:
        """List a directory (or one file, or all files matching a glob with `*` / `**`)."""
        from modal_ray.volumes.paths import volume_path

        files = await asyncio.to_thread(self._files)
        if "*" in path:
            head = path.split("*", 1)[0]
            base = volume_path(head.rsplit("/", 1)[0] if "/" in head else "")
            pattern = volume_path(path.replace("*", "\x01")).replace("\x01", "*")
            found = await asyncio.to_thread(files.list, base, recursive=True)
            return [_entry(e) for e in found if fnmatch.fnmatchcase(e.path, pattern)]
        rel = volume_path(path)
        found = await asyncio.to_thread(files.list, rel, recursive=False)
        return [_entry(e) for e in found]

    def _put_local(self, local: Path, remote: str) -> int:
        from modal_ray.volumes.paths import volume_path

        rel = volume_path(remote, what="remote path")
        with open(local, "rb") as f:
            return int(self._files().write(rel, f))

    @dual
    async def add_local_file(
        self,
        local_path: Path | str,
        remote_path: str | PurePosixPath | None = None,
        progress_cb: Callable[..., Any] | None = None,
    ) -> int:
        """Upload a local file (to `remote_path`, default: its own name at the root)."""
        local = Path(local_path)
        remote = PurePosixPath(remote_path).as_posix() if remote_path is not None else local.name
        size = await asyncio.to_thread(self._put_local, local, remote)
        if progress_cb is not None:
            progress_cb(advance=size)
        return size

    @dual
    async def add_local_dir(
        self,
        local_path: Path | str,
        remote_path: str | PurePosixPath | None = None,
        progress_cb: Callable[..., Any] | None = None,
    ) -> None:
        """Upload a local directory's files (to `remote_path`, default: its own name)."""
        local = Path(local_path)
        base = PurePosixPath(remote_path) if remote_path is not None else PurePosixPath(local.name)

        def upload_all() -> None:
            if not local.is_dir():
                raise InvalidError(f"{str(local)!r} is not a directory.")
            for sub in sorted(local.rglob("*")):
                if sub.is_file():
                    rel = sub.relative_to(local).as_posix()
                    size = self._put_local(sub, (base / rel).as_posix())
                    if progress_cb is not None:
                        progress_cb(advance=size)

        await asyncio.to_thread(upload_all)

    @dual
    async def remove_file(self, path: str, recursive: bool = False) -> None:
        """Remove a file (or, with `recursive=True`, a directory)."""
        from modal_ray.volumes.paths import volume_path

        rel = volume_path(path)
        files = await asyncio.to_thread(self._files)
        await asyncio.to_thread(files.remove, rel, recursive=recursive)
