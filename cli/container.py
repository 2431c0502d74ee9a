"""`modal container list|logs|exec|stop`.

`exec` runs a command in a running sandbox (`sb-...`, the id `modal.Sandbox.object_id` reports),
on the same process machinery as `Sandbox.exec` (see `shell.run_attached`: a TTY where this
terminal is one). A function's container is a Ray worker process (a task's) or actor (a class's
container pool); nothing maps those to Modal container IDs yet, so `exec` refuses them, and
`list`, `logs` and `stop` are not built (see `unbuilt.py` for how unbuilt commands behave).
"""

from __future__ import annotations

import typer

from modal.exception import InvalidError

from .shell import connect, run_attached, want_pty
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
    import modal

    if not container_id.startswith("sb-"):
        raise InvalidError(
            f"{container_id!r} is not a container `modal container exec` can reach: it accepts"
            " sandbox ids (`sb-...`, see `modal.Sandbox.object_id`). A function's containers are"
            " Ray workers without such ids; for a shell with a function's image, use"
            " `modal shell app.py::func`."
        )
    connect(None)
    sandbox = modal.Sandbox.from_id(container_id)
    raise typer.Exit(run_attached(sandbox, list(command), want_pty(pty)))


@container_cli.command("stop")
def stop(
    container_id: str = typer.Argument(..., help="Container ID."),
    graceful: bool = typer.Option(False, help="Let running inputs finish first."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Don't ask for confirmation."),
) -> None:
    """Terminate a running container."""
    not_built("container stop", CONTAINERS)
