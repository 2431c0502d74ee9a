"""Packaging guards: every package is listed, `import modal` stays light, layout names stay
private."""

from __future__ import annotations

import ast
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


# -- layers point one way (issue 9): `modal` re-exports the core, the core never imports `modal` --


def _py_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in `tree`, nested ones included; `from a
    import b` yields `a.b`, since `b` may be a module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_core_and_backend_import_nothing_from_the_modal_package() -> None:
    offenders = []
    for path in _py_files("compat/modal_ray", "backends", "volumes", "serve_adapters"):
        for line, name in _imported_modules(ast.parse(path.read_text())):
            if name == "modal" or name.startswith("modal."):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("public", "core", "names"),
    [
        (
            "modal.types",
            "modal_ray.types",
            ["AppInfo", "AppStats", "FunctionInfo", "FunctionStats", "SecretInfo"],
        ),
        ("modal.call_graph", "modal_ray.call_graph", ["InputInfo", "InputStatus"]),
    ],
)
def test_public_records_are_the_core_classes_under_their_modal_names(
    public: str, core: str, names: list[str]
) -> None:
    import importlib

    import cloudpickle

    public_module = importlib.import_module(public)
    core_module = importlib.import_module(core)
    for name in names:
        cls = getattr(core_module, name)
        assert getattr(public_module, name) is cls
        assert cls.__module__ == public
        # By reference (module and name only), not by value (a cloudpickle class skeleton).
        data = cloudpickle.dumps(cls)
        assert public.encode() in data
        assert b"cloudpickle" not in data, f"{name} is pickled by value"
        assert cloudpickle.loads(data) is cls


def test_containers_load_the_homes_of_core_classes() -> None:
    # A process that never imported `modal` (a container) ships core classes by value, which
    # breaks `except`/`isinstance` in the caller, until it loads their public homes.
    result = _run_isolated(
        "import sys, cloudpickle\n"
        "from modal_ray import homes\n"
        "from modal_ray.call_graph import InputStatus\n"
        "from modal_ray.exception import NotFoundError\n"
        "from modal_ray.types import AppInfo\n"
        "classes = (NotFoundError, InputStatus, AppInfo)\n"
        "assert 'modal' not in sys.modules\n"
        "print(*(b'cloudpickle' in cloudpickle.dumps(c) for c in classes))\n"
        "homes.load()\n"
        "print(*(b'cloudpickle' in cloudpickle.dumps(c) for c in classes))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["True True True", "False False False"]


# What `volumes/` may import from the rest of modal_ray: exceptions, warnings, settings (config) and
# the host-file ledger. Mount specs should come through a small protocol, not the core objects.
VOLUMES_MAY_IMPORT = {
    "modal_ray.config",
    "modal_ray.exception",
    "modal_ray.host_files",
    "modal_ray.settings",
    "modal_ray.warn",
}


def _volumes_imports_outside_allowed() -> list[str]:
    offenders = []
    for path in _py_files("volumes"):
        for line, name in _imported_modules(ast.parse(path.read_text())):
            if not name.startswith("modal_ray.") or name.startswith("modal_ray.volumes."):
                continue
            if not any(name == ok or name.startswith(ok + ".") for ok in VOLUMES_MAY_IMPORT):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    return offenders


def test_volumes_import_no_core_object() -> None:
    offenders = _volumes_imports_outside_allowed()
    assert not offenders, offenders


def _private_app_reads(source: str) -> list[str]:
    """`app._x`, `self._app._x`, `owner_app._x`: reads of a private attribute through a name that
    denotes an App (`app` or ending in `_app`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        if not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        base = node.value
        base_name = (
            base.id
            if isinstance(base, ast.Name)
            else base.attr
            if isinstance(base, ast.Attribute)
            else ""
        )
        if base_name == "app" or base_name.endswith("_app"):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_private_app_read_detector() -> None:
    source = (
        "def f(app, self, cls, parent_app):\n"
        "    return (app._app_id, self._app._environment, parent_app._volumes,\n"
        "            app.name, app.__class__, cls._app, self._tag)\n"
    )
    assert [read.split(": ")[1] for read in _private_app_reads(source)] == [
        "app._app_id",
        "self._app._environment",
        "parent_app._volumes",
    ]


def test_no_module_but_app_py_reads_app_internals() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{read}"
        for path in _py_files("compat/modal_ray")
        if path != ROOT / "compat/modal_ray/app.py"
        for read in _private_app_reads(path.read_text())
    ]
    assert not offenders, offenders


def _volumes_module_graph(top_level_only: bool) -> dict[str, set[str]]:
    """volumes/ module -> the volumes/ modules it imports (`from . import x`, `from .x import`)."""
    graph: dict[str, set[str]] = {}
    for path in _py_files("volumes"):
        name = path.stem
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        deps: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "modal_ray.volumes."
            ):
                deps.add((node.module or "").split(".")[2])
        graph[name] = deps - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_volumes_has_no_import_cycles() -> None:
    # Counting imports inside functions too: a lazy import that closes a circle is still one.
    graph = _volumes_module_graph(top_level_only=False)
    assert set(graph) >= {"mounts", "protocol", "store", "workcopy"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
