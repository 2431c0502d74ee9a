"""`modal dict ...` and `modal queue ...` against objects a Python program created.

One subprocess (with its own embedded Ray) creates a Dict and a Queue and exits; the CLI commands
then run as subprocesses against the same state store. With no cluster configured they read the
store in-process, so none of them starts a Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import modal_cli

SETUP = textwrap.dedent(
    """
    import modal

    d = modal.Dict.from_name("cli-dict", create_if_missing=True)
    d.update({"greeting": "hello", "n": 42, 7: "seven"})
    q = modal.Queue.from_name("cli-queue", create_if_missing=True)
    q.put_many(["first", "second", "third"])
    q.put("elsewhere", partition="p1")
    print("READY", flush=True)
    """
)


def _registered() -> bool:
    from modal_ray.cli.entry_point import entrypoint_cli_typer

    groups = entrypoint_cli_typer.registered_groups
    names = {g.name or getattr(g.typer_instance.info, "name", None) for g in groups}
    return {"dict", "queue"} <= names


# Until `dict` and `queue` are registered on the root app, run them through `main()` with the
# groups added (same error handling and exit codes as the console script).
_RUNNER = textwrap.dedent(
    """
    import sys, typer.main
    from modal_ray.cli import entry_point
    from modal_ray.cli.dict import dict_cli
    from modal_ray.cli.queue import queue_cli
    entry_point.entrypoint_cli_typer.add_typer(dict_cli, name="dict")
    entry_point.entrypoint_cli_typer.add_typer(queue_cli, name="queue")
    entry_point.entrypoint_cli = typer.main.get_command(entry_point.entrypoint_cli_typer)
    entry_point.main(sys.argv[1:])
    """
)


def modal_(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    if _registered() and stdin is None:
        return modal_cli(*args, env=env, timeout=120)
    if _registered():
        command = [str(Path(sys.executable).parent / "modal"), *args]
    else:
        command = [sys.executable, "-c", _RUNNER, *args]
    return subprocess.run(
        command,
        env=env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One state store for the module, filled once by a Python program (one Ray start)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS", "MODAL_TRACEBACK", "MODAL_ENVIRONMENT")
    }
    env.update(
        MODAL_RAY_STATE=str(tmp_path_factory.mktemp("modal-ray-state")),
        MODAL_RAY_NUM_CPUS="2",
        RAY_USAGE_STATS_ENABLED="0",
        NO_COLOR="1",
        COLUMNS="200",
    )
    setup = subprocess.run(
        [sys.executable, "-c", SETUP],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "READY" in setup.stdout
    return env


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_dict_commands(store: dict[str, str]) -> None:
    env = store
    listed = json.loads(ok(modal_("dict", "list", "--json", env=env)))
    assert [row["Name"] for row in listed] == ["cli-dict"]
    assert listed[0]["Created at"]
    assert ok(modal_("dict", "get", "cli-dict", "greeting", env=env)).strip() == "hello"
    missing = modal_("dict", "get", "cli-dict", "nope", env=env)
    assert missing.returncode == 1
    assert "nope" in missing.stderr

    items = json.loads(ok(modal_("dict", "items", "cli-dict", "--json", "--all", env=env)))
    assert {(r["Key"], r["Value"]) for r in items} == {
        ("greeting", "hello"),
        ("n", 42),
        (7, "seven"),
    }
    assert len(json.loads(ok(modal_("dict", "items", "cli-dict", "2", "--json", env=env)))) == 2
    table = ok(modal_("dict", "items", "cli-dict", "--repr", env=env))
    assert "'hello'" in table

    ok(modal_("dict", "create", "made-by-cli", env=env))
    ok(modal_("dict", "create", "made-by-cli", env=env))  # a no-op when it exists
    names = {r["Name"] for r in json.loads(ok(modal_("dict", "list", "--json", env=env)))}
    assert names == {"cli-dict", "made-by-cli"}

    # Confirmation: refused without an answer, declined with "n", done with "y" or --yes.
    refused = modal_("dict", "clear", "cli-dict", env=env, stdin="n\n")
    assert refused.returncode == 1
    assert len(json.loads(ok(modal_("dict", "items", "cli-dict", "--json", env=env)))) == 3
    ok(modal_("dict", "clear", "cli-dict", env=env, stdin="y\n"))
    assert json.loads(ok(modal_("dict", "items", "cli-dict", "--json", env=env))) == []

    ok(modal_("dict", "delete", "made-by-cli", "--yes", env=env))
    gone = modal_("dict", "get", "made-by-cli", "x", env=env)
    assert gone.returncode == 1
    assert "not found" in gone.stderr
    assert "nothing to do" in ok(
        modal_("dict", "delete", "made-by-cli", "--allow-missing", env=env)
    )


def test_queue_commands(store: dict[str, str]) -> None:
    env = store
    listed = json.loads(ok(modal_("queue", "list", "--json", env=env)))
    assert [(r["Name"], r["Partitions"], r["Total size"]) for r in listed] == [("cli-queue", 2, 4)]
    assert ok(modal_("queue", "len", "cli-queue", env=env)).strip() == "3"
    assert ok(modal_("queue", "len", "cli-queue", "-p", "p1", env=env)).strip() == "1"
    assert ok(modal_("queue", "len", "cli-queue", "--total", env=env)).strip() == "4"
    assert ok(modal_("queue", "peek", "cli-queue", env=env)).split() == ["first"]
    assert ok(modal_("queue", "peek", "cli-queue", "5", env=env)).split() == [
        "first",
        "second",
        "third",
    ]
    assert ok(modal_("queue", "peek", "cli-queue", "-p", "p1", env=env)).split() == ["elsewhere"]
    # peek removed nothing; clear one partition, then all.
    ok(modal_("queue", "clear", "cli-queue", "-p", "p1", "--yes", env=env))
    assert ok(modal_("queue", "len", "cli-queue", "--total", env=env)).strip() == "3"
    ok(modal_("queue", "clear", "cli-queue", "--all", env=env, stdin="y\n"))
    assert ok(modal_("queue", "len", "cli-queue", "--total", env=env)).strip() == "0"

    ok(modal_("queue", "create", "q2", env=env))
    assert {r["Name"] for r in json.loads(ok(modal_("queue", "list", "--json", env=env)))} == {
        "cli-queue",
        "q2",
    }
    declined = modal_("queue", "delete", "q2", env=env, stdin="n\n")
    assert declined.returncode == 1
    ok(modal_("queue", "delete", "q2", env=env, stdin="y\n"))
    missing = modal_("queue", "len", "q2", env=env)
    assert missing.returncode == 1
    assert "not found" in missing.stderr.lower()
    # Data written by the CLI is visible to Python, and vice versa (same store).
    assert ok(modal_("queue", "delete", "cli-queue", "-y", env=env))
    assert json.loads(ok(modal_("queue", "list", "--json", env=env))) == []
