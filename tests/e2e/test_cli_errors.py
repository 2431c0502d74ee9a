"""What `modal` prints when something fails, as a user sees it.

- An exception from the user's code (local or remote) prints a traceback of the user's frames,
  remote frames included (file and line), and none of modal-ray's own frames; exit status 1.
- A mistake in how the command was used prints one `Error: ...` line; exit status 1.
- Commands of Modal's CLI that modal-ray has not built yet exist, take Modal's options, and say
  so in one line; exit status 1 (never click's "No such command", exit 2).

Two tests start a Ray each; the rest stop before any Ray is needed.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import modal_cli

# A frame of modal-ray itself or of the CLI framework: never shown unless MODAL_TRACEBACK=1.
INTERNAL_FRAMES = re.compile(r"/(modal_ray|modal|cli|compat|backends|typer|click|ray)/\S+\.py\"")

ERRORS_APP = textwrap.dedent(
    """
    import modal

    app = modal.App("e2e-errors")


    @app.function()
    def lookup(d: dict) -> int:
        return d["missing_key"]


    @app.function()
    def inner() -> None:
        try:
            {}["k"]
        except KeyError as exc:
            raise RuntimeError("inner failed") from exc


    @app.function()
    def outer() -> None:
        inner.remote()


    @app.local_entrypoint()
    def main() -> None:
        print("calling lookup")
        lookup.remote({})
    """
)


def _frame(path: Path, line: int, name: str) -> str:
    return f'  File "{path}", line {line}, in {name}'


def test_remote_error_shows_local_and_remote_user_frames(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    app = tmp_path / "errors_app.py"
    app.write_text(ERRORS_APP)
    result = modal_cli("run", "-q", "errors_app.py", env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    # (Only the traceback: a loaded machine can add Ray's own warnings around it.)
    start = lines.index("Traceback (most recent call last):")
    assert lines[start : start + 7] == [
        "Traceback (most recent call last):",
        _frame(app, 28, "main"),
        "    lookup.remote({})",
        _frame(app, 9, "lookup"),
        '    return d["missing_key"]',
        "           ~^^^^^^^^^^^^^^^",
        "KeyError: 'missing_key'",
    ], result.stderr
    assert not INTERNAL_FRAMES.search(result.stderr), result.stderr
    assert "Remote traceback" not in result.stderr
    # The whole traceback, modal-ray's frames included, on request.
    verbose = modal_cli(
        "run", "-q", "errors_app.py", env={**cli_env, "MODAL_TRACEBACK": "1"}, cwd=tmp_path
    )
    assert verbose.returncode == 1
    assert INTERNAL_FRAMES.search(verbose.stderr), verbose.stderr
    assert 'return d["missing_key"]' in verbose.stderr
    assert verbose.stderr.rstrip().endswith("KeyError: 'missing_key'")


def test_nested_remote_error_keeps_its_chain(cli_env: dict[str, str], tmp_path: Path) -> None:
    app = tmp_path / "errors_app.py"
    app.write_text(ERRORS_APP)
    result = modal_cli("run", "-q", "errors_app.py::outer", env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    err = result.stderr
    assert not INTERNAL_FRAMES.search(err), err
    lines = err.splitlines()
    # The cause first (in `inner`, on a worker), then the error it led to: `outer` calling
    # `inner.remote()` on another worker, and `inner` raising.
    start = lines.index("Traceback (most recent call last):")
    cause = lines.index("KeyError: 'k'")
    assert lines[start : cause + 1] == [
        "Traceback (most recent call last):",
        _frame(app, 15, "inner"),
        '    {}["k"]',
        "    ~~^^^^^",
        "KeyError: 'k'",
    ], err
    assert lines[cause + 1 : cause + 10] == [
        "",
        "The above exception was the direct cause of the following exception:",
        "",
        "Traceback (most recent call last):",
        _frame(app, 22, "outer"),
        "    inner.remote()",
        _frame(app, 17, "inner"),
        '    raise RuntimeError("inner failed") from exc',
        "RuntimeError: inner failed",
    ], err


# -- commands not built yet ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["app", "stats", "--json", "ap-123"],
        ["function", "calls", "app.f"],
        ["server", "deploy", "--image", "nginx"],
        ["environment", "roles", "list", "main"],
    ],
    ids=lambda args: " ".join(a for a in args if not a.startswith("-"))[:40],
)
def test_unbuilt_commands_say_so(cli_env: dict[str, str], args: list[str]) -> None:
    result = modal_cli(*args, env=cli_env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    assert "not built yet in modal-ray" in lines[0], lines
    assert "No such command" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", "app.py"],
        ["deploy", "--name", "x", "-e", "dev", "--tag", "v1", "--strategy", "rolling", "app.py"],
        ["app", "list", "--json"],
        ["app", "stop", "-y", "ap-123"],
        ["app", "history", "my-app"],
        ["app", "rollback", "my-app", "v1"],
        ["app", "logs", "ap-123"],
        ["app", "dashboard", "my-app"],
        ["container", "list", "--json"],
        ["container", "logs", "ta-1"],
        ["container", "stop", "-y", "ta-1"],
    ],
    ids=lambda args: " ".join(a for a in args if not a.startswith("-"))[:40],
)
def test_deployed_app_commands_need_a_cluster(cli_env: dict[str, str], args: list[str]) -> None:
    result = modal_cli(*args, env=cli_env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    assert "`modal-ray cluster start`" in lines[0], lines


def test_unbuilt_commands_have_modal_options(cli_env: dict[str, str]) -> None:
    root = modal_cli("--help", env=cli_env)
    for command in ("deploy", "serve", "shell", "app", "container"):
        assert re.search(rf"│ {command} ", root.stdout), root.stdout
    deploy = modal_cli("deploy", "--help", env=cli_env)
    assert deploy.returncode == 0
    for option in ("--name", "--env", "--stream-logs", "--tag", "-m", "--timestamps", "--strategy"):
        assert option in deploy.stdout, deploy.stdout
    app_help = modal_cli("app", "--help", env=cli_env)
    for command in ("list", "stop", "logs", "history", "rollback", "dashboard"):
        assert re.search(rf"│ {command} ", app_help.stdout), app_help.stdout
    # A wrong option is still a usage error (exit 2), as for any command.
    wrong = modal_cli("deploy", "--no-such-option", "app.py", env=cli_env)
    assert wrong.returncode == 2


def test_profile_is_accepted_at_the_root(cli_env: dict[str, str]) -> None:
    result = modal_cli("--profile", "work", "secret", "list", "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert "--profile" in result.stderr  # one warning: profiles do not apply here
    assert len(result.stderr.splitlines()) == 1, result.stderr
