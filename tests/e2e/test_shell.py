"""`modal shell`: a command in a fresh sandbox (on the CLI's own embedded Ray), its output and
exit status relayed; `modal container exec` refuses ids that are not sandboxes."""

from __future__ import annotations

from pathlib import Path

from .conftest import modal_cli


def test_shell_cmd_prints_and_exits(cli_env: dict[str, str], tmp_path: Path) -> None:
    app = tmp_path / "shell_app.py"
    app.write_text(
        "import modal\n"
        "app = modal.App('shell-e2e')\n"
        "image = modal.Image.debian_slim().env({'GREETING': 'from-the-image'})\n"
        "@app.function(image=image)\n"
        "def func():\n"
        "    pass\n"
    )
    done = modal_cli(
        "shell",
        f"{app}::func",
        "--cmd",
        'echo hi; echo "$GREETING"; tty || true; echo err >&2; exit 3',
        env=cli_env,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[:2] == ["hi", "from-the-image"]
    assert "not a tty" in done.stdout  # stdin is not a terminal here: no pty
    assert "err" in done.stderr

    plain = modal_cli("shell", "--cmd", "echo hi", env=cli_env, timeout=300)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert plain.stdout == "hi\n"


def test_container_exec_refuses_other_ids(cli_env: dict[str, str]) -> None:
    done = modal_cli("container", "exec", "ta-123", "echo", "hi", env=cli_env)
    assert done.returncode == 1
    assert "sandbox ids (`sb-...`" in done.stderr
