"""`modal config show|set-environment`.

modal-ray reads its settings from environment variables (declared in `modal_ray.settings`), not
from a config file per profile: `show` prints them as this process sees them (each with the
variable it comes from), and `set-environment` checks the environment and prints the line to
export, as `modal-ray cluster start` does for the address.
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


def current_config(redact: bool = True) -> dict[str, object]:
    """The settings now: `{field: {"value": ..., "env": [VARIABLES]}}`; a cluster address's
    credentials are hidden with `redact`."""
    from modal_ray import config
    from modal_ray.settings import Settings, env_names

    settings = config.settings()
    out: dict[str, object] = {}
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if field == "state" and value is None:
            value = config.state_root()
        if redact and field == "address" and isinstance(value, str) and "@" in value:
            scheme, _, rest = value.rpartition("://")
            value = f"{scheme}://***@{rest.split('@', 1)[1]}" if scheme else "***@" + rest
        out[field] = {
            "value": str(value) if value is not None else None,
            "env": list(env_names(field)),
        }
    return out


@config_cli.command("show")
def show(
    redact: bool = typer.Option(True, "--redact/--no-redact", help="Hide secret values."),
    include_internal: bool | None = typer.Option(None, hidden=True),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Show current configuration values."""
    import json as json_module

    values = current_config(redact)
    if json:
        flat = {k: v["value"] for k, v in values.items()}  # type: ignore[index]
        print(json_module.dumps(flat, indent=2))
        return
    from .utils import display_table

    rows = [
        [field, entry["value"], " / ".join(entry["env"])]  # type: ignore[index]
        for field, entry in values.items()
    ]
    display_table(["Setting", "Value", "From"], rows, title="modal-ray configuration")
    print("Settings come from environment variables; there is no config file or profile.")


@config_cli.command("set-environment")
def set_environment(
    environment_name: str = typer.Argument(..., help="The default environment."),
) -> None:
    """Set the default Modal environment for the active profile"""
    from modal.exception import NotFoundError
    from modal_ray import config
    from modal_ray.operations import state_call

    name = config.environment_name(environment_name)
    if not state_call("env_exists", name):
        raise NotFoundError(
            f"Environment {name!r} not found; create it with `modal environment create {name}`"
            " (or see `modal environment list`)."
        )
    print(f"export MODAL_ENVIRONMENT={name}")
    print(
        "# modal-ray has no profile file: run the line above (or add it to your shell's profile)"
        " to make it the default environment."
    )


@config_cli.command("set", hidden=True)
def set_(key: str = typer.Argument(...), value: str = typer.Argument(...)) -> None:
    not_built("config set", CONFIG_FROM_ENV)
