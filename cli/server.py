"""`modal server ...`: Modal Servers (a container image served on a port, deployed with
`modal server deploy`). `logs` prints a deployed server's output like `modal app logs`; the
other commands are not built (see `unbuilt.py` for how unbuilt commands behave).
"""

from __future__ import annotations

import typer

from .unbuilt import not_built
from .utils import ENV_HELP

server_cli = typer.Typer(
    name="server",
    help="Deploy and inspect Modal Servers.",
    no_args_is_help=True,
    add_completion=False,
)
autoscaler_cli = typer.Typer(
    name="autoscaler",
    help="View and Configure Autoscaler settings for Modal Servers.",
    no_args_is_help=True,
    add_completion=False,
)
server_cli.add_typer(autoscaler_cli, name="autoscaler")

SERVERS = (
    "Modal Servers built from a bare container image are not available here: Ray runs Python"
    " workers, not images. Serve a web app from Python instead (`@modal.asgi_app`,"
    " `@modal.web_server(port)` in an `@app.function`), deploy it with `modal deploy`, and"
    " inspect it with `modal app info|logs` and `modal container list`."
)
NO_METRICS = (
    "modal-ray keeps no request history or metrics of its own: Ray Serve's dashboard page and"
    " its Prometheus metrics hold them."
)


@server_cli.command("deploy")
def deploy(
    image: str | None = typer.Option(None, help="Container image to serve."),
    port: int | None = typer.Option(None, help="Port the server listens on."),
    registry_secret: str | None = typer.Option(None, help="Secret for the image registry."),
    registry_secret_from_env: str | None = typer.Option(None, help="Registry secret from env."),
    force_build: bool = typer.Option(False, help="Rebuild the image."),
    entrypoint: str | None = typer.Option(None, help="Entrypoint override."),
    cmd: str | None = typer.Option(None, help="Command override."),
    env_var: list[str] | None = typer.Option(None, help="KEY=VALUE environment variables."),
    secret: list[str] | None = typer.Option(None, help="Named secrets."),
    secret_from_env: str | None = typer.Option(None, help="Secret from local variables."),
    volume: list[str] | None = typer.Option(None, help="NAME:PATH volume mounts."),
    cpu: float | None = typer.Option(None, min=0, help="CPU cores."),
    memory: int | None = typer.Option(None, min=0, help="Memory in MiB."),
    gpu: str | None = typer.Option(None, help="GPU type."),
    region: str = typer.Option("us-east", help="Region."),
    unauthenticated: bool = typer.Option(False, help="Serve without proxy auth."),
    h2: bool = typer.Option(False, help="HTTP/2."),
    sessioned: bool = typer.Option(False, help="Sticky sessions."),
    target_concurrency: float | None = typer.Option(None, min=0, help="Target concurrency."),
    max_concurrency: int | None = typer.Option(None, min=1, help="Max concurrency."),
    min_containers: int | None = typer.Option(None, help="Fewest containers."),
    max_containers: int | None = typer.Option(None, min=1, help="Most containers."),
    buffer_containers: int | None = typer.Option(None, help="Idle containers kept ready."),
    scaleup_window: int | None = typer.Option(None, help="Scale-up window (s)."),
    scaledown_window: int | None = typer.Option(None, help="Scale-down window (s)."),
    startup_timeout: int = typer.Option(30, help="Startup timeout (s)."),
    exit_grace_period: int = typer.Option(0, help="Exit grace period (s)."),
    app_name: str | None = typer.Option(None, help="App name."),
    stream_logs: bool = typer.Option(False, help="Stream logs after deploying."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Don't ask for confirmation."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Deploy a container image as a Server."""
    not_built("server deploy", SERVERS)


@server_cli.command("info")
def info(
    server_identifier: str = typer.Argument(..., help="APP_NAME.SERVER_NAME or an ID."),
    json: bool = typer.Option(False, "--json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Show information about a given Modal Server."""
    not_built("server info", SERVERS)


@server_cli.command("logs")
def logs(
    server_ref: str = typer.Argument(..., help="APP_NAME.SERVER_NAME."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Stream new log lines."),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    tail: int | None = typer.Option(None, "-n", "--tail", help="Show the last N lines."),
    search: str | None = typer.Option(None, help="Only lines that contain this text."),
    container_id: str = typer.Option("", "--container", help="Only this container's lines."),
    source: str | None = typer.Option(None, "-s", "--source", help="stdout or stderr."),
    timestamps: bool = typer.Option(False, help="Show timestamps for each log line."),
    show_server_id: bool = typer.Option(False, help="Prefix lines with the server's ID."),
    show_container_id: bool = typer.Option(False, help="Prefix lines with the container ID."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Fetch or stream Server logs."""
    from . import ops_output
    from .app import logs as app_logs

    app, tag = ops_output.split_function_ref(server_ref)
    app_logs(
        app_identifier=app,
        follow=follow,
        since=since,
        until=until,
        tail=tail,
        search=search,
        function_id=tag,
        function_call_id="",
        container_id=container_id,
        source=source,
        timestamps=timestamps,
        show_function_id=show_server_id,
        show_function_call_id=False,
        show_container_id=show_container_id,
        env=env,
    )


@server_cli.command("metrics")
def metrics(
    identifier: str = typer.Argument(..., help="APP_NAME.SERVER_NAME or an ID."),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    group: list[str] | None = typer.Option(None, help="Group by."),
    bucket_size: str | None = typer.Option(None, help="Bucket size."),
    json: bool | None = typer.Option(None, "--json"),
    csv: bool | None = typer.Option(None, "--csv"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Preview and export metrics for a Modal Server."""
    not_built("server metrics", NO_METRICS)


@server_cli.command("requests")
def requests(
    server_identifier: str = typer.Argument(..., help="APP_NAME.SERVER_NAME or an ID."),
    tail: int | None = typer.Option(None, "-n", "--tail", min=1, help="Show the last N."),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    json: bool = typer.Option(False, "--json"),
    no_color: bool = typer.Option(False, "--no-color"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Show recent requests handled by a Modal Server."""
    not_built("server requests", NO_METRICS)


@server_cli.command("stats")
def stats(
    server_identifier: str = typer.Argument(..., help="APP_NAME.SERVER_NAME or an ID."),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    container_id: str | None = typer.Option(None, help="Only this container."),
    no_color: bool = typer.Option(False, "--no-color"),
    json: bool = typer.Option(False, "--json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Show aggregate statistics for a Modal Server."""
    not_built("server stats", NO_METRICS)


@autoscaler_cli.command("settings")
def autoscaler_settings(
    server_identifier: str = typer.Argument(..., help="APP_NAME.SERVER_NAME or an ID."),
    json: bool = typer.Option(False, "--json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Show the current Autsocaling settings for the provided Server."""
    not_built("server autoscaler settings", SERVERS)


@autoscaler_cli.command("update")
def autoscaler_update(
    server_identifier: str = typer.Argument(..., help="APP_NAME.SERVER_NAME or an ID."),
    max_containers: str | None = typer.Option(None, help="Most containers."),
    min_containers: str | None = typer.Option(None, help="Fewest containers."),
    buffer_containers: str | None = typer.Option(None, help="Idle containers kept ready."),
    scaledown_window: str | None = typer.Option(None, help="Scale-down window (s)."),
    scaleup_window: str | None = typer.Option(None, help="Scale-up window (s)."),
    target_concurrency: str | None = typer.Option(None, help="Target concurrency."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Update the current Autsocaling settings for the provided Server."""
    not_built("server autoscaler update", SERVERS)
