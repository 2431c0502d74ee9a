"""How the user's code reaches the embedded Ray's workers, run as a user runs it.

- A module imported through a `sys.path` entry added at run time (pytest's rootdir insertion for a
  test package, a script's `sys.path.insert`) is found by the workers, as Modal's include_source
  ships the package that defines the app.
- A script run as `python app.py` is imported by the workers as a module (never as `__main__`),
  as Modal imports the entrypoint file in the container: globals bound under `image.imports()`
  exist there, and the `if __name__ == "__main__":` block does not run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.e2e.conftest import modal_cli

PYTEST = Path(sys.executable).parent / "pytest"

TEST_MODULE = textwrap.dedent(
    """
    import modal

    app = modal.App("pkgtests")


    @app.function()
    def where() -> str:
        return __file__


    def test_remote_from_a_test_package():
        with app.run():
            assert where.remote() == __file__
    """
)


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_functions_of_a_pytest_test_package(cli_env: dict[str, str], tmp_path: Path) -> None:
    package = tmp_path / "project" / "pkgtests"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "test_remote.py").write_text(TEST_MODULE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # pytest puts `project/` (the folder above the package) on sys.path at collection time,
    # after nothing else: the workers' own path knows neither it nor the package.
    result = _run([str(PYTEST), str(package), "-q", "-p", "no:cacheprovider"], elsewhere, cli_env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout


LIBRARY = textwrap.dedent(
    """
    import modal

    app = modal.App("library")


    @app.function()
    def square(x: int) -> int:
        return x * x
    """
)

DRIVER = textwrap.dedent(
    """
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from jobs_library import app, square

    if __name__ == "__main__":
        with app.run():
            print("SQUARE", square.remote(7))
    """
)


def test_a_module_found_through_sys_path_insert(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "jobs_library.py").write_text(LIBRARY)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "driver.py").write_text(DRIVER)
    result = _run([sys.executable, "bin/driver.py"], tmp_path, cli_env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "SQUARE 49" in result.stdout


# `image_only` exists only in the image: the image's PYTHONPATH points at a folder the driver's
# Python never sees, so the import fails locally (and `image.imports()` swallows that there).
SCRIPT = textwrap.dedent(
    """
    import dataclasses
    import os
    import sys

    import modal

    HERE = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(HERE, "imports.log"), "a") as log:
        log.write(__name__ + "\\n")

    image = modal.Image.debian_slim().env({"PYTHONPATH": os.path.join(HERE, "image_site")})
    app = modal.App("imports-in-a-script", image=image)

    with image.imports():
        from image_only import answer


    @dataclasses.dataclass
    class Pair:
        left: int
        right: int


    @app.function()
    def compute(pair: Pair) -> Pair:
        return Pair(answer(), pair.left + pair.right)


    @app.cls(cpu=0.1)
    class Model:
        @modal.method()
        def predict(self, x: int) -> int:
            return answer() + x


    def report() -> None:
        pair = compute.remote(Pair(1, 2))
        print("COMPUTE", pair.left, pair.right)
        print("PREDICT", Model().predict.remote(1))


    @app.local_entrypoint()
    def main() -> None:
        report()


    if __name__ == "__main__":
        with open(os.path.join(HERE, "main-block.log"), "a") as log:
            log.write("ran\\n")
        with app.run():
            report()
    """
)


def _script_dir(tmp_path: Path) -> Path:
    (tmp_path / "image_site").mkdir()
    (tmp_path / "image_site" / "image_only.py").write_text("def answer():\n    return 42\n")
    (tmp_path / "app.py").write_text(SCRIPT)
    return tmp_path


def test_image_imports_in_a_script_run_with_python(cli_env: dict[str, str], tmp_path: Path) -> None:
    folder = _script_dir(tmp_path)
    result = _run([sys.executable, "app.py"], folder, cli_env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "COMPUTE 42 3" in result.stdout
    assert "PREDICT 43" in result.stdout
    # The `if __name__ == "__main__":` block ran once, in the driver only; the workers imported
    # the file as the module `app`.
    assert (folder / "main-block.log").read_text() == "ran\n"
    imported_as = set((folder / "imports.log").read_text().split())
    assert imported_as == {"__main__", "app"}


def test_image_imports_under_modal_run(cli_env: dict[str, str], tmp_path: Path) -> None:
    folder = _script_dir(tmp_path)
    result = modal_cli("run", "app.py", env=cli_env, cwd=folder)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "COMPUTE 42 3" in result.stdout
    assert "PREDICT 43" in result.stdout
    assert not (folder / "main-block.log").exists()


UNGUARDED = textwrap.dedent(
    """
    import modal

    app = modal.App("unguarded")


    @app.function()
    def double(x: int) -> int:
        return 2 * x


    # No `if __name__ == "__main__":` guard: importing this file would start the app again, so
    # its functions keep travelling by value.
    with app.run():
        print("DOUBLE", double.remote(21))
    """
)


def test_a_script_that_runs_its_app_at_top_level(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "unguarded.py").write_text(UNGUARDED)
    result = _run([sys.executable, "unguarded.py"], tmp_path, cli_env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "DOUBLE 42" in result.stdout
