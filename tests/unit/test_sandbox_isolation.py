"""Sandbox isolation, tested on the engine-neutral supervisor with real bubblewrap (no Ray).

Each security test runs untrusted-looking code inside a sandbox and checks what it could reach;
with `MODAL_RAY_SANDBOX_ISOLATION=none` (plain processes) every one of them fails, which is what
makes them evidence of the isolation.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modal_ray.exception import (
    ExecutionError,
    InvalidError,
    SandboxFilesystemError,
    SandboxFilesystemNotFoundError,
    SandboxTerminatedError,
)
from modal_ray.sandbox_runtime import isolation
from modal_ray.sandbox_runtime.files import check_path, open_flags
from modal_ray.sandbox_runtime.supervisor import ENTRYPOINT, Supervisor

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is part of the project's setup"
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _output(sup: Supervisor, sid: str, argv: list[str], **kw: Any) -> tuple[int, str, str]:
    xid = await sup.exec(sid, argv, **kw)
    out, err = b"", b""
    while chunk := await sup.read(sid, xid, 1):
        out += chunk
    while chunk := await sup.read(sid, xid, 2):
        err += chunk
    code = await sup.exec_wait(sid, xid)
    assert code is not None
    return code, out.decode(), err.decode()


async def _in_sandbox(
    argv: list[str],
    *,
    block_network: bool = False,
    base: str | None = None,
    cidr_allowlist: list[str] | None = None,
) -> tuple[int, str, str]:
    sup = Supervisor(base_dir=base)
    await sup.create(
        "sb-unit", block_network=block_network, timeout=60, cidr_allowlist=cidr_allowlist
    )
    try:
        return await _output(sup, "sb-unit", argv)
    finally:
        await sup.shutdown()


@pytest.fixture
def secret_file() -> Iterator[Path]:
    """A file in the home directory, as a state store or token file would be."""
    folder = Path(tempfile.mkdtemp(prefix=".modal-ray-test-", dir=Path.home()))
    path = folder / "auth_token"
    path.write_text("top-secret")
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def test_cannot_read_home_or_state_store(secret_file: Path) -> None:
    state = os.environ["MODAL_RAY_STATE"]  # the test run's state store (tests/conftest.py)
    Path(state, "secret.txt").write_text("store-secret")
    code, out, _ = run(
        _in_sandbox(["sh", "-c", f"ls {Path.home()}; cat {secret_file} {state}/secret.txt"])
    )
    assert "top-secret" not in out
    assert "store-secret" not in out
    assert code != 0  # `cat` found neither file


PS = (
    "import os\n"
    "for p in os.listdir('/proc'):\n"
    "    if p.isdigit():\n"
    "        print(repr(open(f'/proc/{p}/cmdline','rb').read()))\n"
)


def test_cannot_see_host_processes() -> None:
    code, out, _ = run(_in_sandbox(["python", "-c", PS]))
    assert code == 0
    lines = out.splitlines()
    # bwrap's init, the agent and this process: nothing of the host (pytest, Ray, ...).
    assert len(lines) <= 4, lines
    assert not any("pytest" in line or "raylet" in line for line in lines)
    assert any("agent.py" in line for line in lines)


def test_environment_is_cleared() -> None:
    os.environ["MODAL_RAY_TEST_LEAK"] = "leaked"
    try:
        code, out, _ = run(_in_sandbox(["env"]))
    finally:
        del os.environ["MODAL_RAY_TEST_LEAK"]
    assert code == 0
    assert "leaked" not in out
    assert "MODAL_RAY_STATE" not in out


def _serve(host: str) -> Iterator[int]:
    server = socket.socket()
    server.bind((host, 0))
    server.listen()
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.sendall(b"host-server")
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def loopback_server() -> Iterator[int]:
    yield from _serve("127.0.0.1")


def _node_address() -> str | None:
    """The node's primary address (the one its default route leaves from), if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


@pytest.fixture
def node_address_server() -> Iterator[tuple[str, int]]:
    """A server on the node's own (non-loopback) address, as Ray's ports on a cluster are."""
    address = _node_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to serve on")
    for port in _serve(address):
        yield address, port


CONNECT = (
    "import socket,sys\n"
    "host = sys.argv[2] if len(sys.argv) > 2 else '127.0.0.1'\n"
    "try:\n"
    "    s=socket.create_connection((host,int(sys.argv[1])),timeout=3)\n"
    "    print('CONNECTED', s.recv(100))\n"
    "except OSError as e:\n"
    "    print('REFUSED', e)\n"
)


def test_block_network_cannot_reach_host_loopback(loopback_server: int) -> None:
    code, out, _ = run(
        _in_sandbox(["python", "-c", CONNECT, str(loopback_server)], block_network=True)
    )
    assert code == 0
    assert "REFUSED" in out
    assert "host-server" not in out


def test_network_access_cannot_reach_host_loopback(loopback_server: int) -> None:
    # Without block_network the sandbox still has its own network namespace: the node's
    # loopback services (Ray's GCS, raylet, dashboard...) are not on its loopback, and the
    # slirp4netns gateway does not lead to them either.
    for host in ("127.0.0.1", "10.0.2.2"):
        code, out, _ = run(_in_sandbox(["python", "-c", CONNECT, str(loopback_server), host]))
        assert code == 0
        assert "REFUSED" in out, (host, out)
        assert "host-server" not in out


def test_network_access_cannot_reach_node_address(node_address_server: tuple[str, int]) -> None:
    address, port = node_address_server
    code, out, _ = run(_in_sandbox(["python", "-c", CONNECT, str(port), address]))
    assert code == 0
    assert "REFUSED" in out, out
    assert "host-server" not in out


def test_network_access_reaches_outside() -> None:
    # The positive side: outbound connections work. The target is an outside address the
    # host itself can reach (a package registry); without one there is nothing to test.
    try:
        target = str(socket.getaddrinfo("deb.debian.org", 80, socket.AF_INET)[0][4][0])
        socket.create_connection((target, 80), timeout=5).close()
    except OSError as exc:
        pytest.skip(f"this machine cannot reach an outside address itself ({exc})")
    route = "print(open('/proc/net/route').read())\n"
    connect_only = CONNECT.replace("s.recv(100)", "'(connect only)'")  # HTTP: client speaks first
    code, out, _ = run(
        _in_sandbox(["sh", "-c", f'python -c "{route}"; python -c "$0" 80 {target}', connect_only])
    )
    assert code == 0
    assert "CONNECTED" in out, out
    assert "tap0\t00000000\t0202000A" in out  # default route through slirp4netns' gateway


def test_cidr_allowlist_limits_outbound_traffic() -> None:
    # The allowed network is reached; any other address has no route at all (ENETUNREACH at
    # once, where without the allowlist the default route would carry it).
    try:
        target = str(socket.getaddrinfo("deb.debian.org", 80, socket.AF_INET)[0][4][0])
        socket.create_connection((target, 80), timeout=5).close()
    except OSError as exc:
        pytest.skip(f"this machine cannot reach an outside address itself ({exc})")
    probe = (
        "import errno, socket, sys\n"
        "for host in sys.argv[1:]:\n"
        "    try:\n"
        "        socket.create_connection((host, 80), timeout=5).close()\n"
        "        print(host, 'CONNECTED')\n"
        "    except OSError as e:\n"
        "        print(host, errno.errorcode.get(e.errno, e))\n"
        "print(open('/proc/net/route').read())\n"
    )
    other = "192.0.2.1"  # TEST-NET-1: nothing answers there, with or without a route
    code, out, _ = run(
        _in_sandbox(["python", "-c", probe, target, other], cidr_allowlist=[f"{target}/32"])
    )
    assert code == 0, out
    assert f"{target} CONNECTED" in out, out
    assert f"{other} ENETUNREACH" in out, out
    assert "\t00000000\t0202000A" not in out  # no default route
    code, out, _ = run(_in_sandbox(["python", "-c", probe, other]))
    assert f"{other} ENETUNREACH" not in out, out  # the default route would have carried it
    with pytest.raises(InvalidError, match="Invalid CIDR 'nonsense'"):
        run(_in_sandbox(["true"], cidr_allowlist=["nonsense"]))


def test_host_network_setting_shares_the_node_network(
    monkeypatch: pytest.MonkeyPatch, loopback_server: int
) -> None:
    # The operator's explicit opt-in keeps the old behaviour: the node's network, loopback too.
    monkeypatch.setenv("MODAL_RAY_SANDBOX_NETWORK", "host")
    _, out, _ = run(_in_sandbox(["python", "-c", CONNECT, str(loopback_server)]))
    assert "host-server" in out


def test_refuses_network_without_slirp4netns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    (tmp_path / "bwrap").symlink_to(bwrap)
    monkeypatch.setenv("PATH", str(tmp_path))  # bubblewrap, and no slirp4netns
    with pytest.raises(ExecutionError, match=r"slirp4netns.*MODAL_RAY_SANDBOX_NETWORK=host"):
        run(_in_sandbox(["true"]))
    # block_network=True needs no outbound networking, so it still starts.
    code, _, _ = run(_in_sandbox(["/bin/true"], block_network=True))
    assert code == 0


def test_writes_outside_mounts_stay_in_the_sandbox() -> None:
    marker = f"/tmp/modal-ray-escape-{os.getpid()}"
    code, _, err = run(
        _in_sandbox(["sh", "-c", f"echo x > {marker}; echo y > /root/escape; touch /usr/escape"])
    )
    assert not os.path.exists(marker)
    assert not os.path.exists("/usr/escape")
    assert code != 0
    assert "Read-only" in err


def test_root_inside_cannot_remount_system_dirs() -> None:
    code, _, _ = run(_in_sandbox(["sh", "-c", "mount -o remount,rw,bind /usr && touch /usr/x"]))
    assert code != 0
    assert not os.path.exists("/usr/x")


def test_symlink_planted_inside_cannot_reach_host_files(secret_file: Path) -> None:
    async def scenario() -> tuple[bytes | None, list[str] | None]:
        sup = Supervisor()
        await sup.create("sb-link", timeout=60)
        try:
            await _output(sup, "sb-link", ["ln", "-s", str(secret_file), "/tmp/link"])
            await _output(sup, "sb-link", ["ln", "-s", str(secret_file.parent), "/tmp/dirlink"])
            data: bytes | None = None
            listing: list[str] | None = None
            with pytest.raises(SandboxFilesystemNotFoundError):
                handle = await sup.open("sb-link", "/tmp/link", "rb")
                data = await sup.fread("sb-link", handle)
            with pytest.raises(SandboxFilesystemNotFoundError):
                listing = await sup.ls("sb-link", "/tmp/dirlink")
            with pytest.raises(SandboxFilesystemNotFoundError):
                await sup.open("sb-link", "/tmp/dirlink/new-file", "w")
            return data, listing
        finally:
            await sup.shutdown()

    data, listing = run(scenario())
    assert data is None
    assert listing is None
    assert sorted(os.listdir(secret_file.parent)) == ["auth_token"]


def test_dotdot_and_absolute_paths_resolve_inside(secret_file: Path) -> None:
    async def scenario() -> None:
        sup = Supervisor()
        await sup.create("sb-dots", timeout=60, workdir="/work")
        try:
            for path in (f"../../../../..{secret_file}", str(secret_file), "/etc/shadow"):
                with pytest.raises(SandboxFilesystemNotFoundError):
                    await sup.open("sb-dots", path, "r")
            handle = await sup.open("sb-dots", "../../tmp/inside.txt", "w")
            await sup.fwrite("sb-dots", handle, b"ok")
            await sup.fclose("sb-dots", handle)
            assert await sup.ls("sb-dots", "/tmp") == ["inside.txt"]
            with pytest.raises(InvalidError):
                await sup.open("sb-dots", "bad\x00path", "r")
        finally:
            await sup.shutdown()

    run(scenario())


def test_special_files_are_refused() -> None:
    """A FIFO or device planted by the sandbox's code cannot hang or misuse file operations."""

    async def scenario() -> None:
        sup = Supervisor()
        await sup.create("sb-fifo", timeout=60)
        try:
            await _output(sup, "sb-fifo", ["mkfifo", "/tmp/fifo"])
            for path in ("/tmp/fifo", "/dev/zero"):
                with pytest.raises(SandboxFilesystemError, match="not a regular file"):
                    await sup.open("sb-fifo", path, "rb")
            handle = await sup.open("sb-fifo", "/tmp/regular", "w")
            await sup.fclose("sb-fifo", handle)
        finally:
            await sup.shutdown()

    run(scenario())


def test_quick_entrypoint_exit_code_is_kept() -> None:
    """An entrypoint that exits at once takes the agent with it; the sandbox still reports the
    entrypoint's exit code, never a termination (the agent's channel closing is not an end)."""

    async def scenario() -> list[tuple[int | None, str]]:
        sup = Supervisor()
        results = []
        for i in range(15):
            await sup.create(f"sb-quick{i}", entrypoint=["sh", "-c", "exit 3"], timeout=60)
            results.append(await sup.wait(f"sb-quick{i}"))
        await sup.shutdown()
        return results

    assert run(scenario()) == [(3, "exited")] * 15


def test_a_new_supervisor_removes_what_a_dead_one_left(tmp_path: Path) -> None:
    left = tmp_path / f"modal-ray-sandboxes-{os.getuid()}" / "ns-node" / "sb-old-x1" / "root"
    left.mkdir(parents=True)
    (left / "data").write_text("from a supervisor that died")
    other = tmp_path / f"modal-ray-sandboxes-{os.getuid()}" / "other-node" / "sb-live-x2"
    other.mkdir(parents=True)
    Supervisor(base_dir=str(tmp_path), owner="ns-node")
    assert not left.exists()
    assert other.exists()  # another supervisor's directory is not touched


def test_refuses_without_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap anywhere
    with pytest.raises(ExecutionError, match=r"bwrap.*MODAL_RAY_SANDBOX_ISOLATION=none"):
        run(Supervisor(base_dir=str(tmp_path)).create("sb-none"))


def test_refuses_when_namespaces_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(ExecutionError, match=r"cannot create namespaces.*ISOLATION=none"):
        run(Supervisor(base_dir=str(tmp_path)).create("sb-fail"))


def test_isolation_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(isolation.ISOLATION_ENV, "bogus")
    with pytest.raises(InvalidError, match="MODAL_RAY_SANDBOX_ISOLATION"):
        isolation.isolation_mode()
    monkeypatch.setenv(isolation.ISOLATION_ENV, "none")
    assert isolation.check_isolation() is None


def test_unisolated_mode_runs_plain_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(isolation.ISOLATION_ENV, "none")

    async def scenario() -> dict[str, Any]:
        sup = Supervisor()
        info = await sup.create("sb-plain", timeout=60)
        code, out, _ = await _output(sup, "sb-plain", ["python", "-c", "print(40 + 2)"])
        await sup.shutdown()
        assert (code, out) == (0, "42\n")
        return info

    assert run(scenario())["isolated"] is False


def test_exec_after_terminate_and_missing_binary() -> None:
    async def scenario() -> None:
        sup = Supervisor()
        await sup.create("sb-bad", timeout=60)
        with pytest.raises(ExecutionError, match="no-such-binary"):
            await sup.exec("sb-bad", ["no-such-binary"])
        await sup.terminate("sb-bad")
        assert await sup.wait("sb-bad") == (137, "terminated")
        with pytest.raises(SandboxTerminatedError):
            await sup.exec("sb-bad", ["true"])

    run(scenario())


def test_output_nobody_reads_is_bounded() -> None:
    """A process writing far more than the buffers hold blocks instead of filling memory."""

    async def scenario() -> None:
        sup = Supervisor()
        await sup.create("sb-flood", timeout=60)
        try:
            # 64 MiB in 64 KiB writes; then a marker file says it finished writing.
            script = (
                "import sys\nb=b'x'*65536\n"
                "for _ in range(1024): sys.stdout.buffer.write(b)\n"
                "sys.stdout.flush(); open('/tmp/done','w').close()\n"
            )
            xid = await sup.exec("sb-flood", ["python", "-c", script])
            assert await sup.exec_wait("sb-flood", xid, timeout=3) is None  # blocked on its pipe
            assert await sup.ls("sb-flood", "/tmp") == []
            got = 0
            while chunk := await sup.read("sb-flood", xid, 1):
                got += len(chunk)
            assert got == 64 * 1024 * 1024
            assert await sup.exec_wait("sb-flood", xid) == 0
        finally:
            await sup.shutdown()

    run(scenario())


def test_open_modes_and_paths() -> None:
    assert open_flags("r")[1:] == (True, False)
    assert open_flags("wb")[1:] == (False, True)
    assert open_flags("a+")[1:] == (True, True)
    for bad in ("", "rw", "q", "rr", "rbt"):
        with pytest.raises(InvalidError):
            open_flags(bad)
    for bad_path in ("", "a\x00b", 3):
        with pytest.raises(InvalidError):
            check_path(bad_path)


def test_exec_on_a_terminal() -> None:
    """`pty`: the process runs on a pseudo-terminal inside the sandbox (its stdin is a tty,
    named under the sandbox's own /dev/pts), its output arrives on stdout, and what is written
    to its stdin is typed into the terminal."""

    async def scenario() -> tuple[str, str, int | None]:
        sup = Supervisor()
        await sup.create("sb-pty", timeout=60)
        try:
            xid = await sup.exec("sb-pty", ["sh", "-c", "tty; stty size"], pty={"rows": 30})
            out = b""
            while chunk := await sup.read("sb-pty", xid, 1):
                out += chunk
            await sup.exec_wait("sb-pty", xid)
            xid = await sup.exec("sb-pty", ["sh", "-c", "read x; echo got-$x"], pty={})
            await sup.write("sb-pty", xid, b"typed\n", eof=True)
            typed = b""
            while chunk := await sup.read("sb-pty", xid, 1):
                typed += chunk
            return out.decode(), typed.decode(), await sup.exec_wait("sb-pty", xid)
        finally:
            await sup.shutdown()

    out, typed, code = run(scenario())
    lines = out.split("\r\n")
    assert lines[0].startswith("/dev/pts/"), out
    assert lines[1] == "30 80", out
    assert "got-typed" in typed
    assert code == 0


def test_agent_starts_only_when_needed() -> None:
    """With an entrypoint, the agent does not run until a request needs it (its Python start
    would compete with the entrypoint's); the first exec starts it."""

    async def scenario() -> tuple[str, str]:
        sup = Supervisor()
        listing = "sleep 1; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <$f; echo; done"
        # The end marker is computed, so that command lines (which hold the script) lack it.
        script = f"{listing}; echo marker-$((20 + 22)); sleep 60"
        await sup.create("sb-lazy", entrypoint=["sh", "-c", script], timeout=60)
        try:
            before = b""
            while b"marker-42" not in before:
                chunk = await sup.read("sb-lazy", ENTRYPOINT, 1)
                assert chunk, before
                before += chunk
            _, after, _ = await _output(
                sup, "sb-lazy", ["sh", "-c", listing.replace("sleep 1;", "")]
            )
            return before.decode(), after
        finally:
            await sup.shutdown()

    def agents(listing: str) -> list[str]:  # processes that are the agent (not its launcher)
        return [
            line
            for line in listing.splitlines()
            if line.split()[:1] and "python" in line.split()[0] and "agent.py" in line
        ]

    before, after = run(scenario())
    assert agents(before) == [], before
    assert len(agents(after)) == 1, after
