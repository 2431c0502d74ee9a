"""The volume store: named Volumes (and legacy NetworkFileSystems) on any fsspec filesystem.

Where: `MODAL_RAY_VOLUMES` (an fsspec URL: a local directory, `s3://bucket/prefix`, a shared
filesystem path; options for the filesystem as JSON in `MODAL_RAY_VOLUMES_OPTIONS`), else
`<state root>/volumes`. Layout under that root (documented in docs/operations.md):

    store.json                               {"id": ...}: tells workers they see the same store
    names/<environment>/<kind>/<name>.json   {"id": "vo-..."}; kind is "volume" or "nfs"
    data/<id>/volume.json                    id, name, environment, created_at, created_by, ...
    data/<id>/manifests/<000000000042>.json  committed versions (volumes)
    data/<id>/blobs/<ab>/<blob id>           immutable file contents (volumes)
    data/<id>/files/...                      plain files (network file systems)

Invariants:
- a version is published by creating its manifest *exclusively* (`O_EXCL`/link locally, S3's
  `If-None-Match: *` remotely) after its blobs are written, so readers never see half a commit
  and two committers never both publish version N: the loser re-reads and re-applies its
  changes (last write wins per file, see manifest.py);
- blobs are never modified; old manifests and unreferenced blobs are collected later (`gc`),
  never the ones a commit in flight may still publish;
- names are an indirection to ids, so `rename` is cheap on object stores too.
"""

from __future__ import annotations

import builtins
import contextlib
import getpass
import json
import os
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from modal_ray import config
from modal_ray.exception import AlreadyExistsError, InvalidError, NotFoundError

from . import localfs
from .manifest import Changes, Manifest

VOLUME, NFS = "volume", "nfs"
_KEEP_MANIFESTS = 8
_GC_EVERY = 16
_GC_GRACE_S = 15 * 60  # blobs younger than this may belong to a commit in flight
_READ_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the volume store is; travels with mounts so workers use the caller's store."""

    url: str
    options_json: str = "{}"

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.options_json)  # type: ignore[no-any-return]

    def describe(self) -> str:
        return self.url


def store_config() -> StoreConfig:
    """The store of this process's configuration (`MODAL_RAY_VOLUMES`...)."""
    settings = config.settings()
    url = settings.volumes or str(config.state_root() / "volumes")
    options = settings.volumes_options
    return StoreConfig(url.rstrip("/") or "/", json.dumps(options, sort_keys=True))


@dataclass(frozen=True, slots=True)
class VolumeMeta:
    id: str
    name: str | None
    environment: str
    kind: str
    created_at: float
    created_by: str | None
    fs_version: int = 2
    ephemeral: bool = False

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "name": self.name,
                "environment": self.environment,
                "kind": self.kind,
                "created_at": self.created_at,
                "created_by": self.created_by,
                "fs_version": self.fs_version,
                "ephemeral": self.ephemeral,
            }
        ).encode()

    @staticmethod
    def from_json(data: bytes) -> VolumeMeta:
        d = json.loads(data)
        return VolumeMeta(
            d["id"],
            d.get("name"),
            d["environment"],
            d.get("kind", VOLUME),
            float(d.get("created_at", 0.0)),
            d.get("created_by"),
            int(d.get("fs_version", 2)),
            bool(d.get("ephemeral", False)),
        )


# -- backends: the few primitive operations, on the local disk or through fsspec -------------


class _Backend:
    """The primitive operations the store needs from a filesystem."""

    local = False

    def read(self, path: str) -> bytes | None:
        raise NotImplementedError

    def write(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    def create(self, path: str, data: bytes) -> bool:
        raise NotImplementedError

    def names(self, path: str) -> list[str]:
        raise NotImplementedError

    def names_with_mtime(self, path: str) -> list[tuple[str, float]]:
        raise NotImplementedError

    def delete(self, path: str) -> None:
        raise NotImplementedError

    def delete_tree(self, path: str) -> None:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def put_file(self, local: str, path: str) -> None:
        raise NotImplementedError

    def get_file(self, path: str, local: str) -> None:
        raise NotImplementedError

    def open(self, path: str) -> IO[bytes]:
        raise NotImplementedError

    def size(self, path: str) -> int:
        raise NotImplementedError

    def join(self, *parts: str) -> str:
        return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))


class _Local(_Backend):
    local = True

    def read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _tmp(self, path: str) -> str:
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        return os.path.join(parent, f".tmp-{uuid.uuid4().hex}")

    def write(self, path: str, data: bytes) -> None:
        tmp = self._tmp(path)
        try:
            with open(tmp, "xb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def create(self, path: str, data: bytes) -> bool:
        tmp = self._tmp(path)
        try:
            with open(tmp, "xb") as f:
                f.write(data)
            try:
                os.link(tmp, path)  # atomic and exclusive: fails if `path` exists
            except FileExistsError:
                return False
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def names(self, path: str) -> list[str]:
        try:
            return [n for n in os.listdir(path) if not n.startswith(".tmp-")]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def names_with_mtime(self, path: str) -> list[tuple[str, float]]:
        out = []
        for name in self.names(path):
            with contextlib.suppress(FileNotFoundError):
                out.append((name, os.lstat(os.path.join(path, name)).st_mtime))
        return out

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def delete_tree(self, path: str) -> None:
        localfs.remove_tree(path)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def put_file(self, local: str, path: str) -> None:
        tmp = self._tmp(path)
        try:
            localfs.copy_file(local, tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def get_file(self, path: str, local: str) -> None:
        localfs.copy_file(path, local)

    def open(self, path: str) -> IO[bytes]:
        return open(path, "rb")

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def join(self, *parts: str) -> str:
        return os.path.join(parts[0], *(p.strip("/") for p in parts[1:]))


class _Remote(_Backend):
    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def read(self, path: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)

    def create(self, path: str, data: bytes) -> bool:
        try:
            self.fs.pipe_file(path, data, mode="create")
            return True
        except FileExistsError:
            return False
        except (TypeError, NotImplementedError, ValueError):
            # A filesystem without exclusive writes: check then write (a small race window,
            # see docs/operations.md).
            if self.exists(path):
                return False
            self.fs.pipe_file(path, data)
            return True

    def _ls(self, path: str) -> list[dict[str, Any]]:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path)
        try:
            return list(self.fs.ls(path, detail=True))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def names(self, path: str) -> list[str]:
        return [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in self._ls(path)]

    def names_with_mtime(self, path: str) -> list[tuple[str, float]]:
        out = []
        for e in self._ls(path):
            modified = e.get("LastModified") or e.get("mtime") or e.get("updated") or 0
            ts = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
            out.append((e["name"].rstrip("/").rsplit("/", 1)[-1], ts))
        return out

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def delete_tree(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path, recursive=True)

    def exists(self, path: str) -> bool:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path)
        return bool(self.fs.exists(path))

    def put_file(self, local: str, path: str) -> None:
        self.fs.put_file(local, path)

    def get_file(self, path: str, local: str) -> None:
        self.fs.get_file(path, local)

    def open(self, path: str) -> IO[bytes]:
        return self.fs.open(path, "rb", block_size=_READ_CHUNK)  # type: ignore[no-any-return]

    def size(self, path: str) -> int:
        return int(self.fs.size(path))


def _backend_for(cfg: StoreConfig) -> tuple[_Backend, str]:
    url = cfg.url
    if "://" not in url or url.startswith(("file://", "local://")):
        root = url.split("://", 1)[1] if "://" in url else url
        root = os.path.abspath(os.path.expanduser(root))
        return _Local(), root
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url, **cfg.options)
    except ImportError as exc:
        raise InvalidError(
            f"The volume store {url!r} needs a filesystem package that is not installed: {exc}."
        ) from None
    return _Remote(fs), root.rstrip("/")


# -- the store ---------------------------------------------------------------------------------


class Store:
    """Named volumes and their versions in one store root. Blocking; thread-safe."""

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.b, self.root = _backend_for(cfg)
        self._id: str | None = None
        self._lock = threading.Lock()
        self._manifests: dict[tuple[str, int], Manifest] = {}

    @property
    def local(self) -> bool:
        return self.b.local

    def _p(self, *parts: str) -> str:
        return self.b.join(self.root, *parts)

    # -- identity ------------------------------------------------------------------------------

    def store_id(self, *, create: bool = True) -> str | None:
        """The store's id, created on first use; workers compare it with the caller's."""
        if self._id is not None:
            return self._id
        path = self._p("store.json")
        data = self.b.read(path)
        if data is None:
            if not create:
                return None
            self.b.create(path, json.dumps({"id": f"vs-{secrets.token_hex(8)}"}).encode())
            data = self.b.read(path)
            assert data is not None
        self._id = str(json.loads(data)["id"])
        return self._id

    # -- names ---------------------------------------------------------------------------------

    def _name_path(self, env: str, kind: str, name: str) -> str:
        return self._p("names", env, kind, f"{name}.json")

    def _meta_path(self, vol_id: str) -> str:
        return self._p("data", vol_id, "volume.json")

    def meta(self, vol_id: str) -> VolumeMeta | None:
        data = self.b.read(self._meta_path(vol_id))
        return None if data is None else VolumeMeta.from_json(data)

    def lookup(self, env: str, kind: str, name: str) -> VolumeMeta | None:
        data = self.b.read(self._name_path(env, kind, name))
        if data is None:
            return None
        meta = self.meta(json.loads(data)["id"])
        if meta is None:  # a name whose data was deleted (crash during delete)
            return None
        return meta

    def create(
        self,
        env: str,
        kind: str,
        name: str | None,
        *,
        allow_existing: bool = False,
        fs_version: int = 2,
    ) -> tuple[VolumeMeta, bool]:
        """Create a volume (an ephemeral one when `name` is None); (meta, created)."""
        self.store_id()
        prefix = "vo" if kind == VOLUME else "sv"
        try:
            user: str | None = getpass.getuser()
        except Exception:
            user = None
        meta = VolumeMeta(
            f"{prefix}-{secrets.token_hex(11)}",
            name,
            env,
            kind,
            time.time(),
            user,
            fs_version,
            ephemeral=name is None,
        )
        self.b.write(self._meta_path(meta.id), meta.to_json())
        if name is None:
            return meta, True
        if self.b.create(self._name_path(env, kind, name), json.dumps({"id": meta.id}).encode()):
            return meta, True
        self.b.delete_tree(self._p("data", meta.id))
        existing = self.lookup(env, kind, name)
        if existing is None:
            raise InvalidError(f"{name!r} is being created or deleted concurrently; try again.")
        if not allow_existing:
            label = "Volume" if kind == VOLUME else "NetworkFileSystem"
            raise AlreadyExistsError(f"{label} {name!r} already exists in environment {env!r}.")
        return existing, False

    def delete(self, meta: VolumeMeta) -> None:
        if meta.name is not None:
            self.b.delete(self._name_path(meta.environment, meta.kind, meta.name))
        self.b.delete_tree(self._p("data", meta.id))

    def rename(self, env: str, kind: str, old: str, new: str) -> None:
        label = "Volume" if kind == VOLUME else "NetworkFileSystem"
        meta = self.lookup(env, kind, old)
        if meta is None:
            raise NotFoundError(f"{label} {old!r} not found in environment {env!r}.")
        if not self.b.create(self._name_path(env, kind, new), json.dumps({"id": meta.id}).encode()):
            raise AlreadyExistsError(f"{label} {new!r} already exists in environment {env!r}.")
        self.b.write(
            self._meta_path(meta.id),
            VolumeMeta(
                meta.id,
                new,
                env,
                kind,
                meta.created_at,
                meta.created_by,
                meta.fs_version,
                meta.ephemeral,
            ).to_json(),
        )
        self.b.delete(self._name_path(env, kind, old))

    def list(self, env: str, kind: str) -> builtins.list[VolumeMeta]:
        out = []
        for fname in self.b.names(self._p("names", env, kind)):
            if fname.endswith(".json"):
                meta = self.lookup(env, kind, fname[: -len(".json")])
                if meta is not None:
                    out.append(meta)
        return sorted(out, key=lambda m: m.created_at, reverse=True)

    # -- versions ------------------------------------------------------------------------------

    def _manifest_path(self, vol_id: str, version: int) -> str:
        return self._p("data", vol_id, "manifests", f"{version:012d}.json")

    def _versions(self, vol_id: str) -> builtins.list[int]:
        out = []
        for name in self.b.names(self._p("data", vol_id, "manifests")):
            stem = name.removesuffix(".json")
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def latest(self, vol_id: str) -> Manifest:
        """The newest committed version (version 0, empty, before the first commit)."""
        for _ in range(10):
            versions = self._versions(vol_id)
            if not versions:
                return Manifest.empty()
            manifest = self.manifest(vol_id, versions[-1])
            if manifest is not None:
                return manifest
        raise InvalidError(f"Could not read the latest version of volume {vol_id}; try again.")

    def manifest(self, vol_id: str, version: int) -> Manifest | None:
        key = (vol_id, version)
        cached = self._manifests.get(key)
        if cached is not None:
            return cached
        data = self.b.read(self._manifest_path(vol_id, version))
        if data is None:
            return None
        manifest = Manifest.loads(data)
        with self._lock:
            if len(self._manifests) > 32:
                self._manifests.pop(next(iter(self._manifests)))
            self._manifests[key] = manifest
        return manifest

    def publish(self, vol_id: str, build: Callable[[Manifest], Changes]) -> Manifest:
        """Commit: apply `build(latest)` to the latest version and publish it as the next one,
        retrying against the newer version when another writer got there first."""
        delay = 0.01
        for _ in range(200):
            latest = self.latest(vol_id)
            changes = build(latest)
            if not changes:
                return latest
            new = latest.apply(changes, latest.version + 1)
            if self.b.create(self._manifest_path(vol_id, new.version), new.dumps()):
                with self._lock:
                    self._manifests[(vol_id, new.version)] = new
                if new.version % _GC_EVERY == 0:
                    with contextlib.suppress(Exception):
                        self.gc(vol_id)
                return new
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        raise InvalidError(f"Volume {vol_id}: too many concurrent commits; try again.")

    # -- blobs ---------------------------------------------------------------------------------

    def blob_path(self, vol_id: str, blob: str) -> str:
        return self._p("data", vol_id, "blobs", blob[:2], blob)

    def new_blob_id(self) -> str:
        return uuid.uuid4().hex

    def put_blob_file(self, vol_id: str, local_path: str) -> str:
        blob = self.new_blob_id()
        self.b.put_file(local_path, self.blob_path(vol_id, blob))
        return blob

    def put_blob_fileobj(self, vol_id: str, fileobj: IO[bytes]) -> tuple[str, int]:
        """Upload from a file object (spooled to a private temp file first)."""
        with tempfile.NamedTemporaryFile(prefix="modal-ray-upload-") as tmp:
            size = 0
            while True:
                chunk = fileobj.read(_READ_CHUNK)
                if not chunk:
                    break
                tmp.write(chunk)
                size += len(chunk)
            tmp.flush()
            return self.put_blob_file(vol_id, tmp.name), size

    def fetch_blob(self, vol_id: str, blob: str, local_path: str) -> None:
        """Write a blob to a new local file (which must not exist)."""
        self.b.get_file(self.blob_path(vol_id, blob), local_path)

    def iter_blob(self, vol_id: str, blob: str, chunk: int = _READ_CHUNK) -> Iterator[bytes]:
        with self.b.open(self.blob_path(vol_id, blob)) as f:
            while True:
                data = f.read(chunk)
                if not data:
                    return
                yield data

    # -- plain files (network file systems) ----------------------------------------------------

    def files_root(self, vol_id: str) -> str:
        return self._p("data", vol_id, "files")

    # -- garbage collection --------------------------------------------------------------------

    def gc(self, vol_id: str) -> None:
        """Drop old manifests and the blobs no kept manifest references."""
        now = time.time()
        versions = self._versions(vol_id)
        keep = versions[-_KEEP_MANIFESTS:]
        mdir = self._p("data", vol_id, "manifests")
        ages = dict(self.b.names_with_mtime(mdir))
        for v in versions[:-_KEEP_MANIFESTS]:
            name = f"{v:012d}.json"
            if now - ages.get(name, now) > _GC_GRACE_S:
                self.b.delete(self._manifest_path(vol_id, v))
            else:
                keep.append(v)
        referenced: set[str] = set()
        for v in keep:
            m = self.manifest(vol_id, v)
            if m is not None:
                referenced |= m.blobs()
        bdir = self._p("data", vol_id, "blobs")
        for prefix in self.b.names(bdir):
            for blob, mtime in self.b.names_with_mtime(self.b.join(bdir, prefix)):
                if blob not in referenced and now - mtime > _GC_GRACE_S:
                    self.b.delete(self.blob_path(vol_id, blob))


_stores: dict[StoreConfig, Store] = {}
_stores_lock = threading.Lock()


def get_store(cfg: StoreConfig | None = None) -> Store:
    cfg = cfg or store_config()
    with _stores_lock:
        store = _stores.get(cfg)
        if store is None:
            store = _stores[cfg] = Store(cfg)
        return store
