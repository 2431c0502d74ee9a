"""The root `modal` command and `main()`: how errors reach the terminal.

- a Modal error, or an exception from the user's code, prints one line `Error: <message>` on
  stderr and exits 1; `MODAL_TRACEBACK=1` prints the full traceback instead (remote tracebacks
  are chained as the exception's cause);
- usage errors are typer's (exit 2); Ctrl-C exits 130 without a traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
import typer.main

from . import run as run_cli
from .dict import dict_cli
from .nfs import nfs_cli
from .queue import queue_cli
from .secret import secret_cli
from .volume import volume_cli

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
) -> None:
    """Modal is the fastest way to run code in the cloud (here: on your Ray cluster)."""


run_cli.register(entrypoint_cli_typer)
entrypoint_cli_typer.add_typer(dict_cli, name="dict")
entrypoint_cli_typer.add_typer(queue_cli, name="queue")
entrypoint_cli_typer.add_typer(secret_cli, name="secret")
entrypoint_cli_typer.add_typer(volume_cli, name="volume")
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
        else:
            print(f"Error: {_one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(1)
