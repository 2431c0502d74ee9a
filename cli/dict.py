"""`modal dict create|list|clear|get|items|delete`: named Dicts and their contents.

Thin over `modal.Dict`. With no cluster configured (`MODAL_RAY_ADDRESS` / `RAY_ADDRESS` unset),
the commands read and write the state store in-process rather than starting an embedded Ray for
one command; against a cluster they go through the Dict's actor like any program.
"""

from __future__ import annotations

from typing import Any

import typer

from modal.exception import InvalidError
from modal_ray import config

from .utils import ENV_HELP, display_table

dict_cli = typer.Typer(
    name="dict",
    help="Manage `modal.Dict` objects and inspect their contents.",
    no_args_is_help=True,
    add_completion=False,
)

_MAX_SHOWN = 1000  # characters of one value in a table, unless --repr


def direct_store() -> None:
    """One-shot commands use the state store in-process when no cluster is configured."""
    from modal_ray.backends import get_backend

    get_backend().store_allow_direct(True)


def confirm(question: str, what: str) -> None:
    """Ask on the terminal; no answer (stdin closed) is an error that names `--yes`."""
    try:
        confirmed = typer.confirm(question, default=False)
    except typer.Abort:
        raise InvalidError(
            f"Not {what}: no confirmation was given. Pass `--yes` to skip the question."
        ) from None
    if not confirmed:
        raise typer.Abort()


def shown(value: Any, use_repr: bool) -> str:
    text = repr(value) if use_repr else str(value)
    if not use_repr and len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text


def _dict(name: str, env: str | None) -> Any:
    import modal

    direct_store()
    d = modal.Dict.from_name(name, environment_name=config.environment_name(env))
    d.hydrate()
    return d


@dict_cli.command("create", help="Create a named Dict object (a no-op if it already exists).")
def create(
    name: str = typer.Argument(..., show_default=False),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    import modal

    direct_store()
    environment = config.environment_name(env)
    modal.Dict.objects.create(name, environment_name=environment, allow_existing=True)
    print(f"Dict {name!r} is ready in environment {environment!r}.")


@dict_cli.command("list", help="List all named Dicts.")
def list_(
    json: bool = typer.Option(False, "--json/--no-json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    import modal

    direct_store()
    environment = config.environment_name(env)
    rows = []
    for d in modal.Dict.objects.list(environment_name=environment):
        created = d.info().created_at
        if created is not None:
            created = (
                created.isoformat() if json else created.astimezone().strftime("%Y-%m-%d %H:%M %Z")
            )
        rows.append([d.name, created])
    title = "Dicts" if environment == config.DEFAULT_ENVIRONMENT else f"Dicts in {environment!r}"
    display_table(["Name", "Created at"], rows, json_output=json, title=title)


@dict_cli.command("clear", help="Clear the contents of a named Dict by deleting all of its data.")
def clear(
    name: str = typer.Argument(..., show_default=False),
    yes: bool = typer.Option(False, "-y", "--yes", help="Run without pausing for confirmation."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    d = _dict(name, env)
    if not yes:
        confirm(
            f"Are you sure you want to irrevocably delete the contents of modal.Dict {name!r}?",
            f"clearing Dict {name!r}",
        )
    d.clear()
    print(f"Cleared Dict {name!r}.")


@dict_cli.command("delete", help="Delete a named Dict and all of its data.")
def delete(
    name: str = typer.Argument(..., show_default=False),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Don't fail if the Dict does not exist."
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Run without pausing for confirmation."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    import modal
    from modal.exception import NotFoundError

    environment = config.environment_name(env)
    try:
        _dict(name, environment)
    except NotFoundError:
        if allow_missing:
            print(f"Dict {name!r} does not exist in environment {environment!r}; nothing to do.")
            return
        raise
    if not yes:
        confirm(
            f"Are you sure you want to irrevocably delete the modal.Dict {name!r}?",
            f"deleting Dict {name!r}",
        )
    modal.Dict.objects.delete(name, environment_name=environment, allow_missing=allow_missing)
    print(f"Deleted Dict {name!r} from environment {environment!r}.")


@dict_cli.command("get", help="Print the value for a specific key (keys are read as strings).")
def get(
    name: str = typer.Argument(..., show_default=False),
    key: str = typer.Argument(..., show_default=False),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    from modal.exception import NotFoundError

    d = _dict(name, env)
    missing = object()
    value = d.get(key, missing)
    if value is missing:
        raise NotFoundError(f"Key {key!r} not found in Dict {name!r} (keys are read as strings).")
    print(value)


@dict_cli.command("items", help="Print the contents of a Dict (the first N entries by default).")
def items(
    name: str = typer.Argument(..., show_default=False),
    n: int = typer.Argument(20, metavar="[N]", help="Limit the number of entries shown"),
    all: bool = typer.Option(
        False, "-a", "--all", help="Ignore N and print all entries in the Dict (may be slow)"
    ),
    use_repr: bool = typer.Option(
        False, "-r", "--repr", help="Display items using `repr()` to see more details"
    ),
    json: bool = typer.Option(False, "--json/--no-json"),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    d = _dict(name, env)
    rows: list[list[Any]] = []
    iterator = d.items()
    try:
        for key, value in iterator:
            if not all and len(rows) >= n:
                break
            if json:
                rows.append([_jsonable(key), _jsonable(value)])
            else:
                rows.append([shown(key, use_repr), shown(value, use_repr)])
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    title = f"Contents of {name!r}" if all else f"Contents of {name!r} (first {len(rows)})"
    display_table(["Key", "Value"], rows, json_output=json, title=title)


def _jsonable(value: Any) -> Any:
    import json as _json

    try:
        _json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
