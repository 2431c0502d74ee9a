"""Where a container is a process of the host (the embedded Ray, a cluster of plain processes),
modal-ray writes image files and mount points into the host's own filesystem. It must never
overwrite or delete what it did not create, must remove what it created when the run ends, and
must refuse clearly (naming the path and the way out) where a program asks for a path that
already exists on the host.

The functions here are defined inside the tests (they travel by value), so each test builds its
image from its own temporary directory.
"""

from __future__ import annotations

import atexit
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import modal
from modal.exception import InvalidError
from modal_ray.volumes.localfs import remove_tree

# The volume cache must be chosen before the session's Ray starts (workers inherit it).
if "MODAL_RAY_VOLUME_CACHE" not in os.environ and modal.is_local():
    os.environ["MODAL_RAY_VOLUME_CACHE"] = tempfile.mkdtemp(prefix="modal-ray-vcache-")
    atexit.register(remove_tree, os.environ["MODAL_RAY_VOLUME_CACHE"])


def _reader(image: modal.Image, **options: Any) -> tuple[modal.App, Any]:
    app = modal.App("host-files", image=image)

    @app.function(serialized=True, **options)
    def read(path: str) -> str | None:
        p = Path(path)
        return p.read_text() if p.exists() else None

    return app, read


def _payload(tmp_path: Path, text: str = "payload") -> Path:
    payload = tmp_path / "payload.txt"
    payload.write_text(text)
    return payload


def _raises_naming(path: Path) -> Any:
    return pytest.raises(InvalidError, match=re.escape(str(path)))


def test_an_existing_host_file_is_never_overwritten(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own data")
    image = modal.Image.debian_slim().add_local_file(_payload(tmp_path), str(victim))
    app, read = _reader(image)
    with app.run(), _raises_naming(victim) as info:
        read.remote(str(victim))
    message = str(info.value)
    assert "already exists" in message
    assert "MODAL_RAY_WORKER_FS" in message  # the way out, besides another path
    assert victim.read_text() == "the user's own data"


def test_files_an_image_adds_are_removed_when_the_run_ends(tmp_path: Path) -> None:
    target = tmp_path / "made" / "by" / "the-run" / "payload.txt"
    image = modal.Image.debian_slim().add_local_file(_payload(tmp_path), str(target))
    app, read = _reader(image)
    with app.run():
        assert read.remote(str(target)) == "payload"
        assert read.remote(str(target)) == "payload"  # a second input finds them too
        assert target.read_text() == "payload"
    assert not (tmp_path / "made").exists()  # the file and the directories made for it


def test_a_local_dir_into_an_existing_host_directory(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("mine")
    app, read = _reader(modal.Image.debian_slim().add_local_dir(src, str(dest)))
    with app.run():
        assert read.remote(str(dest / "sub" / "b.txt")) == "B"
    assert sorted(os.listdir(dest)) == ["mine.txt"]
    assert (dest / "mine.txt").read_text() == "mine"

    # One file of the directory collides: nothing of it is written, the user's file is kept.
    (dest / "a.txt").write_text("the user's a")
    app, read = _reader(modal.Image.debian_slim().add_local_dir(src, str(dest)))
    with app.run(), _raises_naming(dest / "a.txt"):
        read.remote(str(dest / "a.txt"))
    assert sorted(os.listdir(dest)) == ["a.txt", "mine.txt"]
    assert (dest / "a.txt").read_text() == "the user's a"


def test_an_identical_host_file_is_used_and_kept(tmp_path: Path) -> None:
    same = tmp_path / "same.txt"
    same.write_text("payload")
    image = modal.Image.debian_slim().add_local_file(_payload(tmp_path), str(same))
    app, read = _reader(image)
    with app.run():
        assert read.remote(str(same)) == "payload"
    assert same.read_text() == "payload"  # not ours: it stays


def test_private_worker_filesystems_may_replace_paths(tmp_path: Path) -> None:
    """The way out for clusters whose workers run in their own disposable containers."""
    victim = tmp_path / "victim.txt"
    victim.write_text("old")
    image = (
        modal.Image.debian_slim()
        .env({"MODAL_RAY_WORKER_FS": "private"})
        .add_local_file(_payload(tmp_path), str(victim))
    )
    app, read = _reader(image)
    with app.run():
        assert read.remote(str(victim)) == "payload"


def _volume_app(mount: Path) -> tuple[modal.App, Callable[..., Any], str]:
    name = f"host-files-{uuid.uuid4().hex[:8]}"
    vol = modal.Volume.from_name(name, create_if_missing=True)
    app = modal.App("host-files-volume")

    @app.function(serialized=True, volumes={str(mount): vol})
    def write_read(path: str) -> str:
        Path(path, "x.txt").write_text("in the volume")
        return Path(path, "x.txt").read_text()

    return app, write_read, name


def test_a_volume_mount_point_is_removed_when_the_run_ends(tmp_path: Path) -> None:
    mount = tmp_path / "mnt" / "data"
    app, write_read, name = _volume_app(mount)
    try:
        with app.run():
            assert write_read.remote(str(mount)) == "in the volume"
            assert os.path.islink(mount)
        assert not os.path.lexists(mount)
        assert not (tmp_path / "mnt").exists()
    finally:
        modal.Volume.objects.delete(name)


def test_a_volume_is_not_mounted_over_an_existing_host_directory(tmp_path: Path) -> None:
    mount = tmp_path / "data"
    mount.mkdir()
    app, write_read, name = _volume_app(mount)
    try:
        with app.run(), _raises_naming(mount) as info:
            write_read.remote(str(mount))
        assert "MODAL_RAY_WORKER_FS" in str(info.value)
        assert mount.is_dir()
        assert not mount.is_symlink()
        assert os.listdir(mount) == []
    finally:
        modal.Volume.objects.delete(name)


def test_container_pool_files_are_removed_when_the_run_ends(tmp_path: Path) -> None:
    target = tmp_path / "pool" / "payload.txt"
    image = modal.Image.debian_slim().add_local_file(_payload(tmp_path), str(target))
    app = modal.App("host-files-pool", image=image)

    @app.cls(serialized=True, cpu=0.1)
    class Reader:
        @modal.method()
        def read(self, path: str) -> str | None:
            p = Path(path)
            return p.read_text() if p.exists() else None

    with app.run():
        assert Reader().read.remote(str(target)) == "payload"
    assert not (tmp_path / "pool").exists()
