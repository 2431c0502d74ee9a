"""Volumes without Ray: path safety, merging commits, the local store, working copies, mirrors."""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

import modal
from modal.exception import AlreadyExistsError, InvalidError, NotFoundError
from modal_ray.volumes import localfs, paths, prepare_mounts
from modal_ray.volumes import manifest as mf
from modal_ray.volumes.bucket import BucketMountSpec, Mirror, s3fs_options
from modal_ray.volumes.download import Item, download
from modal_ray.volumes.mounts import MountSet, ensure_mount_link
from modal_ray.volumes.store import VOLUME, Store, StoreConfig
from modal_ray.volumes.workcopy import VolumeMountSpec, WorkingCopy


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    from modal_ray import warn

    warn.reset_for_tests()  # each test sees its own once-per-process warnings


# -- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/", ""),
        ("", ""),
        ("a/b.txt", "a/b.txt"),
        ("/a//b/./c", "a/b/c"),
        ("a/../b", "b"),
        ("a/b/../../c", "c"),
    ],
)
def test_volume_paths_are_canonical(raw: str, canonical: str) -> None:
    assert paths.volume_path(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    ["..", "../x", "/../etc/passwd", "a/../../b", "a/b/../../../c", "x\x00y", "a/" + "n" * 300],
)
def test_volume_paths_never_leave_the_root(raw: str) -> None:
    with pytest.raises(InvalidError):
        paths.volume_path(raw)


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("/data", True),
        ("/root/foo", True),
        ("/tmp/x", True),
        ("/", False),
        ("/root", False),
        ("/tmp", False),
        ("data", False),
        ("/a/../b", False),
        ("/a/./b", True),
    ],
)
def test_mount_path_rules(path: str, ok: bool) -> None:
    if ok:
        assert paths.mount_path(path) == os.path.normpath(path)
    else:
        with pytest.raises(InvalidError):
            paths.mount_path(path)


def test_link_targets_inside_the_volume() -> None:
    assert paths.link_target_inside("a/link", "b") == "a/b"
    assert paths.link_target_inside("a/link", "../c") == "c"
    assert paths.link_target_inside("a/link", "../../c") is None
    assert paths.link_target_inside("link", "/etc/passwd") is None


# -- merging ----------------------------------------------------------------------------------


def _file(ref: str) -> mf.Entry:
    return mf.Entry(mf.FILE, 1, 0.0, 0o644, ref)


def test_concurrent_writers_keep_each_others_files() -> None:
    base = mf.Manifest.empty().apply({"shared.txt": _file("v0")}, 1)
    a = base.apply({"a.txt": _file("a"), "shared.txt": _file("va")}, 2)
    # B started from `base` too: its change set is applied to A's newer version.
    b = a.apply({"b/x.txt": _file("b"), "shared.txt": _file("vb")}, 3)
    assert b.entries["a.txt"].ref == "a"
    assert b.entries["b/x.txt"].ref == "b"
    assert b.entries["b"].kind == mf.DIR
    assert b.entries["shared.txt"].ref == "vb"  # last write wins per file


def test_replacing_and_deleting_directories() -> None:
    m = mf.Manifest.empty().apply({"d/x": _file("x"), "d/y": _file("y")}, 1)
    m2 = m.apply({"d": _file("f")}, 2)  # a file replaces the directory and what was in it
    assert set(m2.entries) == {"d"}
    m3 = m.apply({"d": None, "d/x": None}, 2)  # someone else's d/y keeps its directory
    assert set(m3.entries) == {"d", "d/y"}


def test_inode_limit_is_enospc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "MAX_INODES", 3)
    m = mf.Manifest.empty().apply({"a": _file("a"), "b": _file("b")}, 1)
    with pytest.raises(OSError, match="No space left on device") as info:
        m.apply({"c": _file("c"), "d": _file("d")}, 2)
    assert info.value.errno == 28


def test_resolve_follows_links_inside_only() -> None:
    m = mf.Manifest.empty().apply(
        {
            "real/f": _file("f"),
            "link": mf.Entry(mf.LINK, 4, 0, 0o777, "real"),
            "out": mf.Entry(mf.LINK, 4, 0, 0o777, "../../etc"),
        },
        1,
    )
    assert m.resolve("link/f")[0] == "real/f"
    with pytest.raises(InvalidError, match="outside"):
        m.resolve("out/passwd")


# -- the store and the SDK on a local store -----------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(StoreConfig(str(tmp_path / "store")))


def test_store_names(store: Store) -> None:
    meta, created = store.create("main", VOLUME, "v")
    assert created
    assert store.lookup("main", VOLUME, "v") == meta
    with pytest.raises(AlreadyExistsError):
        store.create("main", VOLUME, "v")
    assert store.create("main", VOLUME, "v", allow_existing=True) == (meta, False)
    store.rename("main", VOLUME, "v", "w")
    assert store.lookup("main", VOLUME, "v") is None
    assert store.lookup("main", VOLUME, "w").id == meta.id  # type: ignore[union-attr]
    assert [m.name for m in store.list("main", VOLUME)] == ["w"]
    store.delete(store.lookup("main", VOLUME, "w"))  # type: ignore[arg-type]
    assert store.list("main", VOLUME) == []


def test_publish_retries_against_a_newer_version(store: Store) -> None:
    meta, _ = store.create("main", VOLUME, "v")
    calls: list[int] = []

    def build(latest: mf.Manifest) -> mf.Changes:
        calls.append(latest.version)
        if len(calls) == 1:  # another writer publishes version 1 in the meantime
            store.publish(meta.id, lambda _m: {"other.txt": _file("o")})
        return {"mine.txt": _file("m")}

    new = store.publish(meta.id, build)
    assert calls == [0, 1]
    assert new.version == 2
    assert set(new.entries) == {"other.txt", "mine.txt"}


def test_sdk_listing_upload_copy_remove(tmp_path: Path) -> None:
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "f.txt").write_text("f")
    with modal.Volume.ephemeral() as v:
        with v.batch_upload() as batch:
            batch.put_directory(local, "/dir")
            batch.put_file(io.BytesIO(b"bytes"), "top.bin", mode=0o600)
        assert [(e.path, e.type.name) for e in v.listdir("/")] == [
            ("dir", "DIRECTORY"),
            ("top.bin", "FILE"),
        ]
        assert [e.path for e in v.listdir("dir/sub/f.txt")] == ["dir/sub/f.txt"]
        assert [e.path for e in v.iterdir("dir")] == ["dir/sub", "dir/sub/f.txt"]
        v.copy_files(["top.bin", "dir/sub/f.txt"], "copies")
        assert sorted(e.path for e in v.listdir("copies")) == ["copies/f.txt", "copies/top.bin"]
        with pytest.raises(InvalidError, match="recursive"):
            v.copy_files(["dir"], "dir2")
        v.copy_files(["dir"], "dir2", recursive=True)
        assert b"".join(v.read_file("dir2/sub/f.txt")) == b"f"
        with pytest.raises(InvalidError, match="recursive"):
            v.remove_file("dir")
        v.remove_file("dir", recursive=True)
        with pytest.raises(FileNotFoundError):
            v.remove_file("dir")
        with pytest.raises(FileNotFoundError):
            b"".join(v.read_file("nope"))
        with pytest.raises(NotFoundError):
            v.listdir("nope")
        with pytest.raises(InvalidError, match="Glob"):
            v.listdir("dir2/**")
        buf = io.BytesIO()
        assert v.read_file_into_fileobj("top.bin", buf) == 5
        assert buf.getvalue() == b"bytes"
        ro = v.read_only()
        with pytest.raises(InvalidError, match="Read-only"):
            ro.remove_file("top.bin")
        with pytest.raises(InvalidError, match="Read-only"):
            ro.batch_upload()


def test_volume_pickles_to_a_reference() -> None:
    v = modal.Volume.from_name("pickled", create_if_missing=True).with_mount_options(
        read_only=True, sub_path="/a/b"
    )
    back = pickle.loads(pickle.dumps(v))
    assert type(back) is modal.Volume
    assert back.name == "pickled"
    assert back._mount_read_only
    assert back._sub_path == "a/b"
    assert modal.Volume.__module__ == "modal.volume"


def test_deprecated_spellings_warn() -> None:
    modal.Volume.objects.create("old-style")
    with pytest.warns(modal.exception.DeprecationError):
        assert modal.Volume.lookup("old-style").name == "old-style"
    with pytest.warns(modal.exception.DeprecationError):
        modal.Volume.delete("old-style")
    with pytest.raises(NotFoundError):
        modal.Volume.from_name("old-style").hydrate()


# -- prepare_mounts and mount paths --------------------------------------------------------------


def test_prepare_mounts_validates() -> None:
    v = modal.Volume.from_name("pm", create_if_missing=True)
    with pytest.raises(InvalidError, match="multiple locations"):
        prepare_mounts({"/a": v, "/b": v}, {}, "main")
    with pytest.raises(InvalidError, match="nested"):
        prepare_mounts({"/a": v, "/a/b": modal.CloudBucketMount("bkt")}, {}, "main")
    with pytest.raises(InvalidError, match="not usable as a volume"):
        prepare_mounts({"/a": "not a volume"}, {}, "main")
    nfs = modal.NetworkFileSystem.from_name("pm-nfs", create_if_missing=True)
    with pytest.raises(InvalidError, match="not usable as a volume"):
        prepare_mounts({"/a": nfs}, {}, "main")
    with pytest.raises(InvalidError, match="not useable as a network file system"):
        prepare_mounts({}, {"/a": v}, "main")
    with pytest.raises(InvalidError, match="not useable as a network file system"):
        prepare_mounts({}, {"/a": modal.CloudBucketMount("bkt")}, "main")
    with pytest.raises(InvalidError, match="root"):
        prepare_mounts({"/": v}, {}, "main")
    with pytest.raises(ValueError, match="must end in a '/'"):
        prepare_mounts({"/c": modal.CloudBucketMount("bkt", key_prefix="no-slash")}, {}, "main")
    with pytest.raises(ValueError, match="Requester Pays"):
        prepare_mounts({"/c": modal.CloudBucketMount("bkt", requester_pays=True)}, {}, "main")
    ms = prepare_mounts({"/a": v}, {}, "main")
    assert isinstance(ms, MountSet)
    assert pickle.loads(pickle.dumps(ms)).key == ms.key


def test_mount_links_never_replace_foreign_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODAL_RAY_WORKER_FS", raising=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    with pytest.raises(InvalidError, match="already exists"):
        ensure_mount_link(str(busy), "/proc/self/fd/1021/m-x", "Volume 'v'")
    foreign = tmp_path / "foreign"
    foreign.symlink_to(tmp_path)
    with pytest.raises(InvalidError, match="did not create"):
        ensure_mount_link(str(foreign), "/proc/self/fd/1021/m-x", "Volume 'v'")
    # Workers are processes of the machine: even an empty directory is the machine's own.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidError, match="MODAL_RAY_WORKER_FS=private"):
        ensure_mount_link(str(empty), "/proc/self/fd/1021/m-x", "Volume 'v'")
    assert empty.is_dir()
    assert not empty.is_symlink()
    # In a disposable container of its own, an empty directory is replaced, as on Modal.
    monkeypatch.setenv("MODAL_RAY_WORKER_FS", "private")
    ensure_mount_link(str(empty), "/proc/self/fd/1021/m-x", "Volume 'v'")
    assert os.readlink(empty) == "/proc/self/fd/1021/m-x"
    with pytest.raises(InvalidError, match="already exists"):
        ensure_mount_link(str(busy), "/proc/self/fd/1021/m-x", "Volume 'v'")
    monkeypatch.delenv("MODAL_RAY_WORKER_FS")
    with pytest.raises(InvalidError, match="cannot create it"):
        ensure_mount_link("/proc/modal-ray-unit-test/x", "/proc/self/fd/1021/m-x", "Volume 'v'")


# -- working copies (a container's view) ----------------------------------------------------------


def _spec(store: Store, name: str, **kw: object) -> VolumeMountSpec:
    meta, _ = store.create("main", VOLUME, name, allow_existing=True)
    return VolumeMountSpec(
        "/x",
        store.cfg,
        store.store_id() or "",
        meta.id,
        name,
        "main",
        **kw,  # type: ignore[arg-type]
    )


def _copy(store: Store, spec: VolumeMountSpec, tmp: Path, name: str) -> WorkingCopy:
    (tmp / f"staging-{name}").mkdir(exist_ok=True)
    wc = WorkingCopy(spec, str(tmp / name), str(tmp / f"staging-{name}"))
    wc.populate()
    return wc


def test_working_copies_commit_and_reload(store: Store, tmp_path: Path) -> None:
    spec = _spec(store, "wc")
    a = _copy(store, spec, tmp_path, "a")
    b = _copy(store, spec, tmp_path, "b")
    Path(a.dir, "d").mkdir()
    Path(a.dir, "d", "f.txt").write_text("from a")
    Path(a.dir, "rel-link").symlink_to("d/f.txt")
    Path(a.dir, "escape").symlink_to("/etc/passwd")
    with pytest.warns(UserWarning, match="outside the volume"):
        assert a.commit()
    assert not a.commit()  # nothing new
    assert not Path(b.dir, "d").exists()  # b keeps its snapshot
    Path(b.dir, "b.txt").write_text("from b")
    b.reload()  # commits b's file, then brings in a's
    assert Path(b.dir, "d", "f.txt").read_text() == "from a"
    assert os.readlink(Path(b.dir, "rel-link")) == "d/f.txt"
    assert not Path(b.dir, "escape").exists()
    with open(Path(b.dir, "b.txt")), pytest.raises(RuntimeError, match="volume busy"):
        b.reload()
    Path(a.dir, "d", "f.txt").unlink()
    a.commit()
    b.reload()
    assert not Path(b.dir, "d", "f.txt").exists()
    assert Path(b.dir, "b.txt").exists()


def test_reload_never_writes_through_a_local_symlink(store: Store, tmp_path: Path) -> None:
    spec = _spec(store, "trap")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = _copy(store, spec, tmp_path, "victim")
    Path(victim.dir, "d").symlink_to(outside)  # points outside: never committed
    other = _copy(store, spec, tmp_path, "other")
    Path(other.dir, "d").mkdir()
    Path(other.dir, "d", "x").write_text("payload")
    other.commit()
    with (
        pytest.warns(UserWarning, match="outside the volume"),
        pytest.raises(InvalidError, match="Refusing to write"),
    ):
        victim.reload()
    assert list(outside.iterdir()) == []


def test_read_only_copy_refuses_writes(store: Store, tmp_path: Path) -> None:
    spec = _spec(store, "ro")
    w = _copy(store, spec, tmp_path, "w")
    Path(w.dir, "f.txt").write_text("x")
    w.commit()
    ro_spec = VolumeMountSpec(
        "/x", spec.store, spec.store_id, spec.volume_id, "ro", "main", read_only=True
    )
    ro = _copy(store, ro_spec, tmp_path, "ro")
    try:
        with pytest.raises(PermissionError):
            Path(ro.dir, "f.txt").write_text("changed")
        with pytest.raises(PermissionError):
            Path(ro.dir, "new.txt").write_text("new")
        assert not ro.commit()
    finally:
        ro.discard()  # protected files (immutable for root) need modal-ray's removal
    assert not Path(ro.dir).exists()


# -- downloads and mirrors ------------------------------------------------------------------------


def test_download_refuses_existing_files_before_writing(tmp_path: Path) -> None:
    items = [Item("d/a", "f"), Item("d/e", "d"), Item("d/e/b", "f")]
    data = {"d/a": b"A", "d/e/b": b"B"}

    def read(p: str) -> Iterator[bytes]:
        return iter([data[p]])

    fresh = tmp_path / "fresh"  # a directory's contents go to a new destination...
    assert download(items, "d", True, str(fresh), force=False, read=read) == 2
    assert (fresh / "a").read_bytes() == b"A"
    assert (fresh / "e" / "b").read_bytes() == b"B"
    into = tmp_path / "into"  # ...or under its own name into an existing directory
    (into / "d").mkdir(parents=True)
    (into / "d" / "a").write_bytes(b"local")
    with pytest.raises(InvalidError, match="already exists"):
        download(items, "d", True, str(into), force=False, read=read)
    assert not (into / "d" / "e").exists()  # nothing was written
    assert download(items, "d", True, str(into), force=True, read=read) == 2
    assert (into / "d" / "a").read_bytes() == b"A"


def test_s3fs_options_from_a_secret() -> None:
    spec = BucketMountSpec(
        "/m",
        "b",
        "https://storage.googleapis.com",
        "p/",
        (("GOOGLE_ACCESS_KEY_ID", "gk"), ("GOOGLE_ACCESS_KEY_SECRET", "gs")),
        read_only=True,
        requester_pays=True,
        force_path_style=True,
    )
    opts = s3fs_options(spec)
    assert opts["key"] == "gk"
    assert opts["secret"] == "gs"
    assert opts["client_kwargs"] == {"endpoint_url": "https://storage.googleapis.com"}
    assert opts["requester_pays"] is True
    assert opts["config_kwargs"] == {"s3": {"addressing_style": "path"}}


def test_mirror_pulls_a_prefix_and_pushes_changes(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("file")
    bucket = tmp_path / "bucket"
    (bucket / "data" / "sub").mkdir(parents=True)
    (bucket / "other").mkdir()
    (bucket / "data" / "a.txt").write_text("A")
    (bucket / "data" / "sub" / "b.txt").write_text("B")
    (bucket / "other" / "c.txt").write_text("C")
    m = Mirror(fs, str(bucket / "data"), str(tmp_path / "m"), read_only=False, label="test")
    with pytest.warns(UserWarning, match="FUSE is not available"):
        m.pull()
    got = sorted(str(p.relative_to(m.data)) for p in Path(m.data).rglob("*") if p.is_file())
    assert got == ["a.txt", "sub/b.txt"]
    Path(m.data, "new.txt").write_text("N")
    Path(m.data, "a.txt").unlink()
    m.push()
    assert (bucket / "data" / "new.txt").read_text() == "N"
    assert not (bucket / "data" / "a.txt").exists()
    ro = Mirror(fs, str(bucket / "data"), str(tmp_path / "ro"), read_only=True, label="test")
    try:
        with pytest.warns(UserWarning, match="FUSE"):
            ro.pull()
        with pytest.raises(PermissionError):
            Path(ro.data, "x.txt").write_text("no")
        ro.push()
        assert not (bucket / "data" / "x.txt").exists()
    finally:
        localfs.remove_tree(ro.base)


def test_async_forms() -> None:
    import asyncio

    async def main() -> list[str]:
        async with modal.Volume.ephemeral() as v:
            async with v.batch_upload() as batch:
                batch.put_file(io.BytesIO(b"async"), "a.txt")
            chunks = [c async for c in v.read_file.aio("a.txt")]
            assert b"".join(chunks) == b"async"
            entries = [e.path async for e in v.iterdir.aio("/")]
            await v.commit.aio()  # not mounted here: nothing to do
            await v.reload.aio()
            return entries + [e.path for e in await v.listdir.aio("/")]

    assert asyncio.run(main()) == ["a.txt", "a.txt"]


def test_network_file_system_sdk(tmp_path: Path) -> None:
    local = tmp_path / "dir"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "x.txt").write_text("x")
    (local / "y.bin").write_bytes(b"y")
    with modal.NetworkFileSystem.ephemeral() as nfs:
        assert nfs.write_file("a/b.txt", io.BytesIO(b"hello")) == 5
        nfs.add_local_dir(local, "/up")
        nfs.add_local_file(local / "y.bin")
        assert b"".join(nfs.read_file("a/b.txt")) == b"hello"
        assert sorted(e.path for e in nfs.listdir("/")) == ["a", "up", "y.bin"]
        assert sorted(e.path for e in nfs.listdir("up/**")) == [
            "up/sub",
            "up/sub/x.txt",
            "up/y.bin",
        ]
        assert [e.path for e in nfs.listdir("up/*.bin")] == ["up/y.bin"]
        with pytest.raises(InvalidError):
            nfs.write_file("../escape.txt", io.BytesIO(b"no"))
        with pytest.raises(InvalidError, match="recursive"):
            nfs.remove_file("up")
        nfs.remove_file("up", recursive=True)
        with pytest.raises(FileNotFoundError):
            b"".join(nfs.read_file("up/y.bin"))
        assert pickle.loads(pickle.dumps(nfs)).object_id == nfs.object_id
