"""The sandbox example runs as a plain `python` script (no `modal run`), on an embedded Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sandbox_example_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    env.update(MODAL_RAY_NUM_CPUS="4", MODAL_RAY_STATE=str(tmp_path / "state"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sandbox_run_code.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for line in (
        "sandbox: sum: 45",
        "sandbox: home: []",
        "sandbox: network: blocked",
        "exit code: 0",
    ):
        assert line in result.stdout, result.stdout
