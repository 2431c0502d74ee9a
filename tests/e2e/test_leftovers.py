"""What a run leaves behind: worker output after `App ... stopped.`, helper processes that
outlive the run, files in $TMPDIR, and Serve handles that restart Ray after the user shut it
down."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

from .conftest import MODAL

APP = textwrap.dedent(
    """
    import modal

    image = modal.Image.debian_slim().add_local_file("data.txt", "DEST/data.txt")
    app = modal.App("leftovers")

    @app.function(cpu=0.1, image=image)
    def shout(x):
        print("from-function", x, open("DEST/data.txt").read())
        return x

    @app.cls(cpu=0.1)
    class Pool:
        n: int = modal.parameter()

        @modal.method()
        def ping(self):
            return self.n

        @modal.exit()
        def bye(self):
            print("from-exit")

    @app.local_entrypoint()
    def main():
        assert shout.remote(1) == 1
        assert Pool(n=1).ping.remote() == 1
        assert Pool(n=2).ping.remote() == 2
    """
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    env.pop("RAY_DEDUP_LOGS", None)  # Ray's default: repeated lines are held back, then flushed
    env.update(
        MODAL_RAY_STATE=str(tmp_path / "state"),
        MODAL_RAY_NUM_CPUS="4",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    return env


def _session_processes(sid: int) -> list[psutil.Process]:
    alive = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return alive


def test_worker_output_comes_before_stopped_and_nothing_outlives_the_run(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "made-by-the-image"
    (tmp_path / "app.py").write_text(APP.replace("DEST", str(dest)))
    (tmp_path / "data.txt").write_text("payload")
    # A short private TMPDIR (Ray's socket paths must stay under 108 bytes).
    tmpdir = Path(tempfile.mkdtemp(prefix="mr-"))
    proc = subprocess.Popen(
        [str(MODAL), "run", "app.py"],
        cwd=tmp_path,
        env={**_env(tmp_path), "TMPDIR": str(tmpdir)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out, _ = proc.communicate(timeout=240)
    sid = proc.pid  # the run's own session: every process it started, however re-parented
    left: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 3.0
        while (left := _session_processes(sid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        described = [" ".join(p.cmdline())[:120] for p in left]
        files = sorted(str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*"))
    finally:
        for p in _session_processes(sid):
            os.kill(p.pid, signal.SIGKILL)
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert proc.returncode == 0, out[-3000:]
    assert described == []
    assert files == []  # the embedded Ray's folders, the host-files ledger: all gone
    assert "payload" in out
    assert not dest.exists()  # what the image put on this machine was removed with the run
    stopped = out.index("stopped.")
    assert 0 <= out.find("from-function") < stopped, out
    assert out.count("from-exit") == 2, out
    assert out.rindex("from-exit") < stopped, out


USER_RAY = textwrap.dedent(
    """
    import time
    import ray
    import modal

    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="ERROR")
    app = modal.App("user-ray")

    @app.cls(cpu=0.1)
    class Pool:
        @modal.method()
        def ping(self):
            return "pong"

    with app.run():
        assert Pool().ping.remote() == "pong"
    ray.shutdown()
    time.sleep(15)  # Serve's handle metrics push every few seconds while a router lives
    print("INITIALIZED", ray.is_initialized())
    """
)


def test_a_finished_app_does_not_restart_ray_after_the_user_shuts_it_down(
    tmp_path: Path,
) -> None:
    """The notebook flow: the user's own `ray.init`, an app with a class, `ray.shutdown()`."""
    (tmp_path / "nb.py").write_text(USER_RAY)
    result = subprocess.run(
        [sys.executable, "nb.py"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "INITIALIZED False" in result.stdout
    assert "SIGTERM handler" not in result.stderr, result.stderr[-3000:]
    assert "Started a local Ray instance" not in result.stderr
