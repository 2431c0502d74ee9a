"""The notebook path: a real `.ipynb`, executed headless, starts Ray itself and runs an app.

`examples/notebook.ipynb` calls `ray.init(...)`, defines an `@app.function` in a cell (so it
travels by value) and runs `.remote` and `.map` inside `with app.run():`. The kernel is a separate
process with its own private Ray (`address="local"`), independent of this session's Ray.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"
KERNEL_NAME = "modal-ray-test"


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec that runs ipykernel in this interpreter (the venv), whatever is on PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "modal-ray test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # no jupyter_core migration warning
    return KERNEL_NAME


def _kernel_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS"):
        env.pop(key, None)  # the notebook starts its own Ray
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_AUTH_MODE"] = "disabled"
    env["MODAL_RAY_STATE"] = str(tmp_path / "state")
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def _text(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_notebook_runs_remote_and_map_headless(tmp_path: Path, kernel_name: str) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=180,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=_kernel_env(tmp_path))

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    by_id = {c.get("id"): c for c in nb.cells}
    assert "True" in _text(by_id["ray-init"])  # ray.is_initialized() after the user's own init
    lines = _text(by_id["check-results"]).splitlines()
    assert lines[:2] == ["49", str([x * x for x in range(10)])]
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
