"""CloudBucketMounts (on a real S3 API, moto on loopback) and NetworkFileSystems in sandboxes."""

from __future__ import annotations

import uuid

import modal
from tests.support.moto_server import ACCESS_KEY, SECRET_KEY, moto_server, s3fs_for


def _run(sb: modal.Sandbox, script: str) -> str:
    p = sb.exec("python", "-c", script)
    out, err = p.stdout.read(), p.stderr.read()
    assert p.wait() == 0, err
    return out


def test_bucket_mounts_read_write_and_read_only() -> None:
    with moto_server() as endpoint:
        fs = s3fs_for(endpoint)
        fs.mkdir("sbx-bucket")
        fs.pipe("sbx-bucket/data/seed.txt", b"from-s3")
        creds = modal.Secret.from_dict(
            {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        )

        def mount(read_only: bool) -> modal.CloudBucketMount:
            return modal.CloudBucketMount(
                "sbx-bucket",
                bucket_endpoint_url=endpoint,
                key_prefix="data/",
                secret=creds,
                read_only=read_only,
            )

        sb = modal.Sandbox.create(
            volumes={"/bucket": mount(False), "/bucket-ro": mount(True)}, timeout=120
        )
        try:
            script = (
                "import os, pathlib\n"
                "print(pathlib.Path('/bucket/seed.txt').read_text())\n"
                "pathlib.Path('/bucket/made.txt').write_text('from-sandbox')\n"
                "try:\n"
                "    pathlib.Path('/bucket-ro/nope.txt').write_text('x')\n"
                "    print('wrote')\n"
                "except OSError:\n"
                "    print('refused')\n"
            )
            assert _run(sb, script).split() == ["from-s3", "refused"]
        finally:
            sb.terminate()
            sb.wait(raise_on_termination=False)
        # What the sandbox wrote is in the bucket once it has ended; nothing under the
        # read-only mount's prefix was added.
        assert fs.cat("sbx-bucket/data/made.txt") == b"from-sandbox"
        assert not fs.exists("sbx-bucket/data/nope.txt")


def test_network_file_system_is_shared_live() -> None:
    name = f"sbx-nfs-{uuid.uuid4().hex[:8]}"
    nfs = modal.NetworkFileSystem.from_name(name, create_if_missing=True)
    try:
        nfs.write_file("hello.txt", _bytes_io(b"from-client"))
        sb = modal.Sandbox.create(network_file_systems={"/shared": nfs}, timeout=120)
        try:
            script = (
                "import pathlib\n"
                "print(pathlib.Path('/shared/hello.txt').read_text())\n"
                "pathlib.Path('/shared/back.txt').write_text('from-sandbox')\n"
            )
            assert _run(sb, script).strip() == "from-client"
        finally:
            sb.terminate()
            sb.wait(raise_on_termination=False)
        assert b"".join(nfs.read_file("back.txt")) == b"from-sandbox"
    finally:
        modal.NetworkFileSystem.delete(name)


def _bytes_io(data: bytes):  # type: ignore[no-untyped-def]
    import io

    return io.BytesIO(data)
