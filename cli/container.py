"""`modal container list|logs|exec|stop` (not built yet).

A container here is a Ray worker process (a task's) or actor (a class's container pool); nothing
maps them to Modal container IDs yet. See `unbuilt.py` for how unbuilt commands behave.
"""

from __future__ import annotations

import typer

from .unbuilt import CONTAINERS, not_built
from .utils import ENV_HELP

container_cli = typer.Typer(
    name="container",
    help="Manage and connect to running containers.",
    no_args_is_help=True,
    add_completion=False,
)


@container_cli.command("list")
def list_(
    app_id: str = typer.Option("", "--app-id", help="List containers of this App only."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """List all containers that are currently running."""
    not_built("container list", CONTAINERS)


@container_cli.command("logs")
def logs(
    container_id: str = typer.Argument(..., help="Container ID."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Stream new log lines."),
    all_: bool = typer.Option(False, "--all", help="Every line since the container started."),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    tail: int | None = typer.Option(None, "-n", "--tail", help="Show the last N lines."),
    search: str | None = typer.Option(None, help="Only lines that contain this text."),
    source: str | None = typer.Option(None, "-s", "--source", help="stdout, stderr or system."),
    timestamps: bool = typer.Option(False, help="Show timestamps for each log line."),
) -> None:
    """Fetch or stream logs for a specific container."""
    not_built("container logs", CONTAINERS)


@container_cli.command(
    "exec", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True}
)
def exec_(
    container_id: str = typer.Argument(..., help="Container ID."),
    command: list[str] = typer.Argument(..., help="The command to run."),
    pty: bool | None = typer.Option(None, "--pty/--no-pty", help="Run the command in a PTY."),
) -> None:
    """Execute a command in a container."""
    not_built("container exec", CONTAINERS)


@container_cli.command("stop")
def stop(
    container_id: str = typer.Argument(..., help="Container ID."),
    graceful: bool = typer.Option(False, help="Let running inputs finish first."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Don't ask for confirmation."),
) -> None:
    """Terminate a running container."""
    not_built("container stop", CONTAINERS)
