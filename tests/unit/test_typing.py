"""Users' editors see their own types through `.remote`, `.map`, `.spawn`, `.aio` and friends.

Runs mypy (strict, the project's configuration) on `tests/typing/check_types.py`, whose
`assert_type` lines pin what each call returns and whose `# type: ignore[...]` lines must stay
errors (the file turns `warn-unused-ignores` on, so a call that regresses to `Any` fails here).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ROOT / "tests" / "typing" / "check_types.py"


def test_user_code_sees_its_own_types() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--no-incremental",
            # Only this file's errors: the packages themselves are checked by the `mypy` run.
            "--follow-imports=silent",
            str(CHECKED.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = proc.stdout + proc.stderr
    assert " error:" not in report, report
    assert proc.returncode == 0, report
    assert "Success: no issues found" in report, report
