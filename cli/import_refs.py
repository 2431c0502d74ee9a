"""FUNC_REF / APP_REF handling for `modal run` (and later `deploy`, `serve`, `shell`).

A reference is `file.py`, `file.py::name`, `file.py::app_var.name`, or a module path with `-m`.
Resolution follows Modal:

- files are imported as a module named after the file's stem (never `__main__`), with the file's
  directory first on `sys.path`, so that functions travel to workers by reference and
  `if __name__ == "__main__":` blocks do not run;
- `-m pkg.mod` imports with the current directory first on `sys.path`, as `python -m` does;
- a dotted name without `-m` is still accepted as a module, with a deprecation warning (Modal
  0.73.58 made module mode explicit);
- without `::name`, a single local entrypoint is used; with none, a single function; otherwise the
  user names one (ENT-04).

Invariant: nothing here starts Ray. Importing user code may fail with any exception; callers let it
propagate to the CLI's error printer.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import modal
from modal.exception import InvalidError, NotFoundError
from modal_ray.runtime.worker import exec_file_as_module

from .utils import warn


@dataclass(frozen=True, slots=True)
class ImportRef:
    """A parsed FUNC_REF: what to import and which object in it."""

    file_or_module: str
    use_module_mode: bool
    object_path: str = ""  # the part after `::`, empty when not given

    def describe(self) -> str:
        return self.file_or_module + (f"::{self.object_path}" if self.object_path else "")


@dataclass(frozen=True, slots=True)
class Runnable:
    """Something `modal run` can start: a local entrypoint, or a Function run remotely."""

    kind: Literal["entrypoint", "function"]
    tag: str
    app: Any  # modal.App
    app_var: str | None  # the module global that holds the app, when there is one
    obj: Any  # modal.app.LocalEntrypoint | modal.Function

    @property
    def raw_f(self) -> Callable[..., Any]:
        if self.kind == "entrypoint":
            return self.obj.raw_f  # type: ignore[no-any-return]
        return self.obj.get_raw_f()  # type: ignore[no-any-return]

    @property
    def ref_name(self) -> str:
        return f"{self.app_var}.{self.tag}" if self.app_var else self.tag


def parse_import_ref(ref: str, *, use_module_mode: bool = False) -> ImportRef:
    """Split `file_or_module::object_path` and decide between file and module mode."""
    ref = ref.strip()
    target, sep, object_path = ref.partition("::")
    if not target or (sep and not object_path):
        raise InvalidError(
            f"Invalid reference {ref!r}: expected `file.py`, `file.py::name` or `-m pkg.module`."
        )
    if use_module_mode:
        if target.endswith(".py") or "/" in target or os.sep in target:
            raise InvalidError(
                f"`-m` takes a Python module path such as `pkg.module`, not the file {target!r};"
                f" drop `-m` to run a file."
            )
        return ImportRef(target, True, object_path)
    looks_like_file = (
        target.endswith(".py") or "/" in target or os.sep in target or os.path.exists(target)
    )
    if not looks_like_file:
        warn(
            f"Module paths need the `-m` flag (since Modal 0.73.58): use `modal run -m {ref}`."
            " Running it as a module."
        )
        return ImportRef(target, True, object_path)
    return ImportRef(target, False, object_path)


def _insert_path(path: str) -> None:
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)


def import_file(path: str | os.PathLike[str]) -> ModuleType:
    """Import a Python file as the module named after its stem (not `__main__`).

    The file's real directory goes first on `sys.path`: the user's sibling imports resolve as they
    would for `python file.py`, and Ray passes that directory on to workers (it adds the directory
    of `sys.argv[0]` when that directory is on the driver's `sys.path`).
    """
    file = Path(os.path.realpath(path))
    if not file.exists():
        raise NotFoundError(f"File not found: {os.fspath(path)}")
    if file.is_dir():
        raise InvalidError(f"{os.fspath(path)} is a directory; `modal run` takes a Python file.")
    name = file.stem
    if not name.isidentifier():
        raise InvalidError(
            f"Cannot import {file.name}: {name!r} is not a valid Python module name. Rename the"
            " file (letters, digits and '_')."
        )
    existing = sys.modules.get(name)
    if existing is not None:
        existing_file = getattr(existing, "__file__", None)
        if existing_file and os.path.realpath(existing_file) == str(file):
            return existing
        raise InvalidError(
            f"Cannot import {file.name} as module {name!r}: a module of that name is already"
            f" imported ({existing_file or 'built in'}). Rename the file."
        )
    _insert_path(str(file.parent))
    module = exec_file_as_module(name, file)
    if module is None:
        raise InvalidError(f"Cannot import {file}: not a Python source file.")
    return module


def import_module(name: str) -> ModuleType:
    """Import `pkg.mod` with the current directory first on `sys.path`, as `python -m` does."""
    _insert_path(os.getcwd())
    return importlib.import_module(name)


def import_ref(ref: ImportRef) -> ModuleType:
    if ref.use_module_mode:
        return import_module(ref.file_or_module)
    return import_file(ref.file_or_module)


def script_path(ref: ImportRef, module: ModuleType | None = None) -> str:
    """What `sys.argv[0]` should be while the user's code runs (as for `python file.py`)."""
    if not ref.use_module_mode:
        return os.path.realpath(ref.file_or_module)
    file = getattr(module, "__file__", None) if module is not None else None
    return os.path.realpath(file) if file else ref.file_or_module


# -- finding what to run -----------------------------------------------------------------------


def find_apps(module: ModuleType) -> list[tuple[str, Any]]:
    """`(variable name, App)` for each distinct App among the module's globals, in order."""
    seen: set[int] = set()
    apps: list[tuple[str, Any]] = []
    for var, value in vars(module).items():
        if isinstance(value, modal.App) and id(value) not in seen:
            seen.add(id(value))
            apps.append((var, value))
    return apps


def _runnables(app_var: str | None, app: Any) -> list[Runnable]:
    web = set(app.registered_web_endpoints)
    out = [
        Runnable("entrypoint", tag, app, app_var, entry)
        for tag, entry in app.registered_entrypoints.items()
    ]
    out += [
        Runnable("function", tag, app, app_var, fn)
        for tag, fn in app.registered_functions.items()
        if tag not in web
    ]
    # `Cls.method`: a method of a parameterless instance (parameters take their defaults).
    for tag, cls in app.registered_classes.items():
        for method in getattr(cls, "_method_opts", {}):
            out.append(
                Runnable("function", f"{tag}.{method}", app, app_var, _MethodRef(cls, method))
            )
    return out


class _MethodRef:
    """`Cls.method` as something `modal run` can call: signature without `self`, `.remote`."""

    def __init__(self, cls: Any, method: str) -> None:
        self._cls = cls
        self._method = method

    def _handle(self) -> Any:
        return getattr(self._cls(), self._method)

    def get_raw_f(self) -> Callable[..., Any]:
        raw = getattr(self._cls._user_cls, self._method)
        raw = getattr(raw, "raw_f", raw)
        return functools.partial(raw, None)  # binds `self`, so the signature lists real options

    @property
    def is_generator(self) -> bool:
        return bool(self._handle().is_generator)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._handle().remote(*args, **kwargs)

    def remote_gen(self, *args: Any, **kwargs: Any) -> Any:
        return self._handle().remote_gen(*args, **kwargs)


def _choose_default(runnables: list[Runnable], where: str, ref: ImportRef) -> Runnable:
    entrypoints = [r for r in runnables if r.kind == "entrypoint"]
    functions = [r for r in runnables if r.kind == "function"]
    if len(entrypoints) == 1:
        return entrypoints[0]
    if not entrypoints and len(functions) == 1:
        return functions[0]
    if not runnables:
        raise InvalidError(
            f"{where} has no local entrypoint or function to run. Decorate one with"
            " `@app.local_entrypoint()` or `@app.function()`."
        )
    names = ", ".join(r.ref_name for r in runnables)
    example = (entrypoints or functions)[0].ref_name
    raise InvalidError(
        f"{where} has {_count(entrypoints, 'local entrypoint')} and"
        f" {_count(functions, 'function')}; name the one to run, e.g."
        f" `modal run {ref.file_or_module}::{example}`. Candidates: {names}."
    )


def _count(items: list[Runnable], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def resolve_runnable(module: ModuleType, ref: ImportRef) -> Runnable:
    """Pick the entrypoint or function that `ref` names in `module` (ENT-04)."""
    apps = find_apps(module)
    source = ref.file_or_module
    if not apps:
        raise InvalidError(
            f"No modal.App found in {source}. Define one at module level, e.g."
            " `app = modal.App()`, and decorate functions with `@app.function()`."
        )
    all_runnables = [r for var, app in apps for r in _runnables(var, app)]
    path = ref.object_path
    if not path:
        return _choose_default(all_runnables, source, ref)

    app_by_var = dict(apps)
    if path in app_by_var:
        return _choose_default(_runnables(path, app_by_var[path]), f"App `{path}`", ref)

    head, dot, tail = path.partition(".")
    if dot and head in app_by_var:
        found = _lookup(_runnables(head, app_by_var[head]), tail)
        if found is None and "." in tail:
            raise _class_method_error(path)
        if found is None:
            raise _not_found(path, source, _runnables(head, app_by_var[head]))
        return found

    found = _lookup(all_runnables, path)
    if found is not None:
        return found
    # A module global that is an entrypoint or function under another name (`name=`).
    value = getattr(module, path, None)
    for r in all_runnables:
        if value is not None and r.obj is value:
            return r
    if dot and hasattr(module, head):
        raise _class_method_error(path)
    if path in {tag for _, app in apps for tag in app.registered_web_endpoints}:
        raise InvalidError(
            f"`{path}` is a web endpoint; serve it with `modal serve`, not `modal run`."
        )
    raise _not_found(path, source, all_runnables)


def _lookup(runnables: list[Runnable], tag: str) -> Runnable | None:
    # Entrypoints first: Modal prefers a local entrypoint over a function of the same name.
    for kind in ("entrypoint", "function"):
        for r in runnables:
            if r.kind == kind and r.tag == tag:
                return r
    return None


def _not_found(path: str, source: str, candidates: list[Runnable]) -> NotFoundError:
    names = ", ".join(r.ref_name for r in candidates) or "none"
    return NotFoundError(
        f"No local entrypoint or function named `{path}` in {source}. Candidates: {names}."
    )


def _class_method_error(path: str) -> NotFoundError:
    return NotFoundError(
        f"`{path}` looks like a `Cls.method` reference, but no `@app.cls` class of the app has"
        " such a `@modal.method`."
    )
