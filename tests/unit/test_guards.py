"""Packaging guards: every package is listed, `import modal` stays light, layout names stay
private."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject() -> None:
    tool = _pyproject()["tool"]["setuptools"]
    packages = set(tool["packages"])
    mapping = tool["package-dir"]
    found = set()
    for name, folder in [("", "compat"), *((k, v) for k, v in mapping.items() if k)]:
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            parts = [p for p in rel.parts if p]
            if "__pycache__" in parts:
                continue
            dotted = ".".join([name, *parts]) if name else ".".join(parts)
            if dotted:
                found.add(dotted)
    assert found <= packages, f"packages missing from pyproject: {sorted(found - packages)}"
    assert packages <= found, (
        f"pyproject lists packages that do not exist: {sorted(packages - found)}"
    )


def _run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    # -P: do not put the working directory on sys.path; run from / so the repo folders are not
    # importable.
    return subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, cwd="/", timeout=60
    )


def test_import_modal_does_not_import_ray() -> None:
    result = _run_isolated(
        "import sys, modal\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))\n"
        "print(modal.App.__module__, modal.Function.__module__, modal.exception.Error.__module__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["modal.app", "modal.functions", "modal.exception"]


@pytest.mark.parametrize("name", ["cli", "backends", "volumes", "serve_adapters", "compat"])
def test_generic_folder_names_are_not_importable(name: str) -> None:
    result = _run_isolated(f"import {name}")
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr


def test_only_backends_import_ray() -> None:
    offenders = []
    for folder in ("compat", "cli", "serve_adapters", "volumes"):
        for path in (ROOT / folder).rglob("*.py"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                if stripped.startswith(("import ray", "from ray")):
                    offenders.append(f"{path.relative_to(ROOT)}: {stripped}")
    assert not offenders, offenders


def test_modal_all_is_sorted_and_complete() -> None:
    import modal

    assert list(modal.__all__) == sorted(modal.__all__)
    for name in modal.__all__:
        assert hasattr(modal, name), name
    with pytest.raises(AttributeError, match=r"modal\.App"):
        modal.Stub  # noqa: B018


@pytest.mark.parametrize("module", ["modal", "modal.cli"])
def test_python_dash_m_runs_the_cli(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-P", "-m", module, "--help"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout
    assert "volume" in result.stdout
