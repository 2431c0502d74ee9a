"""`modal container list|logs|exec|stop`.

A container of a function with container semantics or of a class is a Serve replica actor of one
of its app's pools; its id is `ta-<Ray actor id>` (see `modal_ray.backends.ray.ops`). `list`
shows the running ones (deployed apps' and running `modal run`s'), `logs` prints what its worker
process wrote, and `stop` ends it (its pool starts another if it still wants one). A plain
function's inputs run as Ray tasks on shared workers, which are no containers of their own: see
their output with `modal app logs`.

`exec` runs a command in a running sandbox (`sb-...`, the id `modal.Sandbox.object_id` reports),
on the same process machinery as `Sandbox.exec` (see `shell.run_attached`: a TTY where this
terminal is one); function containers are Ray actors without a shell, so `exec` refuses them.
"""

from __future__ import annotations

import typer

from modal.exception import InvalidError

from . import ops_output
from .shell import connect, run_attached, want_pty
from .utils import ENV_HELP, display_table

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
    backend, environment = ops_output.connect(env, "`modal container list`")
    names = {
        a["app_id"]: a["name"]
        for a in backend.registry_call_sync(environment, "list_apps", ())
        if a["state"] == "deployed"
    }
    rows = [
        [
            c["container_id"],
            names.get(c["app_id"], "(modal run)"),
            c["app_id"],
            c["deployment"],
            f"{c['node_ip']} ({c['node'][:12]})",
            c["pid"],
            ops_output.started(c["started_at"]),
        ]
        for c in backend.containers(environment, app_id or None)
    ]
    columns = ["Container ID", "App Name", "App ID", "Function", "Node", "PID", "Start Time"]
    display_table(columns, rows, json_output=json, title="Active Containers")


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
    from modal_ray import config

    ops_output.refuse_unrecorded(since, until, timestamps)
    backend, _ = ops_output.connect(None, "`modal container logs`")
    found = [c for c in backend.containers("", None) if c["container_id"] == container_id]
    if not found:
        raise ops_output.no_container(container_id, config.environment_name())
    match = {"actor_prefixes": [""], "nodes": [found[0]["node"]], "pids": [found[0]["pid"]]}
    # `--all`: every line since the container started (the default shows them all too, as
    # Ray's files hold them; without `--tail` nothing is cut).
    ops_output.print_output(backend, match, follow=follow, tail=tail, search=search, source=source)


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
    if graceful:
        from modal.exception import UnimplementedError

        raise UnimplementedError(
            "`--graceful`: Ray ends an actor at once. Stop it without `--graceful` (inputs it was"
            " running fail and are retried per the function's retry policy), or scale the pool"
            " down with `modal function autoscaler update`."
        )
    if not yes:
        import typer as typer_module

        try:
            confirmed = typer_module.confirm(f"Stop container {container_id}?", default=False)
        except typer_module.Abort:
            raise InvalidError(
                f"Not stopping container {container_id!r}: no confirmation was given. Pass"
                " `--yes` to stop it without confirmation."
            ) from None
        if not confirmed:
            raise typer_module.Abort()
    backend, _ = ops_output.connect(None, "`modal container stop`")
    stopped = backend.stop_container("", container_id)
    print(f"Stopped container {container_id} (pid {stopped['pid']} on {stopped['node_ip']}).")
