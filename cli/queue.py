"""`modal queue create|delete|list|clear|peek|len`: named Queues and their contents.

Thin over `modal.Queue`; like `modal dict`, the commands use the state store in-process when no
cluster is configured. `peek` reads without removing anything.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import typer

from modal_ray import config

from .dict import confirm, direct_store, shown
from .utils import ENV_HELP, display_table

queue_cli = typer.Typer(
    name="queue",
    help="Manage `modal.Queue` objects and inspect their contents.",
    no_args_is_help=True,
    add_completion=False,
)

PARTITION_HELP = "Name of the partition to use, otherwise use the default (anonymous) partition."


def _queue(name: str, env: str | None) -> Any:
    import modal

    direct_store()
    q = modal.Queue.from_name(name, environment_name=config.environment_name(env))
    q.hydrate()
    return q


@queue_cli.command("create", help="Create a named Queue (a no-op if it already exists).")
def create(
    name: str = typer.Argument(..., show_default=False),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    import modal

    direct_store()
    environment = config.environment_name(env)
    modal.Queue.objects.create(name, environment_name=environment, allow_existing=True)
    print(f"Queue {name!r} is ready in environment {environment!r}.")


@queue_cli.command("delete", help="Delete a named Queue and all of its data.")
def delete(
    name: str = typer.Argument(..., show_default=False),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Don't fail if the Queue does not exist."
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Run without pausing for confirmation."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    import modal
    from modal.exception import NotFoundError

    environment = config.environment_name(env)
    try:
        _queue(name, environment)
    except NotFoundError:
        if allow_missing:
            print(f"Queue {name!r} does not exist in environment {environment!r}; nothing to do.")
            return
        raise
    if not yes:
        confirm(
            f"Are you sure you want to irrevocably delete the modal.Queue {name!r}?",
            f"deleting Queue {name!r}",
        )
    modal.Queue.objects.delete(name, environment_name=environment, allow_missing=allow_missing)
    print(f"Deleted Queue {name!r} from environment {environment!r}.")


@queue_cli.command("list", help="List all named Queues.")
def list_(
    json: bool = typer.Option(False, "--json/--no-json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    import modal
    from modal_ray.synchronizer import run_sync

    direct_store()
    environment = config.environment_name(env)
    rows = []
    for record in run_sync(modal.Queue.objects._records(environment), "modal queue list"):
        created: Any = datetime.fromtimestamp(record["created_at"], timezone.utc)
        created = (
            created.isoformat() if json else created.astimezone().strftime("%Y-%m-%d %H:%M %Z")
        )
        rows.append([record["name"], created, record.get("partitions"), record.get("items")])
    title = "Queues" if environment == config.DEFAULT_ENVIRONMENT else f"Queues in {environment!r}"
    display_table(
        ["Name", "Created at", "Partitions", "Total size"], rows, json_output=json, title=title
    )


@queue_cli.command("clear", help="Clear the contents of a queue by removing all of its data.")
def clear(
    name: str = typer.Argument(..., show_default=False),
    partition: str | None = typer.Option(None, "-p", "--partition", help=PARTITION_HELP),
    all: bool = typer.Option(False, "-a", "--all", help="Clear the contents of all partitions."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Run without pausing for confirmation."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    q = _queue(name, env)
    if all:
        what = "all partitions of"
    elif partition:
        what = f"partition {partition!r} of"
    else:
        what = "the default partition of"
    if not yes:
        confirm(
            f"Are you sure you want to irrevocably delete the contents of {what}"
            f" modal.Queue {name!r}?",
            f"clearing Queue {name!r}",
        )
    q.clear(partition=partition, all=all)
    print(f"Cleared {what} Queue {name!r}.")


@queue_cli.command(
    "peek", help="Print the next N items in the queue or queue partition (without removal)."
)
def peek(
    name: str = typer.Argument(..., show_default=False),
    n: int = typer.Argument(1, metavar="[N]"),
    partition: str | None = typer.Option(None, "-p", "--partition", help=PARTITION_HELP),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    q = _queue(name, env)
    iterator = q.iterate(partition=partition)
    count = 0
    try:
        for item in iterator:
            if count >= n:
                break
            print(shown(item, use_repr=False))
            count += 1
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


@queue_cli.command(
    "len", help="Print the length of a queue partition or the total length of all partitions."
)
def len_(
    name: str = typer.Argument(..., show_default=False),
    partition: str | None = typer.Option(None, "-p", "--partition", help=PARTITION_HELP),
    total: bool = typer.Option(
        False, "-t", "--total", help="Compute the sum of the queue lengths across all partitions"
    ),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    q = _queue(name, env)
    print(q.len(partition=partition, total=total))
