"""Source discovery for `modal.Image` builder calls, on the driver: requirements files (with `-r`
includes), pyproject.toml dependency lists (extras and dependency groups), and the local folder
or file of a Python module that `add_local_python_source` ships through Ray's `py_modules`.

Runs only where the builder is called locally (`is_local()`); nothing here runs in a worker.
Missing files raise `FileNotFoundError`, unusable content `InvalidError` / `ModuleNotMountable`.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modal_ray.exception import InvalidError, ModuleNotMountable
from modal_ray.warn import warn_once


def _read_requirements(path: str | Path, method: str) -> list[str]:
    """Requirement lines of a requirements file, with `-r` includes inlined (option lines kept)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"`Image.{method}`: requirements file {str(file)!r} not found.")
    out: list[str] = []
    for raw in re.sub(r"\\\r?\n", "", file.read_text()).splitlines():
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        include = re.match(r"^(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S+)$", line)
        if not line:
            continue
        if include and include.group(1) in ("-r", "--requirement"):
            out += _read_requirements(file.parent / include.group(2), method)
        elif include:
            warn_once(
                f"image.constraints.{line}",
                f"`Image.{method}`: constraints files ({line!r}) "
                "are not supported on Ray; the line is ignored.",
            )
        else:
            out.append(line)
    return out


def _load_toml(path: Path, method: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError as exc:
            raise InvalidError(
                f"`Image.{method}` needs Python 3.11+ or `tomli` installed."
            ) from exc
    if not path.is_file():
        raise FileNotFoundError(f"`Image.{method}`: {str(path)!r} not found.")
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _pyproject_dependencies(
    path: Path, method: str, extras: Sequence[str], groups: Sequence[str] = ()
) -> list[str]:
    data = _load_toml(path, method)
    project = data.get("project", {})
    if "dependencies" not in project:
        raise InvalidError(
            f"`Image.{method}`: {str(path)!r} has no [project] dependencies. For "
            "[tool.poetry.dependencies] use `Image.poetry_install_from_file()`."
        )
    deps = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    dep_groups = data.get("dependency-groups", {})
    for name in extras:
        if name not in optional:
            warn_once(
                f"image.extra.{name}",
                f"`Image.{method}`: no optional dependency group "
                f"{name!r} in {str(path)!r}; it is skipped.",
            )
        deps += optional.get(name, [])

    def group(name: str, seen: tuple[str, ...]) -> list[str]:
        if name not in dep_groups or name in seen:
            raise InvalidError(f"`Image.{method}`: unknown or cyclic dependency group {name!r}.")
        items = dep_groups[name]
        return [
            d
            for item in items
            for d in (
                [item] if isinstance(item, str) else group(item["include-group"], (*seen, name))
            )
        ]

    for name in groups:
        deps += group(name, ())
    return deps


def _module_path(name: str) -> str:
    """Local directory (package) or file (module) that Ray's `py_modules` should ship."""
    if not isinstance(name, str) or not name:
        raise InvalidError(f"`Image.add_local_python_source` expects module names, got {name!r}.")
    top = name.split(".")[0]  # py_modules ships top-level packages
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as exc:
        raise ModuleNotMountable(f"Module {name!r} cannot be found locally: {exc}") from exc
    if spec is None:
        raise ModuleNotMountable(
            f"`Image.add_local_python_source`: module {name!r} was not found locally; check the "
            "name and that it is importable from where the app is launched."
        )
    locations = list(spec.submodule_search_locations or [])
    if len(locations) == 1:
        return str(Path(locations[0]).absolute())
    if locations:
        raise ModuleNotMountable(
            f"Namespace package {top!r} spans several directories: {locations}."
        )
    if spec.origin and spec.origin.endswith(".py"):
        return str(Path(spec.origin).absolute())
    raise ModuleNotMountable(
        f"Module {name!r} is not pure-Python source ({spec.origin}); install it on the cluster "
        "with `pip_install` instead."
    )
