"""End-to-end CLI tests run `modal` as a subprocess; each run that executes code starts its own
embedded Ray, so tests keep the number of such runs small."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MODAL = Path(sys.executable).parent / "modal"


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """A private state store, a small embedded Ray, and never a foreign cluster."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS", "MODAL_TRACEBACK", "MODAL_ENVIRONMENT")
    }
    state = tmp_path / "modal-ray-state"
    state.mkdir()
    env.update(
        MODAL_RAY_STATE=str(state),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_DEDUP_LOGS="0",
        MODAL_RAY_NUM_CPUS="4",
        NO_COLOR="1",
        COLUMNS="200",
        PYTHONUNBUFFERED="1",
    )
    return env


def modal_cli(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    python_m: bool = False,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """`modal ARGS...` (or `python -m modal ARGS...`) with stdin closed."""
    command = [sys.executable, "-m", "modal", *args] if python_m else [str(MODAL), *args]
    return subprocess.run(
        command,
        cwd=cwd or ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
