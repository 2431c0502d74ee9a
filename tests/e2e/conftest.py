"""End-to-end CLI tests run `modal` as a subprocess; each run that executes code starts its own
embedded Ray, so tests keep the number of such runs small."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MODAL = Path(sys.executable).parent / "modal"
MODAL_RAY = Path(sys.executable).parent / "modal-ray"


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


def _session_pids(leader: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[3]) == leader and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="session")
def cluster_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One head of `modal-ray cluster start` per session, with a private state store, shared by the
    tests of deployed apps (each uses its own app names); stopped by pid at the end, and every
    process of it must be gone."""
    state = tmp_path_factory.mktemp("deploy-state")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS", "MODAL_TRACEBACK", "MODAL_ENVIRONMENT")
        and not k.startswith("RAY_AUTH")
    }
    env.update(MODAL_RAY_STATE=str(state), NO_COLOR="1", COLUMNS="200", PYTHONUNBUFFERED="1")
    started = subprocess.run(
        [str(MODAL_RAY), "cluster", "start", "--num-cpus", "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stderr[-3000:]
    exports = [x for x in started.stdout.splitlines() if x.startswith("export MODAL_RAY_ADDRESS=")]
    assert exports, started.stdout
    leader = json.loads((state / "cluster" / "head.json").read_text())["pid"]
    env["MODAL_RAY_ADDRESS"] = exports[0].split("=", 1)[1]
    try:
        yield env
    finally:
        stopped = subprocess.run(
            [str(MODAL_RAY), "cluster", "stop"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stopped.returncode == 0, stopped.stderr
        assert _session_pids(leader) == []  # every process of the head is gone
