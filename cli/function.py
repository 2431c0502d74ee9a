"""`modal function info|logs|autoscaler settings|autoscaler update` for deployed Functions and
classes; `calls|stats|metrics|variants` are not built.

A function is named `APP_NAME.FUNCTION_NAME` (or `APP_NAME::FUNCTION_NAME`, or its object id
`fu-...` / `cs-...`); a class method's containers are its class's, `APP_NAME.ClassName`. Its
description comes from the record the registry keeps (`modal_ray.deployment.lookup`); secret
values the record carries are never shown.
"""

from __future__ import annotations

from typing import Any

import typer

from modal.exception import InvalidError

from . import ops_output
from .unbuilt import not_built
from .utils import ENV_HELP, display_table

function_cli = typer.Typer(
    name="function",
    help="Inspect Modal Functions.",
    no_args_is_help=True,
    add_completion=False,
)
autoscaler_cli = typer.Typer(
    name="autoscaler",
    help="View and Configure Autoscaler settings for Modal Functions.",
    no_args_is_help=True,
    add_completion=False,
)
function_cli.add_typer(autoscaler_cli, name="autoscaler")

METRICS = (
    "modal-ray keeps no per-call history or metrics of its own: Ray's dashboard (its Serve and"
    " Jobs pages) and its Prometheus metrics hold them; `modal app logs APP --function NAME`"
    " shows a function's output."
)


def _record(identifier: str, environment: str) -> tuple[str, str, Any, str]:
    """(app name or id, tag, record, object id) of a deployed Function or Cls."""
    from modal.exception import NotFoundError
    from modal_ray import deployment
    from modal_ray.operations import require_cluster

    if identifier.startswith(("fu-", "cs-")):
        record, _ = deployment.lookup_id(identifier, environment)
        return record.app.name or record.app.app_id, record.tag, record, identifier
    app, tag = ops_output.split_function_ref(identifier)
    entry = ops_output.find_app(require_cluster("`modal function`"), environment, app)
    kinds = [o["kind"] for o in entry["objects"] if o["tag"] == tag]
    if not kinds:
        listed = ", ".join(repr(o["tag"]) for o in entry["objects"]) or "none"
        raise NotFoundError(
            f"{tag!r} not found in app {app!r}; its Functions and classes: {listed}."
        )
    record, object_id = deployment.lookup(app, tag, kinds[0], environment)
    return app, tag, record, object_id


def _autoscaler(record: Any) -> dict[str, Any] | None:
    pool = getattr(record, "pool", None)
    if pool is None:
        return None
    service = pool.service
    return {
        "min_containers": service.min_replicas,
        "max_containers": service.max_replicas,
        "scaledown_window": service.scaledown_window,
        "max_inputs": service.max_ongoing,
    }


@function_cli.command("info")
def info(
    function_identifier: str = typer.Argument(..., help="APP_NAME.FUNCTION_NAME or an ID."),
    json: bool = typer.Option(False, "--json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Show information about a given Modal Function."""
    import json as json_module

    _, environment = ops_output.connect(env, "`modal function info`")
    app, tag, record, object_id = _record(function_identifier, environment)
    spec = record.spec
    resources = spec.resources
    described = {
        "name": tag,
        "app": app,
        "app_id": record.app.app_id,
        "object_id": object_id,
        "kind": "Cls" if hasattr(record, "methods") else "Function",
        "runs_as": "container pool (Ray Serve)" if record.pool is not None else "Ray tasks",
        "cpu": resources.num_cpus,
        "memory_bytes": resources.memory_bytes,
        "gpu": resources.gpu_spec or (resources.num_gpus or None),
        "timeout": spec.timeout,
        "retries": spec.retries.max_retries if spec.retries is not None else 0,
        "autoscaler": _autoscaler(record),
    }
    if hasattr(record, "methods"):
        described["methods"] = [m.name for m in record.methods]
    if json:
        print(json_module.dumps(described, indent=2, default=str))
        return
    rows = [[k, v] for k, v in described.items()]
    display_table(["Field", "Value"], rows, title=f"{app}.{tag}")


@function_cli.command("logs")
def logs(
    function_ref: str = typer.Argument(..., help="APP_NAME.FUNCTION_NAME."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Stream new log lines."),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    tail: int | None = typer.Option(None, "-n", "--tail", help="Show the last N lines."),
    search: str | None = typer.Option(None, help="Only lines that contain this text."),
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
    all_variants: bool = typer.Option(False, help="Include every variant of the Function."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Fetch or stream Function logs."""
    from .app import logs as app_logs

    app, tag = ops_output.split_function_ref(function_ref)
    app_logs(
        app_identifier=app,
        follow=follow,
        since=since,
        until=until,
        tail=tail,
        search=search,
        function_id=tag,
        function_call_id=function_call_id,
        container_id=container_id,
        source=source,
        timestamps=timestamps,
        show_function_id=show_function_id,
        show_function_call_id=show_function_call_id,
        show_container_id=show_container_id,
        env=env,
    )


@autoscaler_cli.command("settings")
def autoscaler_settings(
    function_identifier: str = typer.Argument(..., help="APP_NAME.FUNCTION_NAME or an ID."),
    json: bool = typer.Option(False, "--json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Show the current Autsocaling settings for the provided Function."""
    import json as json_module

    _, environment = ops_output.connect(env, "`modal function autoscaler settings`")
    app, tag, record, _ = _record(function_identifier, environment)
    settings = _autoscaler(record)
    if settings is None:
        raise InvalidError(
            f"{app}.{tag} runs as Ray tasks, not in containers of its own: it has no autoscaler"
            " (Ray schedules each input where there is room)."
        )
    if json:
        print(json_module.dumps(settings, indent=2))
        return
    display_table(["Setting", "Value"], [[k, v] for k, v in settings.items()], title=tag)


@autoscaler_cli.command("update")
def autoscaler_update(
    function_identifier: str = typer.Argument(..., help="APP_NAME.FUNCTION_NAME or an ID."),
    max_containers: str | None = typer.Option(None, help="Most containers."),
    min_containers: str | None = typer.Option(None, help="Fewest containers."),
    buffer_containers: str | None = typer.Option(None, help="Idle containers kept ready."),
    scaledown_window: str | None = typer.Option(None, help="Seconds idle before scale-down."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Update the current Autsocaling settings for the provided Function."""
    import modal

    _, environment = ops_output.connect(env, "`modal function autoscaler update`")
    app, tag, record, _ = _record(function_identifier, environment)
    if _autoscaler(record) is None:
        raise InvalidError(
            f"{app}.{tag} runs as Ray tasks, not in containers of its own: there is no"
            " autoscaler to update."
        )
    changes: dict[str, int] = {}
    for name, value in (
        ("max_containers", max_containers),
        ("min_containers", min_containers),
        ("buffer_containers", buffer_containers),
        ("scaledown_window", scaledown_window),
    ):
        if value is None:
            continue
        if not value.isdigit():
            raise InvalidError(f"--{name.replace('_', '-')} takes a whole number, not {value!r}.")
        changes[name] = int(value)
    if not changes:
        raise InvalidError("Nothing to update: pass at least one of the options.")
    if hasattr(record, "methods"):
        raise InvalidError(
            f"{app}.{tag} is a class: its containers are made per parameter set; update them"
            f" from a program with `modal.Cls.from_name({app!r}, {tag!r})(...)"
            ".update_autoscaler(...)`."
        )
    function = modal.Function.from_name(app, tag, environment_name=environment)
    function.update_autoscaler(**changes)  # type: ignore[arg-type]
    shown = ", ".join(f"{k}={v}" for k, v in changes.items())
    print(f"Updated the autoscaler of {app}.{tag}: {shown} (until the app is deployed again).")


@function_cli.command("calls")
def calls(
    function_identifier: str = typer.Argument(..., help="APP_NAME.FUNCTION_NAME or an ID."),
    tail: int | None = typer.Option(None, "-n", "--tail", min=1, help="Show the last N calls."),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    all_variants: bool = typer.Option(False, help="Include every variant of the Function."),
    show_function_call_id: bool = typer.Option(False, help="Show FunctionCall IDs."),
    json: bool = typer.Option(False, "--json"),
    no_color: bool = typer.Option(False, "--no-color"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Show recent inputs for a Modal Function."""
    not_built("function calls", METRICS)


@function_cli.command("stats")
def stats(
    function_identifier: str = typer.Argument(..., help="APP_NAME.FUNCTION_NAME or an ID."),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    all_variants: bool = typer.Option(False, help="Include every variant of the Function."),
    container: str | None = typer.Option(None, help="Only this container."),
    no_color: bool = typer.Option(False, "--no-color"),
    json: bool = typer.Option(False, "--json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Show aggregate statistics for a Modal Function."""
    not_built("function stats", METRICS)


@function_cli.command("metrics")
def metrics(
    identifier: str = typer.Argument(..., help="APP_NAME.FUNCTION_NAME or an ID."),
    since: str | None = typer.Option(None, help="Start of the window."),
    until: str | None = typer.Option(None, help="End of the window."),
    group: str | None = typer.Option(None, help="Group by."),
    bucket_size: str | None = typer.Option(None, help="Bucket size."),
    json: bool | None = typer.Option(None, "--json"),
    csv: bool | None = typer.Option(None, "--csv"),
    all_variants: bool | None = typer.Option(None, "--all-variants"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """Preview and export metrics for a Modal Function."""
    not_built("function metrics", METRICS)


@function_cli.command("variants")
def variants(
    function_ref: str = typer.Argument(..., help="APP_NAME.FUNCTION_NAME."),
    limit: int = typer.Option(200, "-n", "--limit", help="Show at most this many."),
    json: bool = typer.Option(False, "--json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    """List the variants of a Modal Function."""
    not_built(
        "function variants",
        "A class's variants here are its parameter sets' container pools: see them with"
        " `modal container list`.",
    )
