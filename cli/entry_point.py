"""The root `modal` command and `main()`: how errors reach the terminal.

- an exception from the user's code (importing the user's file, a local entrypoint, a remote
  function) prints a traceback of the user's frames, remote frames included, and none of
  modal-ray's own; exit status 1;
- any other error (a modal error about how the command was used, such as a missing file or
  name) prints one line `Error: <message>` on stderr; exit status 1;
- `MODAL_TRACEBACK=1` prints the full traceback instead, in both cases (remote tracebacks are
  chained as the exception's cause);
- usage errors are typer's (exit 2); Ctrl-C exits 130 without a traceback.

Commands of Modal's CLI that are not built yet exist and say so (`unbuilt.py`).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
import typer.main

from modal_ray.errors import format_user_traceback

from . import deploy as deploy_cli
from . import run as run_cli
from . import shell as shell_cli
from .app import app_cli
from .config import config_cli
from .container import container_cli
from .dict import dict_cli
from .environment import environment_cli
from .function import function_cli
from .nfs import nfs_cli
from .profile import profile_cli
from .queue import queue_cli
from .secret import secret_cli
from .server import server_cli
from .token import setup, token_cli
from .utils import warn
from .volume import volume_cli
from .workspace import workspace_cli

entrypoint_cli_typer = typer.Typer(
    name="modal",
    help="Modal is the fastest way to run code in the cloud (here: on your Ray cluster).",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        import modal

        try:
            ours = version("modal-ray")
        except PackageNotFoundError:  # pragma: no cover - source checkout without metadata
            ours = "unknown"
        print(f"modal client version: {modal.__version__} (modal-ray {ours})")
        raise typer.Exit()


@entrypoint_cli_typer.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Show the client version and exit.",
    ),
    profile: str | None = typer.Option(
        None,
        "--profile",
        help="Modal profile to use (modal-ray has none: its cluster is `MODAL_RAY_ADDRESS`).",
    ),
) -> None:
    """Modal is the fastest way to run code in the cloud (here: on your Ray cluster)."""
    if profile is not None:
        warn(
            f"`--profile {profile}` is ignored: modal-ray has no profiles (the cluster comes from"
            " MODAL_RAY_ADDRESS, the environment from `-e` or MODAL_ENVIRONMENT)."
        )


run_cli.register(entrypoint_cli_typer)
deploy_cli.register(entrypoint_cli_typer)
shell_cli.register(entrypoint_cli_typer)
entrypoint_cli_typer.add_typer(app_cli, name="app")
entrypoint_cli_typer.add_typer(container_cli, name="container")
entrypoint_cli_typer.add_typer(dict_cli, name="dict")
entrypoint_cli_typer.add_typer(queue_cli, name="queue")
entrypoint_cli_typer.add_typer(secret_cli, name="secret")
entrypoint_cli_typer.add_typer(volume_cli, name="volume")
entrypoint_cli_typer.add_typer(environment_cli, name="environment")
entrypoint_cli_typer.add_typer(config_cli, name="config")
entrypoint_cli_typer.add_typer(profile_cli, name="profile")
entrypoint_cli_typer.add_typer(token_cli, name="token")
entrypoint_cli_typer.add_typer(workspace_cli, name="workspace")
entrypoint_cli_typer.command("setup")(setup)
entrypoint_cli_typer.add_typer(function_cli, name="function")
entrypoint_cli_typer.add_typer(server_cli, name="server")


@entrypoint_cli_typer.command("dashboard")
def dashboard(
    object_id: str | None = typer.Argument(None, help="An App or Function ID (optional)."),
) -> None:
    """Open the Modal Dashboard in a web browser."""
    from .app import print_dashboard
    from .ops_output import connect

    backend, _ = connect(None, "`modal dashboard`")
    print_dashboard(backend, object_id or "the cluster")


entrypoint_cli_typer.add_typer(nfs_cli, name="nfs", hidden=True)

entrypoint_cli: Any = typer.main.get_command(entrypoint_cli_typer)


def _one_line(exc: BaseException) -> str:
    from modal.exception import Error

    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if isinstance(exc, Error):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> None:
    """The `modal` console script (and `python -m modal`)."""
    from modal_ray import config

    try:
        entrypoint_cli.main(
            args=list(argv) if argv is not None else None, prog_name="modal", standalone_mode=True
        )
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if config.show_traceback():
            traceback.print_exception(exc)
        elif (user_traceback := format_user_traceback(exc)) is not None:
            print(user_traceback, end="", file=sys.stderr, flush=True)
        else:
            print(f"Error: {_one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(1)
