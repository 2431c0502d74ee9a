"""`modal run` and `modal secret` as a user runs them: real subprocesses, real embedded Ray.

Seven tests start a Ray each (about 5 s apiece); the rest stop before any Ray is needed.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from tests.e2e.conftest import EXAMPLES, modal_cli

# Lines that Ray forwards from workers start with "(function pid=...)".
_WORKER_LINE = re.compile(r"^\(\S+ pid=\d+")


def own_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if not _WORKER_LINE.match(line)]


# -- no Ray needed -----------------------------------------------------------------------------


def test_help_pages(cli_env: dict[str, str]) -> None:
    root = modal_cli("--help", env=cli_env)
    assert root.returncode == 0, root.stderr
    assert "run" in root.stdout
    assert "secret" in root.stdout

    run_help = modal_cli("run", "--help", env=cli_env)
    assert run_help.returncode == 0, run_help.stderr
    for option in ("--write-result", "--quiet", "--detach", "--interactive", "--env", "-m"):
        assert option in run_help.stdout

    entry_help = modal_cli("run", str(EXAMPLES / "cli_args.py"), "--help", env=cli_env)
    assert entry_help.returncode == 0, entry_help.stderr
    for option in ("--count", "--ratio", "--name", "--shout", "--no-shout", "--repeat-greeting"):
        assert option in entry_help.stdout

    version = modal_cli("--version", env=cli_env)
    assert version.returncode == 0
    assert version.stdout.startswith("modal client version:")


def test_usage_error_exits_2(cli_env: dict[str, str]) -> None:
    result = modal_cli("run", str(EXAMPLES / "cli_args.py"), "--ratio", "2", env=cli_env)
    assert result.returncode == 2
    assert "Missing option '--count'" in result.stderr
    assert "Initialized" not in result.stderr  # no app was started


def test_ambiguous_reference_is_one_error_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(
        textwrap.dedent(
            """
            import modal
            app = modal.App()

            @app.function()
            def f(): ...

            @app.function()
            def g(): ...
            """
        )
    )
    result = modal_cli("run", "two.py", env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: two.py has 0 local entrypoints and 2 functions; name the one to run, e.g."
        " `modal run two.py::app.f`. Candidates: app.f, app.g."
    ]


# -- real runs ---------------------------------------------------------------------------------


def test_hello_world(cli_env: dict[str, str]) -> None:
    result = modal_cli("run", "examples/hello_world.py", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert own_lines(result.stdout) == [
        "hello 1000",  # printed by f.local, in this process
        "f.local(1000) = 1000000",
        "f.remote(1000) = 1000000",
        "inside a function, modal.is_local() is False",
        "sum of squares: 2470",
    ]
    assert "✓ Initialized app" in result.stderr
    assert "stopped" in result.stderr


def test_entrypoint_arguments(cli_env: dict[str, str]) -> None:
    result = modal_cli(
        "run", "-i", "examples/cli_args.py",
        "--count", "3", "--ratio", "0.25", "--name", "Ray", "--shout",
        "--day", "2024-05-06", "--repeat_greeting", "2",
        env=cli_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert own_lines(result.stdout) == [
        "HELLO RAY!",
        "HELLO RAY!",
        "count=3 ratio=0.25 name='Ray' shout=True",
        "day=2024-05-06",
        "square(count) = 9",
    ]
    assert "Warning: interactive mode" in result.stderr


def test_function_ref_with_varargs_and_write_result(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    result = modal_cli(
        "run", "-q", "--write-result", str(out), "examples/cli_args.py::app.echo",
        "hello", "--to=world", "-x",
        env=cli_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "hello --to=world -x"
    assert "Initialized" not in result.stderr  # --quiet


def test_module_mode_under_python_m(cli_env: dict[str, str], tmp_path: Path) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("def twice(x):\n    return 2 * x\n")
    (pkg / "app_mod.py").write_text(
        textwrap.dedent(
            """
            import sys

            import modal

            from . import helper

            app = modal.App("module-mode")

            @app.function()
            def double(x: int) -> int:
                return helper.twice(x)

            @app.local_entrypoint()
            def main(x: int = 1):
                argv0 = sys.argv[0].endswith("app_mod.py")
                print(f"argv0={argv0} double={double.remote(x)} name={__name__}")
            """
        )
    )
    result = modal_cli(
        "run", "--timestamps", "-m", "mypkg.app_mod::app.main", "--x", "5",
        env=cli_env, cwd=tmp_path, python_m=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "argv0=" in line]
    assert len(lines) == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\S* argv0=True double=10 name=mypkg\.app_mod",
        lines[0],
    ), lines[0]


SECRET_APP = """
import os

import modal

app = modal.App("e2e-secrets")


@app.function(secrets=[modal.Secret.from_name("e2e-greeting")])
def read_secret() -> str:
    return os.environ["GREETING"]


@app.function()
def boom(message: str = "boom") -> None:
    raise ValueError(message)
"""


def test_secrets_and_remote_errors(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "secret_app.py").write_text(SECRET_APP)

    created = modal_cli(
        "secret", "create", "e2e-greeting", "GREETING=hello from a secret", env=cli_env
    )
    assert created.returncode == 0, created.stderr
    listed = modal_cli("secret", "list", "--json", env=cli_env)
    assert [r["Name"] for r in json.loads(listed.stdout)] == ["e2e-greeting"]

    # A function that uses the secret sees its value.
    out = tmp_path / "value.txt"
    used = modal_cli(
        "run", "-q", "-w", str(out), "secret_app.py::read_secret", env=cli_env, cwd=tmp_path
    )
    assert used.returncode == 0, used.stderr
    assert out.read_text() == "hello from a secret"

    # A remote exception: the user's frames (on the worker), exit status 1; modal-ray's own frames
    # only on request.
    failed = modal_cli(
        "run", "-q", "secret_app.py::boom", "--message", "bad thing", env=cli_env, cwd=tmp_path
    )
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-2:] == [
        "    raise ValueError(message)",
        "ValueError: bad thing",
    ]
    assert "Remote traceback" not in failed.stderr
    verbose = modal_cli(
        "run", "-q", "secret_app.py::boom",
        env={**cli_env, "MODAL_TRACEBACK": "1"}, cwd=tmp_path,
    )  # fmt: skip
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "Remote traceback" in verbose.stderr
    assert "raise ValueError(message)" in verbose.stderr
    assert verbose.stderr.rstrip().endswith("ValueError: boom")

    # Deleting needs confirmation; with stdin closed it refuses instead of hanging.
    refused = modal_cli("secret", "delete", "e2e-greeting", env=cli_env)
    assert refused.returncode == 1
    assert "--yes" in refused.stderr
    deleted = modal_cli("secret", "delete", "e2e-greeting", "-y", env=cli_env)
    assert deleted.returncode == 0, deleted.stderr
    listed = modal_cli("secret", "list", "--json", env=cli_env)
    assert json.loads(listed.stdout) == []
