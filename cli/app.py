"""`modal app list|stop` (deployed apps, from the environment's registry) and
`info|stats|logs|dashboard|history|rollback|rollover|promote` (not built yet).

`list` shows the deployed apps of the environment (running ones of `modal run` live only in
their process); `stop` stops a deployed app: lookups no longer find it and its containers end.
See `unbuilt.py` for how unbuilt commands behave.
"""

from __future__ import annotations

import typer

from .unbuilt import DEPLOYED_APPS, RAY_TOOLS, Strategy, not_built
from .utils import ENV_HELP, display_table

app_cli = typer.Typer(
    name="app",
    help="Manage deployed and running Apps.",
    no_args_is_help=True,
    add_completion=False,
)

APP_ID_HELP = "App name or ID."


@app_cli.command("list")
def list_(
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    json: bool = typer.Option(False, "--json"),
    limit: int = typer.Option(0, help="Show at most this many apps (0: all)."),
) -> None:
    """List Apps that are running, deployed or recently stopped."""
    import datetime

    from modal_ray.deployment import list_apps
    from modal_ray.synchronizer import run_sync

    apps = run_sync(list_apps(env), "app list")
    if limit:
        apps = apps[-limit:]
    rows = [
        [
            a["app_id"],
            a["name"],
            a["state"],
            a["objects"],
            a["version"],
            datetime.datetime.fromtimestamp(a["created_at"]).isoformat(" ", "seconds"),
        ]
        for a in apps
    ]
    columns = ["App ID", "Description", "State", "Tasks", "Version", "Created at"]
    display_table(columns, rows, json_output=json, title="Deployed apps")


@app_cli.command("info")
def info(
    app_identifier: str = typer.Argument(..., help=APP_ID_HELP),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    json: bool = typer.Option(False, "--json"),
    no_color: bool = typer.Option(False, "--no-color"),
) -> None:
    """Show an App's lifecycle, Functions, and Servers."""
    not_built("app info", RAY_TOOLS)


@app_cli.command("stats")
def stats(
    app_identifier: str = typer.Argument(..., metavar="APP", help=APP_ID_HELP),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    json: bool | None = typer.Option(None, "--json"),
    no_color: bool | None = typer.Option(None, "--no-color"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Show aggregate statistics for an App name or ID."""
    not_built("app stats", RAY_TOOLS)


@app_cli.command("logs")
def logs(
    app_identifier: str = typer.Argument(..., help=APP_ID_HELP),
    follow: bool = typer.Option(False, "-f", "--follow", help="Stream new log lines."),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    tail: int | None = typer.Option(None, "-n", "--tail", help="Show the last N lines."),
    search: str | None = typer.Option(None, help="Only lines that contain this text."),
    function_id: str = typer.Option("", "--function", help="Only this Function's lines."),
    function_call_id: str = typer.Option(
        "", "--function-call", help="Only this FunctionCall's lines."
    ),
    container_id: str = typer.Option("", "--container", help="Only this container's lines."),
    source: str | None = typer.Option(None, "-s", "--source", help="stdout, stderr or system."),
    timestamps: bool = typer.Option(False, help="Show timestamps for each log line."),
    show_function_id: bool = typer.Option(False, help="Prefix lines with the Function ID."),
    show_function_call_id: bool = typer.Option(
        False, help="Prefix lines with the FunctionCall ID."
    ),
    show_container_id: bool = typer.Option(False, help="Prefix lines with the container ID."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Fetch or stream App logs."""
    not_built("app logs", RAY_TOOLS)


@app_cli.command("stop")
def stop(
    app_identifier: str = typer.Argument(..., help=APP_ID_HELP),
    yes: bool = typer.Option(False, "-y", "--yes", help="Don't ask for confirmation."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Permanently stop an App and terminate its running containers."""
    from modal_ray.deployment import stop_app
    from modal_ray.synchronizer import run_sync

    info = run_sync(stop_app(app_identifier, env), "app stop")
    print(f"Stopped app {info['name']!r} ({info['app_id']}).")


@app_cli.command("dashboard")
def dashboard(
    app_identifier: str = typer.Argument(..., help=APP_ID_HELP),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Open an App's dashboard page in your web browser."""
    not_built("app dashboard", "modal-ray has no dashboard of its own; open Ray's dashboard.")


@app_cli.command("history")
def history(
    app_identifier: str = typer.Argument(..., help=APP_ID_HELP),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Show an App's deployment history."""
    import datetime

    from modal_ray.deployment import app_history
    from modal_ray.synchronizer import run_sync

    history = run_sync(app_history(app_identifier, env), "app history")
    rows = [
        [
            f"v{h['version']}",
            datetime.datetime.fromtimestamp(h["deployed_at"]).isoformat(" ", "seconds"),
            h["tag"] or "-",
        ]
        for h in history
    ]
    display_table(["Version", "Time deployed", "Tag"], rows, json_output=json, title="History")


@app_cli.command("rollback")
def rollback(
    app_identifier: str = typer.Argument(..., help=APP_ID_HELP),
    version: str = typer.Argument("", help="Version to roll back to (default: the previous)."),
    strategy: Strategy = typer.Option(
        Strategy.rolling, help="Strategy for replacing running containers."
    ),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Redeploy a previous version of an App."""
    from modal.exception import InvalidError
    from modal_ray.deployment import rollback_app
    from modal_ray.synchronizer import run_sync

    number = version.strip().lower().removeprefix("v")
    if number and not number.isdigit():
        raise InvalidError(f"Invalid version {version!r}: expected `vN` or `N`, e.g. `v2`.")
    info = run_sync(
        rollback_app(app_identifier, int(number) if number else None, env), "app rollback"
    )
    print(
        f"Rolled back app {info['name']!r} to v{info['restored']} (deployed as v{info['version']})."
    )


@app_cli.command("rollover")
def rollover(
    app_identifier: str = typer.Argument(..., help=APP_ID_HELP),
    strategy: Strategy = typer.Option(
        Strategy.rolling, help="Strategy for replacing running containers."
    ),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Redeploy an App to get new containers without code changes."""
    not_built("app rollover", DEPLOYED_APPS)


@app_cli.command("promote", hidden=True)
def promote(
    app_identifier: str = typer.Argument(..., help=APP_ID_HELP),
    version: str = typer.Argument(..., help="Staged version to deploy."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Deploy a staged version from an App's deployment history."""
    not_built("app promote", DEPLOYED_APPS)
