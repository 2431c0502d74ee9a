"""`modal config show|set-environment` (not built yet).

modal-ray reads its settings from environment variables (see `modal_ray.config`), not from a
config file per profile. See `unbuilt.py` for how unbuilt commands behave.
"""

from __future__ import annotations

import typer

from .unbuilt import CONFIG_FROM_ENV, not_built

config_cli = typer.Typer(
    name="config",
    help="Manage client configuration for the current profile.",
    no_args_is_help=True,
    add_completion=False,
)


@config_cli.command("show")
def show(
    redact: bool = typer.Option(True, "--redact/--no-redact", help="Hide secret values."),
    include_internal: bool | None = typer.Option(None, hidden=True),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Show current configuration values."""
    not_built("config show", CONFIG_FROM_ENV)


@config_cli.command("set-environment")
def set_environment(
    environment_name: str = typer.Argument(..., help="The default environment."),
) -> None:
    """Set the default Modal environment for the active profile"""
    not_built("config set-environment", "Set `MODAL_ENVIRONMENT` in the shell instead.")


@config_cli.command("set", hidden=True)
def set_(key: str = typer.Argument(...), value: str = typer.Argument(...)) -> None:
    not_built("config set", CONFIG_FROM_ENV)
