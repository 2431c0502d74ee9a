"""The sandbox example runs as a plain `python` script (no `modal run`), on an embedded Ray, and
leaves nothing behind in $TMPDIR (the embedded Ray's folders, the sandbox roots)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sandbox_example_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    # A short private TMPDIR (Ray's socket paths must stay under 108 bytes).
    tmpdir = Path(tempfile.mkdtemp(prefix="mr-"))
    env.update(MODAL_RAY_NUM_CPUS="4", MODAL_RAY_STATE=str(tmp_path / "state"), TMPDIR=str(tmpdir))
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "sandbox_run_code.py")],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=tmp_path,
        )
        left = sorted(str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*"))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert left == [], left
    for line in (
        "sandbox: sum: 45",
        "sandbox: home: []",
        "sandbox: network: blocked",
        "exit code: 0",
    ):
        assert line in result.stdout, result.stdout
