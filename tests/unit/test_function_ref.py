"""How a worker finds the user's code (`modal_ray.runtime.worker.FunctionRef`), without Ray."""

from __future__ import annotations

import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from modal.exception import InvalidError
from modal_ray.runtime import worker
from modal_ray.runtime.worker import FunctionRef


@pytest.fixture
def clean_imports() -> Iterator[None]:
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    worker._entrypoints.clear()


def test_a_module_is_found_under_the_root_the_caller_imported_it_from(
    tmp_path: Path, clean_imports: None
) -> None:
    package = tmp_path / "later_added" / "refpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text("def work():\n    return 'found'\n")
    sys.path.append(str(tmp_path / "later_added"))
    import refpkg.jobs

    ref = FunctionRef.locate(refpkg.jobs, "work")
    assert ref == FunctionRef("refpkg.jobs", "work", str(tmp_path / "later_added"))
    # A worker whose path lacks the folder: it is appended, and the import succeeds.
    sys.path.remove(str(tmp_path / "later_added"))
    for name in ("refpkg", "refpkg.jobs"):
        del sys.modules[name]
    assert ref.resolve()() == "found"
    assert sys.path[-1] == str(tmp_path / "later_added")
    # Without `include_source`, the caller's folder is not offered.
    assert FunctionRef.locate(refpkg.jobs, "work", include_source=False) == FunctionRef(
        "refpkg.jobs", "work"
    )


def test_a_missing_dependency_of_the_module_is_not_hidden(
    tmp_path: Path, clean_imports: None
) -> None:
    (tmp_path / "needs_dep.py").write_text("import surely_not_installed_dep\n")
    ref = FunctionRef("needs_dep", "f", str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="surely_not_installed_dep"):
        ref.resolve()


SCRIPT = textwrap.dedent(
    """
    import modal_ray.runtime.worker as w

    IMPORTING = w.importing_user_code()
    MAIN_RAN = False


    def handler():
        return __name__


    if __name__ == "__main__":
        MAIN_RAN = True
    """
)


def test_a_script_is_imported_under_its_stem_without_its_main_block(
    tmp_path: Path, clean_imports: None
) -> None:
    script = tmp_path / "my_script.py"
    script.write_text(SCRIPT)
    ref = FunctionRef("my_script", "handler", str(tmp_path), str(script), entrypoint=True)
    handler = ref.resolve()
    assert handler() == "my_script"
    module = sys.modules["my_script"]
    assert module.IMPORTING is True
    assert module.MAIN_RAN is False
    assert worker.importing_user_code() is False
    # A function of that module, called on from this worker, is found the same way.
    again = FunctionRef.locate(module, "handler")
    assert again is not None
    assert again.file == str(script)
    assert again.entrypoint


def test_calls_while_a_worker_imports_user_code_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker.refuse_calls_during_import("Function 'f'")  # not importing: nothing happens
    monkeypatch.setattr(worker, "_importing", 1)
    with pytest.raises(InvalidError, match="__main__"):
        worker.refuse_calls_during_import("Function 'f'")


GUARDS = textwrap.dedent(
    """
    import modal

    x = 1
    if __name__ == "__main__":
        run()
    if "__main__" == __name__:
        run()
    if __name__ != "__main__":
        pass
    """
)


def test_main_guards_are_found(tmp_path: Path) -> None:
    script = tmp_path / "guards.py"
    script.write_text(GUARDS)
    assert worker._main_guards(str(script)) == ((5, 6), (7, 8))


def test_code_without_a_file_travels_by_value() -> None:
    notebook = types.ModuleType("__main__")  # a notebook, `python -c`: no __file__
    assert FunctionRef.locate(notebook, "f") is None
    assert FunctionRef.locate(sys.modules[__name__], "outer.<locals>.inner") is None
