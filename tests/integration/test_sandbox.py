"""modal.Sandbox on a real local Ray: processes, streams, files, lifecycle, lookup, isolation."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import modal
from modal.exception import (
    AlreadyExistsError,
    ExecutionError,
    InvalidError,
    NotFoundError,
    SandboxFilesystemNotFoundError,
    SandboxTerminatedError,
    SandboxTimeoutError,
    UnimplementedError,
)
from modal.stream_type import StreamType


@pytest.fixture
def sb() -> Iterator[modal.Sandbox]:
    sandbox = modal.Sandbox.create(timeout=120)
    yield sandbox
    sandbox.terminate()


def test_python_output_read_back(sb: modal.Sandbox) -> None:
    p = sb.exec("python", "-c", "import sys; print('hello'); print('oops', file=sys.stderr)")
    assert p.stdout.read() == "hello\n"
    assert p.stderr.read() == "oops\n"
    assert p.wait() == 0
    assert p.returncode == 0


def test_stdin_round_trip_and_bytes_mode(sb: modal.Sandbox) -> None:
    p = sb.exec("python", "-c", "import sys; sys.stdout.write(sys.stdin.read()[::-1])", text=False)
    p.stdin.write(b"abc")
    p.stdin.write("def\n")
    p.stdin.write_eof()
    p.stdin.drain()
    assert p.stdout.read() == b"\nfedcba"
    with pytest.raises(ValueError, match="write_eof"):
        p.stdin.write(b"late")


def test_lines_arrive_as_they_are_written(sb: modal.Sandbox) -> None:
    # The process writes its second line only after it got input that the test sends once it
    # has read the first: the first line must have been streamed before the process ended.
    script = "print('first', flush=True); input(); print('second'); print('third', end='')"
    p = sb.exec("python", "-c", script)
    lines = iter(p.stdout)
    assert next(lines) == "first\n"
    assert p.poll() is None
    p.stdin.write("go\n")
    p.stdin.drain()
    assert list(lines) == ["second\n", "third"]
    assert p.wait() == 0


def test_async_iteration_and_aio(sb: modal.Sandbox) -> None:
    async def main() -> list[str]:
        p = await sb.exec.aio("sh", "-c", "echo a; echo b")
        lines = [line async for line in p.stdout]
        assert await p.wait.aio() == 0
        return lines

    assert asyncio.run(main()) == ["a\n", "b\n"]


def test_devnull_and_exec_options(sb: modal.Sandbox) -> None:
    secret = modal.Secret.from_dict({"TOKEN": "s3"})
    p = sb.exec(
        "sh",
        "-c",
        "pwd; echo $TOKEN $EXTRA; echo err >&2",
        workdir="/tmp",
        secrets=[secret],
        env={"EXTRA": "x"},
        stderr=StreamType.DEVNULL,
    )
    assert p.stdout.read() == "/tmp\ns3 x\n"
    assert p.stderr.read() == ""


def test_exec_timeout(sb: modal.Sandbox) -> None:
    p = sb.exec("sleep", "60", timeout=1)
    assert p.wait() == -1
    assert p.stdout.read() == ""


def test_sandbox_timeout_raises() -> None:
    sandbox = modal.Sandbox.create(timeout=1)
    with pytest.raises(SandboxTimeoutError):
        sandbox.wait()
    assert sandbox.returncode == 137


def test_entrypoint_output_and_exit_code() -> None:
    sandbox = modal.Sandbox.create("sh", "-c", "echo out; exit 3", timeout=60)
    assert sandbox.stdout.read() == "out\n"
    sandbox.wait()
    assert sandbox.returncode == 3
    assert sandbox.poll() == 3


def test_terminate_and_wait() -> None:
    sandbox = modal.Sandbox.create("sleep", "600", timeout=120)
    assert sandbox.poll() is None
    sandbox.terminate()
    with pytest.raises(SandboxTerminatedError):
        sandbox.wait()
    sandbox.wait(raise_on_termination=False)
    assert sandbox.returncode == 137
    sandbox.terminate()  # a no-op once finished
    with pytest.raises(SandboxTerminatedError):
        sandbox.exec("true")


def test_from_id_in_another_process(sb: modal.Sandbox) -> None:
    import ray

    with sb.open("/tmp/mark", "w") as f:
        f.write("from the creator")
    code = textwrap.dedent(
        f"""
        import modal
        sb = modal.Sandbox.from_id({sb.object_id!r})
        print(sb.exec("cat", "/tmp/mark").stdout.read())
        """
    )
    env = {**os.environ, "MODAL_RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert "from the creator" in done.stdout


def test_tags_and_list(sb: modal.Sandbox) -> None:
    other = modal.Sandbox.create(timeout=120)
    try:
        sb.set_tags({"pool": "p1", "kind": "worker"})
        other.set_tags({"pool": "p2"})
        assert sb.get_tags() == {"pool": "p1", "kind": "worker"}
        found = [s.object_id for s in modal.Sandbox.list(tags={"pool": "p1"})]
        assert found == [sb.object_id]
        everyone = {s.object_id for s in modal.Sandbox.list()}
        assert {sb.object_id, other.object_id} <= everyone
        assert modal.Sandbox.from_id(sb.object_id).get_tags()["kind"] == "worker"
    finally:
        other.terminate()


def test_files_read_back_byte_for_byte(sb: modal.Sandbox) -> None:
    data = bytes(range(256)) * 4096 + os.urandom(3 * 1024 * 1024)
    sb.mkdir("/data/deep", parents=True)
    with sb.open("/data/deep/blob.bin", "wb") as f:
        f.write(data)
    with sb.open("/data/deep/blob.bin", "rb") as f:
        assert f.read() == data
    # The file is the one the sandbox's processes see.
    p = sb.exec(
        "python",
        "-c",
        "import hashlib;print(hashlib.sha256(open('/data/deep/blob.bin','rb').read()).hexdigest())",
    )
    import hashlib

    assert p.stdout.read().strip() == hashlib.sha256(data).hexdigest()
    with sb.open("/data/notes.txt", "w") as f:
        f.write("one\ntwo\n")
    with sb.open("/data/notes.txt", "r+") as f:
        assert f.readline() == "one\n"
        f.seek(0)
        assert f.readlines() == ["one\n", "two\n"]
    assert sb.ls("/data") == ["deep", "notes.txt"]
    sb.rm("/data", recursive=True)
    with pytest.raises(SandboxFilesystemNotFoundError):
        sb.ls("/data")


def test_bad_input(sb: modal.Sandbox) -> None:
    with pytest.raises(ExecutionError, match="no-such-binary"):
        sb.exec("no-such-binary", "--flag")
    with pytest.raises(InvalidError):
        sb.open("bad\x00name", "w")
    with pytest.raises(InvalidError):
        sb.open("/tmp/x", "rw")
    with pytest.raises(SandboxFilesystemNotFoundError):
        sb.open("../../../../../etc/shadow")
    with pytest.raises(InvalidError):
        modal.Sandbox.create(timeout=-1)
    with pytest.raises(UnimplementedError):
        modal.Sandbox.create(pty=True)
    with pytest.raises(InvalidError, match=r"Invalid CIDR '10\.0\.0\.0/33'"):
        modal.Sandbox.create(cidr_allowlist=["10.0.0.0/33"])
    with pytest.raises(InvalidError, match="one or the other"):
        modal.Sandbox.create(block_network=True, outbound_cidr_allowlist=["10.0.0.0/8"])
    with pytest.raises(InvalidError, match="not both"):
        modal.Sandbox.create(cidr_allowlist=[], outbound_cidr_allowlist=[])
    with pytest.raises(NotFoundError):
        modal.Sandbox.from_id("sb-" + "0" * 16 + "abc")


def test_name_already_taken() -> None:
    first = modal.Sandbox.create(name="taken-name", timeout=120)
    try:
        with pytest.raises(AlreadyExistsError):
            modal.Sandbox.create(name="taken-name", timeout=120)
    finally:
        first.terminate()


def test_cannot_read_state_store() -> None:
    state = Path(os.environ["MODAL_RAY_STATE"])
    (state / "sandbox-secret.txt").write_text("store-secret")
    sandbox = modal.Sandbox.create(timeout=60)
    try:
        p = sandbox.exec("sh", "-c", f"cat {state}/sandbox-secret.txt; ls {state}")
        assert "store-secret" not in p.stdout.read()
        assert p.wait() != 0
    finally:
        sandbox.terminate()


def test_sandboxes_cannot_reach_ray() -> None:
    """Neither a sandbox with `block_network=True` nor one with network access reaches Ray's
    GCS: each has its own network namespace, and the one with access reaches out through
    slirp4netns, whose routes refuse the cluster's node addresses."""
    import ray

    host, port = ray.get_runtime_context().gcs_address.rsplit(":", 1)
    probe = (
        "import socket,sys\n"
        "try:\n"
        "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
        "    print('CONNECTED')\n"
        "except OSError as e:\n"
        "    print('BLOCKED', e)\n"
    )
    blocked = modal.Sandbox.create(block_network=True, timeout=60)
    open_net = modal.Sandbox.create(timeout=60)
    try:
        assert blocked.exec("python", "-c", probe, host, port).stdout.read().startswith("BLOCKED")
        out = open_net.exec("python", "-c", probe, host, port).stdout.read()
        assert out.startswith("BLOCKED"), out
        # The node's own address stands in for the loopback no better: Ray listens there on a
        # cluster (the GCS listens on 127.0.0.1 in tests, so any node address is refused).
        from modal_ray.sandbox_runtime.network import node_addresses

        for address in node_addresses():
            out = open_net.exec("python", "-c", probe, address, port).stdout.read()
            assert out.startswith("BLOCKED"), (address, out)
    finally:
        blocked.terminate()
        open_net.terminate()


def _http_sandbox() -> modal.Sandbox:
    return modal.Sandbox.create(
        "python",
        "-m",
        "http.server",
        "8000",
        workdir="/srv",
        encrypted_ports=[8000],
        unencrypted_ports=[9000],
        block_network=True,  # the tunnel reaches into the sandbox's own network namespace
        readiness_probe=modal.Probe.with_tcp(8000),
        timeout=120,
    )


def test_tunnel_reaches_http_server_inside() -> None:
    import httpx

    from modal_ray.warn import reset_for_tests

    reset_for_tests()
    with pytest.warns(UserWarning, match="no TLS"):
        sandbox = _http_sandbox()
    try:
        with sandbox.open("/srv/hello.txt", "w") as f:
            f.write("hello through the tunnel")
        sandbox.wait_until_ready()
        tunnels = sandbox.tunnels()
        assert set(tunnels) == {8000, 9000}
        response = httpx.get(tunnels[8000].url + "/hello.txt", timeout=30)
        assert response.text == "hello through the tunnel"
        assert tunnels[9000].tcp_socket[1] == tunnels[9000].port
        with pytest.raises(InvalidError):
            _ = tunnels[8000].tcp_socket
    finally:
        sandbox.terminate()


def test_wait_until_ready_with_exec_probe() -> None:
    sandbox = modal.Sandbox.create(
        "sh",
        "-c",
        "sleep 1; touch /tmp/ready; sleep 600",
        readiness_probe=modal.Probe.with_exec("test", "-f", "/tmp/ready"),
        timeout=120,
    )
    try:
        sandbox.wait_until_ready(timeout=60)
        assert sandbox.exec("ls", "/tmp").stdout.read() == "ready\n"
    finally:
        sandbox.terminate()


def test_idle_timeout_ends_the_sandbox() -> None:
    sandbox = modal.Sandbox.create(idle_timeout=1, timeout=120)
    with pytest.raises(SandboxTimeoutError):
        sandbox.wait()


def test_from_name_and_app_id() -> None:
    app = modal.App("sandbox-from-name")
    with app.run():
        sandbox = modal.Sandbox.create(app=app, name="web", timeout=120)
        try:
            found = modal.Sandbox.from_name("sandbox-from-name", "web")
            assert found.object_id == sandbox.object_id
            listed = [s.object_id for s in modal.Sandbox.list(app_id=app.app_id)]
            assert listed == [sandbox.object_id]
            assert sandbox.get_tags() == {}  # the app's name is not one of the user's tags
            with pytest.raises(NotFoundError):
                modal.Sandbox.from_name("sandbox-from-name", "other")
        finally:
            sandbox.terminate()


def test_stdout_forwarded_to_local_stdout(
    sb: modal.Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    p = sb.exec("sh", "-c", "echo forwarded-line", stdout=StreamType.STDOUT)
    assert p.wait() == 0
    assert p.stdout._forwarder is not None
    p.stdout._forwarder.join(timeout=60)
    assert "forwarded-line\n" in capsys.readouterr().out


def test_file_size_limits(sb: modal.Sandbox) -> None:
    from modal.exception import SandboxFilesystemFileTooLargeError

    assert sb.exec("truncate", "-s", "101M", "/tmp/big").wait() == 0  # sparse: cheap
    with sb.open("/tmp/big", "rb") as f:
        with pytest.raises(SandboxFilesystemFileTooLargeError, match="limit"):
            f.read()
        assert len(f.read(1024)) == 1024  # reading it in parts works


def test_resources_are_reserved_while_it_lives() -> None:
    import ray

    def groups(state: str) -> set[str]:
        return {
            pg_id
            for pg_id, info in ray.util.placement_group_table().items()
            if info["state"] == state
            and info["bundles"].get(0, {}).get("CPU") == 1.5
            and info["bundles"][0].get("memory") == 64 * 2**20
        }

    before = groups("CREATED")
    sandbox = modal.Sandbox.create(cpu=1.5, memory=64, timeout=120)
    try:
        reserving = groups("CREATED") - before
        assert len(reserving) == 1  # one bundle holds the sandbox's CPU and memory
        assert sandbox.exec("true").wait() == 0
    finally:
        sandbox.terminate()
        sandbox.wait(raise_on_termination=False)
    assert reserving <= groups("REMOVED")  # released with the sandbox


def test_volume_mounted_and_committed_at_the_end() -> None:
    name = "sandbox-test-volume"
    vol = modal.Volume.from_name(name, create_if_missing=True)
    try:
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"from the client"), "/input.txt")
        sandbox = modal.Sandbox.create(volumes={"/data": vol}, timeout=120)
        p = sandbox.exec("sh", "-c", "cat /data/input.txt; echo made-inside > /data/output.txt")
        assert p.stdout.read() == "from the client"
        assert p.wait() == 0
        sandbox.terminate()
        sandbox.wait(raise_on_termination=False)
        assert b"".join(vol.read_file("output.txt")) == b"made-inside\n"
    finally:
        modal.Volume.objects.delete(name)


def test_filesystem_api(sb: modal.Sandbox, tmp_path: Path) -> None:
    from modal.exception import (
        SandboxFilesystemDirectoryNotEmptyError,
        SandboxFilesystemIsADirectoryError,
        SandboxFilesystemPathAlreadyExistsError,
    )

    fs = sb.filesystem
    payload = bytes(range(256)) * 1000
    fs.write_bytes(payload, "/work/deep/data.bin")  # parents are created
    assert fs.read_bytes("/work/deep/data.bin") == payload
    fs.write_text("héllo\n", "/work/greeting.txt")
    assert fs.read_text("/work/greeting.txt") == "héllo\n"
    assert sb.exec("cat", "/work/greeting.txt").stdout.read() == "héllo\n"

    local = tmp_path / "local.bin"
    local.write_bytes(b"from this machine")
    fs.copy_from_local(local, "/work/copied.bin")
    fs.copy_to_local("/work/copied.bin", tmp_path / "out" / "back.bin")
    assert (tmp_path / "out" / "back.bin").read_bytes() == b"from this machine"

    listing = {e.name: e for e in fs.list_files("/work")}
    assert set(listing) == {"deep", "greeting.txt", "copied.bin"}
    assert listing["deep"].type == "directory"
    assert listing["copied.bin"].size == len(b"from this machine")
    assert fs.stat("/work/deep/data.bin").size == len(payload)

    fs.make_directory("/work/a/b/c")
    with pytest.raises(SandboxFilesystemPathAlreadyExistsError):
        fs.make_directory("/work/a", create_parents=False)
    with pytest.raises(SandboxFilesystemIsADirectoryError):
        fs.read_bytes("/work/a")
    with pytest.raises(SandboxFilesystemDirectoryNotEmptyError):
        fs.remove("/work/a")
    fs.remove("/work/a", recursive=True)
    with pytest.raises(SandboxFilesystemNotFoundError):
        fs.stat("/work/a")
    with pytest.raises(InvalidError):
        fs.read_bytes("relative/path")


def test_watch_reports_changes(sb: modal.Sandbox) -> None:
    from modal.file_io import FileWatchEventType

    sb.mkdir("/watched/sub", parents=True)
    # The process keeps making and removing files until told to stop, so whenever the watch
    # starts (when iteration begins), changes follow.
    churn = (
        "i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo x > /watched/sub/f$i;"
        " rm /watched/sub/f$i; sleep 0.05; done"
    )
    p = sb.exec("sh", "-c", churn)
    created: set[str] = set()
    removed: set[str] = set()
    for event in sb.watch("/watched", recursive=True, timeout=120):
        for path in event.paths:
            if event.type == FileWatchEventType.Create:
                created.add(path)
            elif event.type == FileWatchEventType.Remove:
                removed.add(path)
        if created & removed:
            break
    sb.exec("touch", "/tmp/stop").wait()
    assert p.wait() == 0
    path = next(iter(created & removed))
    assert path.startswith("/watched/sub/f")
    # A filter keeps only the kinds asked for; a timeout ends the iteration.
    quiet = list(sb.filesystem.watch("/watched", filter=[FileWatchEventType.Create], timeout=2))
    assert quiet == []


def test_snapshot_filesystem_seeds_a_new_sandbox(sb: modal.Sandbox) -> None:
    setup = (
        "mkdir -p /work/pkg && echo 'print(6 * 7)' > /work/pkg/main.py"
        " && chmod 755 /work/pkg/main.py && ln -s /etc/shadow /work/escape && mkfifo /work/fifo"
    )
    assert sb.exec("sh", "-c", setup).wait() == 0
    image = sb.snapshot_filesystem()
    seeded = modal.Sandbox.create(image=image, timeout=120)
    try:
        assert seeded.exec("python", "/work/pkg/main.py").stdout.read() == "42\n"
        assert seeded.filesystem.stat("/work/pkg/main.py").permissions == 0o755
        assert sorted(seeded.ls("/work")) == ["pkg"]  # no link out, no FIFO
        assert "root:" in seeded.exec("cat", "/etc/passwd").stdout.read()  # the node's, bound
    finally:
        seeded.terminate()


def test_replace_and_delete_bytes(sb: modal.Sandbox) -> None:
    from modal.file_io import delete_bytes, replace_bytes

    sb.filesystem.write_bytes(b"hello cruel world", "/tmp/edit.bin")
    with sb.open("/tmp/edit.bin", "rb+") as f:
        replace_bytes(f, b"kind", start=6, end=11)
        delete_bytes(f, start=0, end=6)
    assert sb.filesystem.read_bytes("/tmp/edit.bin") == b"kind world"


def test_exec_with_pty(sb: modal.Sandbox) -> None:
    p = sb.exec("sh", "-c", 'tty; echo "$TERM"; echo to-stderr >&2', pty=True)
    out = p.stdout.read()
    assert p.wait() == 0
    assert out.startswith("/dev/pts/"), out
    assert "xterm-256color" in out
    assert "to-stderr" in out  # a terminal has one output stream
    assert p.stderr.read() == ""


def test_modal_container_exec_cli(sb: modal.Sandbox) -> None:
    import ray

    env = {**os.environ, "MODAL_RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    modal_bin = str(Path(sys.executable).parent / "modal")
    done = subprocess.run(
        [modal_bin, "container", "exec", sb.object_id, "sh", "-c", "echo hi; exit 4"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 4, done.stderr
    assert done.stdout == "hi\n"
    # With --pty the command runs on a terminal in the sandbox.
    done = subprocess.run(
        [modal_bin, "container", "exec", "--pty", sb.object_id, "tty"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("/dev/pts/"), done.stdout
