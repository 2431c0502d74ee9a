"""A Volume store and a CloudBucketMount on a real S3 API (moto on loopback), used from a 2-node
Ray cluster whose nodes share no volume directory.

Node A has a fake T4 and node B a fake L4, so `gpu="T4"` / `gpu="L4"` pin a function to a node;
each node has its own volume cache (`MODAL_RAY_VOLUME_CACHE`), and the store is `s3://`. The
driver runs in a subprocess (the pytest process may hold an integration Ray already).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.moto_server import ACCESS_KEY, SECRET_KEY, moto_server, s3fs_for

DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import modal

    ENDPOINT = sys.argv[1]
    MP = sys.argv[2]
    CBM = MP + "-bucket"
    CBM_RO = MP + "-bucket-ro"
    creds = modal.Secret.from_dict(
        {"AWS_ACCESS_KEY_ID": sys.argv[3], "AWS_SECRET_ACCESS_KEY": sys.argv[4]}
    )
    app = modal.App("s3-multinode")
    vol = modal.Volume.from_name("mn-vol", create_if_missing=True)
    bucket = modal.CloudBucketMount(
        "cbm", bucket_endpoint_url=ENDPOINT, key_prefix="data/", secret=creds
    )
    bucket_ro = modal.CloudBucketMount(
        "cbm", bucket_endpoint_url=ENDPOINT, key_prefix="data/", secret=creds, read_only=True
    )

    @app.function(volumes={MP: vol}, gpu="T4")
    def write_on_a(text):
        Path(MP, "x.txt").write_text(text)
        vol.commit()
        return os.environ["NODE_TAG"], os.path.realpath(MP)

    @app.function(volumes={MP: vol}, gpu="L4")
    def read_on_b(reload):
        if reload:
            vol.reload()
        p = Path(MP, "x.txt")
        return os.environ["NODE_TAG"], p.read_text() if p.exists() else None

    @app.function(volumes={CBM: bucket}, gpu="L4")
    def bucket_rw():
        found = sorted(
            str(p.relative_to(CBM)) for p in Path(CBM).rglob("*") if p.is_file()
        )
        Path(CBM, "written.txt").write_text("from the worker")
        return found, Path(CBM, "a.txt").read_text()

    @app.function(volumes={CBM_RO: bucket_ro}, gpu="T4")
    def bucket_ro_write():
        assert Path(CBM_RO, "a.txt").read_text() == "A"
        try:
            Path(CBM_RO, "refused.txt").write_text("no")
        except OSError as exc:
            return type(exc).__name__
        return "written"

    with app.run():
        out = {}
        out["before"] = read_on_b.remote(False)
        out["write"] = write_on_a.remote("committed on A")
        out["after_reload"] = read_on_b.remote(True)
        out["driver_read"] = b"".join(vol.read_file("x.txt")).decode()
        out["bucket_rw"] = bucket_rw.remote()
        out["bucket_ro"] = bucket_ro_write.remote()
    print("RESULT " + json.dumps(out), flush=True)
    """
)


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_server() as endpoint:
        fs = s3fs_for(endpoint)
        fs.mkdir("vols")
        fs.mkdir("cbm")
        fs.pipe_file("cbm/data/a.txt", b"A")
        fs.pipe_file("cbm/data/sub/b.txt", b"B")
        fs.pipe_file("cbm/other/c.txt", b"outside the prefix")
        yield endpoint


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from ray.cluster_utils import Cluster

    caches = tmp_path_factory.mktemp("node-caches")
    c = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 0})
    try:
        for tag, gpu in (("A", "T4"), ("B", "L4")):
            c.add_node(
                num_cpus=2,
                num_gpus=1,
                resources={f"accelerator_type:{gpu}": 1},
                env_vars={
                    "NODE_TAG": tag,
                    "MODAL_RAY_VOLUME_CACHE": str(caches / tag),
                    # The fallback (mirror) here, whatever the machine; FUSE is tested below.
                    "MODAL_RAY_CBM_MODE": "copy",
                    "RAY_AUTH_MODE": "disabled",
                },
            )
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()
        from modal_ray.volumes.localfs import remove_tree

        remove_tree(str(caches))  # read-only copies may carry the immutable attribute


def test_s3_volume_and_bucket_mount_on_two_nodes(s3: str, cluster: object, tmp_path: Path) -> None:
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    env.update(
        MODAL_RAY_ADDRESS=cluster.address,  # type: ignore[attr-defined]
        RAY_AUTH_MODE="disabled",
        MODAL_RAY_STATE=str(tmp_path / "state"),
        MODAL_RAY_VOLUMES="s3://vols/store",
        MODAL_RAY_VOLUMES_OPTIONS=json.dumps(
            {"endpoint_url": s3, "key": ACCESS_KEY, "secret": SECRET_KEY}
        ),
    )
    mount = str(tmp_path / "mnt" / "data")
    driver = subprocess.run(
        [sys.executable, "driver.py", s3, mount, ACCESS_KEY, SECRET_KEY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [x for x in driver.stdout.splitlines() if x.startswith("RESULT ")]
    assert driver.returncode == 0, driver.stderr[-4000:]
    assert lines, driver.stdout[-4000:]
    out = json.loads(lines[0][len("RESULT ") :])

    # The reader on node B mounted before the write; node A committed; B sees it after reload.
    assert out["before"] == ["B", None]
    tag_a, real_a = out["write"]
    assert tag_a == "A"
    assert out["after_reload"] == ["B", "committed on A"]
    assert out["driver_read"] == "committed on A"
    # Node A's working copy lived in node A's own cache, not in a shared directory.
    assert "/node-caches" in real_a
    assert real_a.split("/node-caches", 1)[1].split("/")[1] == "A"

    # The store is the S3 bucket: a committed manifest and the blob are there.
    fs = s3fs_for(s3)
    assert fs.find("vols/store/data", withdirs=False)
    assert not (tmp_path / "state" / "volumes").exists()  # nothing local on the driver

    # key_prefix: the mount shows only data/ (not other/), reads work, writes are uploaded.
    found, a_text = out["bucket_rw"]
    assert found == ["a.txt", "sub/b.txt"]
    assert a_text == "A"
    assert fs.cat_file("cbm/data/written.txt") == b"from the worker"
    assert fs.cat_file("cbm/other/c.txt") == b"outside the prefix"

    # read_only=True refuses writes, and nothing reaches the bucket.
    assert out["bucket_ro"] in ("PermissionError", "OSError")
    assert not fs.exists("cbm/data/refused.txt")


def test_bucket_mount_streams_through_fuse(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where FUSE works, nothing is downloaded up front: reads go to the bucket on demand."""
    from modal_ray.volumes import bucket

    if bucket.fuse_available():
        pytest.skip(f"no FUSE here: {bucket.fuse_available()}")
    monkeypatch.setenv("MODAL_RAY_VOLUME_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MODAL_RAY_CBM_MODE", "auto")
    creds = (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY))
    fs = s3fs_for(s3)
    mounts = []
    try:
        for read_only in (False, True):
            spec = bucket.BucketMountSpec("/m", "cbm", s3, "data/", creds, read_only, False, False)
            node = bucket.node_mount(spec)
            assert isinstance(node, bucket.FuseMount)
            mounts.append(node)
            root = Path(node.start_input())
            assert bucket.is_mounted(str(root))
            files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
            assert {"a.txt", "sub/b.txt"} <= set(files)
            assert not any("c.txt" in f for f in files)  # outside key_prefix
            assert (root / "a.txt").read_text() == "A"
            name = f"fuse-{read_only}.txt"
            if read_only:
                with pytest.raises(OSError, match="Read-only"):
                    (root / name).write_text("refused")
                assert not fs.exists(f"cbm/data/{name}")
            else:
                (root / name).write_text("streamed up")
                assert fs.cat_file(f"cbm/data/{name}") == b"streamed up"
        # Only the mount points exist locally: no object was copied into the cache.
        copied = [p for p in (tmp_path / "cache").rglob("*.txt") if "mnt" not in p.parts]
        assert copied == []
    finally:
        for node in mounts:
            node.stop()
