"""Ctrl-C during a `.map`: the run ends cleanly, as Modal's does.

A SIGINT is sent to the client process alone (as a notebook's interrupt or a supervisor does; a
terminal's Ctrl-C sends the same signal to the whole process group). The in-flight inputs must be
cancelled, the app stopped, the terminal left tidy (progress bar gone, cursor shown), and nothing
printed but the run's own lines: no `aclose()` RuntimeError, no "Future exception was never
retrieved", no traceback.

Each test starts one embedded Ray (through the client under test).
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import MODAL

# The function records its worker's pid when an input starts, then sleeps far longer than the
# test waits, so an input still running after the client exits was not cancelled.
SLOW_MAP_APP = """
import os
import time
from collections.abc import Callable
from pathlib import Path

import modal

app = modal.App("interrupt-map")
MARKERS = Path({markers!r})


@app.function()
def slow(i: int) -> int:
    (MARKERS / f"{{i}}.pid").write_text(str(os.getpid()))
    time.sleep(600)
    return i


@app.local_entrypoint()
def main() -> None:
    for result in slow.map(range(6)):
        print(result)
"""

SCRIPT_TAIL = """

if __name__ == "__main__":
    import sys

    with modal.enable_output(), app.run():
        try:
            list(slow.map(range(6)))
        except KeyboardInterrupt:
            print("caught KeyboardInterrupt", flush=True)
            interrupted = True
        else:
            interrupted = False
    sys.exit(130 if interrupted else 0)
"""

STRAYS = ("Traceback", "Future exception was never retrieved", "aclose", "RuntimeError", "Error:")
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(cli_env: dict[str, str]) -> dict[str, str]:
    env = dict(cli_env)
    env.pop("NO_COLOR", None)  # a real terminal: the progress bar is live
    env["TERM"] = "xterm"
    return env


def _wait_for_inputs(
    markers: Path, proc: subprocess.Popen[bytes], read: Callable[[float], None], seen: list[bytes]
) -> None:
    """Until at least one input runs on a worker (the map is in flight)."""
    deadline = time.monotonic() + 150
    while not any(markers.glob("*.pid")):
        if proc.poll() is not None or time.monotonic() > deadline:
            read(0.5)
            output = b"".join(seen).decode(errors="replace")
            raise AssertionError(f"no input started (status {proc.poll()}):\n{output[-3000:]}")
        read(0.5)


def _run_on_pty(
    command: list[str], cwd: Path, env: dict[str, str], markers: Path
) -> tuple[int, str]:
    """Start `command` on a pseudo-terminal, SIGINT it once the map runs; (status, output)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks: list[bytes] = []

    def read(timeout: float) -> None:
        ready, _, _ = select.select([leader], [], [], timeout)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the other side closed
                return
            chunks.append(data)

    try:
        _wait_for_inputs(markers, proc, read, chunks)
        read(1.0)
        os.kill(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            read(0.2)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise AssertionError("the client did not exit within 60 s of SIGINT")
        for _ in range(20):  # drain what is left
            before = len(chunks)
            read(0.1)
            if len(chunks) == before:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def _assert_inputs_cancelled(markers: Path) -> None:
    """Every worker that ran an input is gone once the client has exited."""
    pids = [int(p.read_text()) for p in markers.glob("*.pid")]
    assert pids
    deadline = time.monotonic() + 30
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        time.sleep(0.2)
    assert not alive, f"workers still running inputs after the client exited: {alive}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is a dead process its parent has not reaped yet.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _assert_tidy(output: str) -> None:
    for stray in STRAYS:
        assert stray not in output, f"{stray!r} in output:\n{output[-3000:]}"
    assert re.search(r"App \S+ stopped\.", output), output[-3000:]
    # The live progress bar hid the cursor; it must be shown again, and the output must end on a
    # fresh line so that the shell prompt does not run into the bar.
    assert HIDE_CURSOR in output, output[-3000:]
    assert output.rfind(SHOW_CURSOR) > output.rfind(HIDE_CURSOR), repr(output[-400:])
    assert _ANSI.sub("", output).endswith("\n"), repr(output[-200:])


def test_sigint_during_map_under_modal_run(cli_env: dict[str, str], tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "slow_map.py").write_text(SLOW_MAP_APP.format(markers=str(markers)))
    status, output = _run_on_pty(
        [str(MODAL), "run", "slow_map.py"], tmp_path, _env(cli_env), markers
    )
    assert status == 130, output[-3000:]
    _assert_tidy(output)
    _assert_inputs_cancelled(markers)


def test_sigint_during_map_in_a_script(cli_env: dict[str, str], tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    source = SLOW_MAP_APP.format(markers=str(markers)) + textwrap.dedent(SCRIPT_TAIL)
    (tmp_path / "slow_script.py").write_text(source)
    status, output = _run_on_pty(
        [sys.executable, "slow_script.py"], tmp_path, _env(cli_env), markers
    )
    assert "caught KeyboardInterrupt" in output, output[-3000:]
    assert status == 130, output[-3000:]
    _assert_tidy(output)
    _assert_inputs_cancelled(markers)
