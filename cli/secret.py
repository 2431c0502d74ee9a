"""`modal secret create|list|delete`: named Secrets in a state store.

Thin over `modal.Secret.objects`: with a cluster configured (`MODAL_RAY_ADDRESS`) the secrets are
the cluster's (kept on its head, `modal_ray.operations`), otherwise this machine's
(`MODAL_RAY_STATE`), and then nothing here starts Ray. Values never appear in output: `list`
shows names and creation times only.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from modal.exception import InvalidError, NotFoundError
from modal_ray import config

from .utils import ENV_HELP, display_table

secret_cli = typer.Typer(
    name="secret",
    help="Manage secrets.",
    no_args_is_help=True,
    add_completion=False,
)


def _parse_key_values(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidError(
                f"Invalid secret item {item!r}: write each one as KEY=VALUE (quote values that"
                " contain spaces)."
            )
        out[key] = value
    return out


def _load_dotenv(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    if not path.is_file():
        raise InvalidError(f"--from-dotenv: file not found: {path}")
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _load_json(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise InvalidError(f"--from-json: file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidError(f"--from-json: {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidError(f"--from-json: {path} must hold a JSON object of KEY: value pairs.")
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, (dict, list)) or value is None:
            raise InvalidError(
                f"--from-json: the value of {key!r} must be a string or number, not"
                f" {type(value).__name__}."
            )
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


@secret_cli.command("create", help="Create a new secret.")
def create(
    secret_name: str = typer.Argument(..., metavar="SECRET_NAME", show_default=False),
    keyvalues: list[str] | None = typer.Argument(
        None, metavar="KEYVALUES", help="Space-separated KEY=VALUE items.", show_default=False
    ),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    from_dotenv: Path | None = typer.Option(
        None, "--from-dotenv", help="Path to a .env file to load secrets from."
    ),
    from_json: Path | None = typer.Option(
        None, "--from-json", help="Path to a JSON file to load secrets from."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite the secret if it already exists."),
) -> None:
    import modal

    values: dict[str, str] = {}
    if from_dotenv is not None:
        values.update(_load_dotenv(from_dotenv))
    if from_json is not None:
        values.update(_load_json(from_json))
    values.update(_parse_key_values(keyvalues or []))
    if not values:
        raise InvalidError(
            "A secret needs at least one key: pass KEY=VALUE items, --from-dotenv or --from-json."
        )
    environment = config.environment_name(env)
    modal.Secret.objects.create(
        secret_name, values, environment_name=environment, allow_existing=force
    )
    keys = ", ".join(repr(k) for k in values)
    noun = "key" if len(values) == 1 else "keys"
    print(f"Created secret {secret_name!r} in environment {environment!r} with the {noun} {keys}.")
    print("Use it from a function:")
    print(f'    @app.function(secrets=[modal.Secret.from_name("{secret_name}")])')
    print(f'    def f():\n        value = os.environ["{next(iter(values))}"]')


def _created(secret: Any) -> datetime | None:
    created: datetime | None = secret.info().created_at
    return created


@secret_cli.command("list", help="List your published secrets.")
def list_(
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    import modal

    environment = config.environment_name(env)
    rows: list[list[Any]] = []
    for secret in modal.Secret.objects.list(environment_name=environment):
        created = _created(secret)
        if json:
            shown = created.isoformat() if created else None
        else:
            shown = created.astimezone().strftime("%Y-%m-%d %H:%M %Z") if created else None
        rows.append([secret.name, shown])
    title = (
        "Secrets" if environment == config.DEFAULT_ENVIRONMENT else f"Secrets in {environment!r}"
    )
    display_table(["Name", "Created at"], rows, json_output=json, title=title)


@secret_cli.command("delete", help="Delete a named Secret.")
def delete(
    name: str = typer.Argument(
        ...,
        metavar="NAME",
        help="Name of the modal.Secret to be deleted. Case sensitive.",
        show_default=False,
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Don't fail if the secret does not exist."
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Run without pausing for confirmation."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
) -> None:
    import modal

    environment = config.environment_name(env)
    try:
        modal.Secret.from_name(name, environment_name=environment).hydrate()
    except NotFoundError:
        if allow_missing:
            print(f"Secret {name!r} does not exist in environment {environment!r}; nothing to do.")
            return
        raise NotFoundError(f"Secret {name!r} not found in environment {environment!r}.") from None
    if not yes:
        try:
            confirmed = typer.confirm(
                f"Delete secret {name!r} from environment {environment!r}? This cannot be undone.",
                default=False,
            )
        except typer.Abort:  # stdin closed or not answerable
            raise InvalidError(
                f"Not deleting secret {name!r}: no confirmation was given. Pass `--yes` to delete"
                " without confirmation."
            ) from None
        if not confirmed:
            raise typer.Abort()
    modal.Secret.objects.delete(name, allow_missing=allow_missing, environment_name=environment)
    print(f"Deleted secret {name!r} from environment {environment!r}.")
