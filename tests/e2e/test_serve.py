"""`modal serve`: serves an app's endpoints, reloads after an edit (new code, same URL), and
stops everything on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from .conftest import MODAL, modal_cli

APP = """
import modal

app = modal.App("serve-e2e")


@app.function(cpu=0.1)
@modal.fastapi_endpoint()
def version() -> str:
    return "{version}"
"""

URL = re.compile(r"Created web function version => (http://127\.0\.0\.1:\d+)")


def _wait_for(predicate, what: str, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _get(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=10)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def test_serve_reloads_on_edit_keeps_the_url_and_stops_on_ctrl_c(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    app_file = tmp_path / "app.py"
    app_file.write_text(APP.format(version="v1"))
    proc = subprocess.Popen(
        [str(MODAL), "serve", str(app_file)],
        cwd=tmp_path,
        env=cli_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C goes to the command only, as from a terminal
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:

        def urls() -> list[str]:
            return [m.group(1) for line in list(lines) for m in [URL.search(line)] if m]

        _wait_for(lambda: len(urls()) >= 1, "the first URL")
        url = urls()[0]
        _wait_for(lambda: _get(url) == "v1", "v1 to be served")

        app_file.write_text(APP.format(version="v2"))
        _wait_for(lambda: len(urls()) >= 2, "the URL after the reload")
        assert urls()[1] == url  # the endpoint kept its URL
        _wait_for(lambda: _get(url) == "v2", "v2 to be served")
        assert any("reloading" in line for line in lines)

        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(120) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(10)
    # Nothing serves the endpoint any more.
    try:
        httpx.get(url, timeout=5)
        raise AssertionError("the endpoint still answers after Ctrl-C")
    except httpx.ConnectError:
        pass
    assert "Stopped serving" in "".join(lines)


def test_serve_of_a_missing_file_is_one_error(cli_env: dict[str, str]) -> None:
    result = modal_cli("serve", "--timeout", "5", "no_such_app.py", env=cli_env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert lines == ["Error: `modal serve`: no such file 'no_such_app.py'."], result.stderr
    assert sys.executable
