"""Volumes and NetworkFileSystems mounted in real Ray workers: Modal's commit/reload model.

Mount paths live under a private temporary directory (creating `/data` would need root and
would litter the machine); the mechanism is the same for any absolute path.
"""

from __future__ import annotations

import atexit
import io
import os
import tempfile
from pathlib import Path

import pytest

import modal
from modal.exception import InvalidError, NotFoundError
from modal_ray.volumes.localfs import remove_tree

# Set before the session's Ray starts (at collection), so that workers inherit them: a worker
# imports this module again, and must compute the same mount paths.
if "MODAL_RAY_TEST_MOUNTS" not in os.environ:  # the test process, not a worker
    os.environ["MODAL_RAY_TEST_MOUNTS"] = tempfile.mkdtemp(prefix="mr-mnt-")
    if "MODAL_RAY_VOLUME_CACHE" not in os.environ:
        os.environ["MODAL_RAY_VOLUME_CACHE"] = tempfile.mkdtemp(prefix="modal-ray-vcache-")
CACHE = os.environ["MODAL_RAY_VOLUME_CACHE"]
ROOT = Path(os.environ["MODAL_RAY_TEST_MOUNTS"])
if modal.is_local():
    # After the session's Ray is gone: read-only copies may carry the immutable attribute,
    # which only modal-ray's removal clears.
    atexit.register(remove_tree, CACHE)
    atexit.register(remove_tree, str(ROOT))
DATA = str(ROOT / "data")
SNAP = str(ROOT / "snap")
RO = str(ROOT / "ro")
SHARED = str(ROOT / "shared")
SUB = str(ROOT / "sub")

app = modal.App("test-volumes")
vol = modal.Volume.from_name("it-main", create_if_missing=True)
snap_vol = modal.Volume.from_name("it-snapshot", create_if_missing=True)
nfs = modal.NetworkFileSystem.from_name("it-nfs", create_if_missing=True)


@app.function(volumes={DATA: vol})
def write(name: str, text: str, commit: bool = True) -> None:
    Path(DATA, name).parent.mkdir(parents=True, exist_ok=True)
    Path(DATA, name).write_text(text)
    if commit:
        vol.commit()


@app.function(volumes={DATA: vol})
def read(name: str, reload: bool = False) -> str | None:
    if reload:
        vol.reload()
    p = Path(DATA, name)
    return p.read_text() if p.exists() else None


@app.function(volumes={DATA: vol})
def reload_with_open_file(name: str) -> str:
    vol.reload()
    with open(Path(DATA, name)):
        try:
            vol.reload()
        except RuntimeError as exc:
            return str(exc)
    return "no error"


@app.function(volumes={DATA: vol})
def write_many(i: int) -> int:
    Path(DATA, "many").mkdir(exist_ok=True)
    Path(DATA, "many", f"{i}.txt").write_text(str(i))
    return i


@app.function()
def read_passed_volume(v: modal.Volume, name: str) -> bytes:
    return b"".join(v.read_file(name))


@app.function(volumes={RO: vol.read_only()})
def write_read_only(name: str) -> str:
    assert Path(RO, name).exists()
    try:
        Path(RO, name).write_text("changed")
    except OSError as exc:
        return type(exc).__name__
    return "written"


@app.function(volumes={SUB: vol.with_mount_options(sub_path="/nested/dir")})
def write_sub(name: str) -> list[str]:
    Path(SUB, name).write_text("in sub")
    return sorted(os.listdir(SUB))


@app.function(volumes={"/proc/modal-ray-test-mount": vol})
def uncreatable_mount() -> None:
    raise AssertionError("the function body must not run")


@app.function(network_file_systems={SHARED: nfs})
def nfs_write(name: str, text: str) -> None:
    Path(SHARED, name).write_text(text)


@app.function(network_file_systems={SHARED: nfs})
def nfs_read(name: str) -> str:
    return Path(SHARED, name).read_text()


@app.function(volumes={SNAP: snap_vol})
def snap_write(name: str) -> None:
    Path(SNAP, name).write_text("new")


@app.cls(volumes={SNAP: snap_vol}, min_containers=1, max_containers=1)
class Reader:
    @modal.method()
    def read(self, name: str, reload: bool = False) -> str | None:
        if reload:
            snap_vol.reload()
        p = Path(SNAP, name)
        return p.read_text() if p.exists() else None


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with app.run():
        yield app


def test_commit_in_one_function_reload_in_another(running: modal.App) -> None:
    write.remote("a.txt", "hello")
    assert read.remote("a.txt", reload=True) == "hello"
    assert b"".join(vol.read_file("a.txt")) == b"hello"  # and from outside any container


def test_changes_are_committed_when_the_input_ends(running: modal.App) -> None:
    write.remote("auto.txt", "no explicit commit", commit=False)
    assert [e.path for e in vol.listdir("/") if e.path == "auto.txt"] == ["auto.txt"]


def test_a_container_that_did_not_reload_keeps_its_snapshot(running: modal.App) -> None:
    assert Reader().read.remote("x.txt") is None  # the container mounted before the write
    snap_write.remote("x.txt")
    assert [e.path for e in snap_vol.listdir("/")] == ["x.txt"]
    assert Reader().read.remote("x.txt") is None  # same container, no reload: old snapshot
    assert Reader().read.remote("x.txt", reload=True) == "new"


def test_concurrent_writers_keep_each_others_files(running: modal.App) -> None:
    assert sorted(write_many.map(range(8))) == list(range(8))
    names = sorted(e.path for e in vol.listdir("many"))
    assert names == [f"many/{i}.txt" for i in range(8)]


def test_reload_with_open_files_is_volume_busy(running: modal.App) -> None:
    write.remote("busy.txt", "x")
    message = reload_with_open_file.remote("busy.txt")
    assert "volume busy" in message
    assert "busy.txt" in message


def test_volume_passed_as_an_argument(running: modal.App) -> None:
    write.remote("arg.txt", "by reference")
    assert read_passed_volume.remote(vol, "arg.txt") == b"by reference"


def test_read_only_mount_refuses_writes(running: modal.App) -> None:
    write.remote("ro.txt", "original")
    assert write_read_only.remote("ro.txt") in ("PermissionError", "OSError")
    assert b"".join(vol.read_file("ro.txt")) == b"original"


def test_sub_path_mount(running: modal.App) -> None:
    assert write_sub.remote("s.txt") == ["s.txt"]
    assert b"".join(vol.read_file("nested/dir/s.txt")) == b"in sub"


def test_mount_path_the_worker_cannot_create(running: modal.App) -> None:
    with pytest.raises(InvalidError, match="cannot create it"):
        uncreatable_mount.remote()


def test_network_file_system_is_shared_without_commit(running: modal.App) -> None:
    nfs_write.remote("n.txt", "shared")
    assert nfs_read.remote("n.txt") == "shared"
    assert b"".join(nfs.read_file("n.txt")) == b"shared"
    assert [e.path for e in nfs.listdir("/")] == ["n.txt"]


# -- the SDK outside containers ------------------------------------------------------------------


def _store_files() -> list[str]:
    root = Path(os.environ["MODAL_RAY_STATE"]) / "volumes"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_batch_upload_needs_force_to_overwrite(tmp_path: Path) -> None:
    with modal.Volume.ephemeral() as v:
        with v.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"one"), "/f.txt")
        before = _store_files()
        with pytest.raises(FileExistsError), v.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"two"), "/f.txt")
            batch.put_file(io.BytesIO(b"new"), "/other.txt")
        assert _store_files() == before  # nothing written
        assert b"".join(v.read_file("f.txt")) == b"one"
        with v.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(b"two"), "/f.txt")
        assert b"".join(v.read_file("f.txt")) == b"two"
        assert [e.path for e in v.listdir("/")] == ["f.txt"]


def test_path_traversal_through_the_api_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    with modal.Volume.ephemeral() as v:
        with v.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"inside"), "a/b.txt")
        before = _store_files()
        escape = os.path.relpath(outside, "/")
        with pytest.raises(InvalidError, match="outside the volume"):
            b"".join(v.read_file(f"../../../../../../{escape}"))
        with pytest.raises(InvalidError), v.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(b"x"), "../escaped.txt")
        with pytest.raises(InvalidError):
            v.remove_file("a/../../a", recursive=True)
        with pytest.raises(InvalidError):
            v.copy_files(["a/b.txt"], "/../../x.txt")
        with pytest.raises(InvalidError):
            v.listdir("../")
        assert _store_files() == before
        assert outside.read_text() == "secret"
        # `..` that stays inside the volume is an ordinary path.
        assert b"".join(v.read_file("a/../a/b.txt")) == b"inside"


def test_from_name_without_create_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        modal.Volume.from_name("it-missing").hydrate()
