"""`modal app list|stop|info|logs|dashboard|history|rollback` (deployed apps, from the
environment's registry) and `stats|rollover|promote` (not built yet).

`list` shows the deployed apps of the environment (running ones of `modal run` live only in
their process); `stop` stops a deployed app: lookups no longer find it and its containers end.
`logs` prints what the app's workers wrote, read from Ray's worker log files on every node
(`ops_output.py`); `dashboard` prints Ray's dashboard URL. See `unbuilt.py` for how unbuilt
commands behave.
"""

from __future__ import annotations

from typing import Any

import typer

from modal.exception import NotFoundError

from . import ops_output
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
    import json as json_module

    backend, environment = ops_output.connect(env, "`modal app info`")
    app = ops_output.find_app(backend, environment, app_identifier)
    containers = backend.containers(environment, app["app_id"])
    if json:
        print(
            json_module.dumps(
                {**app, "environment": environment, "containers": len(containers)}, indent=2
            )
        )
        return
    print(f"App {app['name']} ({app['app_id']}) in environment {environment!r}")
    print(f"  state: deployed, version v{app['version']}")
    print(f"  created: {ops_output.started(app['created_at'])}")
    print(f"  last deployed: {ops_output.started(app['updated_at'])}")
    print(f"  running containers: {len(containers)}")
    rows = [
        [o["tag"], "Function" if o["kind"] == "function" else "Cls", o["object_id"]]
        for o in app["objects"]
    ]
    display_table(["Name", "Kind", "ID"], rows, title="Functions and classes")


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
    from modal_ray.operations import output_match

    ops_output.refuse_unrecorded(since, until, timestamps, function_call_id)
    backend, environment = ops_output.connect(env, "`modal app logs`")
    app = ops_output.find_app(backend, environment, app_identifier)
    tag = None
    if function_id:
        found = [o["tag"] for o in app["objects"] if function_id in (o["object_id"], o["tag"])]
        if not found:
            raise NotFoundError(f"No Function {function_id!r} in app {app['name']!r}.")
        tag = found[0]
    match = output_match(environment, app, tag)
    containers = ops_output.container_labels(backend, environment)
    if container_id:
        spots = [k for k, v in containers.items() if v == container_id]
        if not spots:
            raise ops_output.no_container(container_id, environment)
        match = {**match, "nodes": [spots[0][0]], "pids": [spots[0][1]]}
    labels: dict[str, str] | None = None
    if show_function_id:
        labels = {}
        for o in app["objects"]:
            one = output_match(environment, app, o["tag"])
            for key in [*one["actor_prefixes"], *one["task_names"]]:
                labels.setdefault(key, o["object_id"])
    ops_output.print_output(
        backend,
        match,
        follow=follow,
        tail=tail,
        search=search,
        source=source,
        labels=labels,
        containers=containers if show_container_id else None,
    )


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
    backend, environment = ops_output.connect(env, "`modal app dashboard`")
    app = ops_output.find_app(backend, environment, app_identifier)
    print_dashboard(backend, f"app {app['name']} ({app['app_id']})")


def print_dashboard(backend: Any, what: str) -> None:
    """Ray's dashboard URL (modal-ray has no dashboard of its own), or why there is none."""
    url = backend.dashboard_url()
    if url is None:
        raise NotFoundError(
            "This Ray cluster runs without Ray's dashboard (`modal-ray cluster start` starts"
            " the head with `--include-dashboard=false`; a head started with `ray start --head"
            " --dashboard-host=127.0.0.1` has one). Use `modal app list|info|logs` and `modal"
            " container list` instead."
        )
    print(f"Ray dashboard for {what}: {url}")
    print("(Serve applications of the app are named `modal-<environment>-<app id>-...`.)")


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
