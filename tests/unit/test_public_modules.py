"""`import modal` alone makes each public submodule an attribute of `modal`, as Modal's own package
does (its `__init__` imports them, directly or through the modules it imports): programs write
`modal.io_streams.StreamWriter` or `modal.container_process.ContainerProcess` in annotations
after a bare `import modal`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `modal.cli` is the command line's package: Modal does not import it on `import modal` either.
NOT_ON_IMPORT = {"cli"}


def public_submodules() -> list[str]:
    folder = ROOT / "compat" / "modal"
    names = {p.stem for p in folder.glob("*.py")} | {
        p.parent.name for p in folder.glob("*/__init__.py")
    }
    return sorted(n for n in names if not n.startswith("_") and n not in NOT_ON_IMPORT)


def test_public_submodules_are_attributes_after_import_modal() -> None:
    names = public_submodules()
    assert "io_streams" in names
    assert "container_process" in names
    code = (
        "import sys, modal\n"
        f"missing = [n for n in {names!r} if not hasattr(modal, n)]\n"
        "assert not missing, missing\n"
        "assert 'ray' not in sys.modules, 'import modal imported ray'\n"
        "print(modal.io_streams.StreamWriter.__name__,"
        " modal.container_process.ContainerProcess.__name__)\n"
    )
    # -P and cwd=/: the installed `modal`, not the repository's folders.
    result = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, cwd="/", timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["StreamWriter", "ContainerProcess"]
