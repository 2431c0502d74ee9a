"""Every example program runs through `modal run` on an embedded Ray (smoke tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "embeddings_service.py": [
        "embed('ray') = [3, 114, 97]",
        "dims 3 and 5 live in different containers: True",
        "batched sums: [3, 7, 11, 15]",
        "queue drained: ['a', 'b', 'c']",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    env.update(MODAL_RAY_NUM_CPUS="4", MODAL_RAY_STATE=str(tmp_path / "state"))
    modal_bin = Path(sys.executable).parent / "modal"
    result = subprocess.run(
        [str(modal_bin), "run", str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for line in EXPECTED[name]:
        assert line in result.stdout, result.stdout
