"""`modal profile activate|current|list`: modal-ray has no profiles.

Modal's profiles hold a token and a workspace; modal-ray needs neither. The one "profile" is the
cluster this shell is configured for (`MODAL_RAY_ADDRESS`, else an embedded Ray) and its
default environment (`MODAL_ENVIRONMENT`): `list` and `current` show it, `activate` explains how
to point the shell at another cluster.
"""

from __future__ import annotations

import typer

from modal.exception import InvalidError

from .unbuilt import NO_ACCOUNT
from .utils import display_table

profile_cli = typer.Typer(
    name="profile",
    help="Switch between Modal profiles.",
    no_args_is_help=True,
    add_completion=False,
)

PROFILE = "modal-ray"


def describe() -> dict[str, object]:
    """The cluster and environment this shell uses, in place of a profile."""
    from modal_ray import config

    address = config.ray_address()
    return {
        "name": PROFILE,
        "active": True,
        "cluster": address or "embedded (a private Ray per process)",
        "environment": config.environment_name(),
        "state_store": str(config.state_root()),
    }


@profile_cli.command("activate")
def activate(profile: str = typer.Argument(..., help="Profile to activate.")) -> None:
    """Change the active Modal profile."""
    if profile == PROFILE:
        print(f"Profile {PROFILE!r} is active: {NO_ACCOUNT}")
        return
    raise InvalidError(
        f"There is no profile {profile!r}: {NO_ACCOUNT} To use another cluster, set"
        " MODAL_RAY_ADDRESS (and MODAL_ENVIRONMENT for its environment) in the shell."
    )


@profile_cli.command("current")
def current() -> None:
    """Print the currently active Modal profile."""
    info = describe()
    print(info["name"])


@profile_cli.command("list")
def list_(json: bool = typer.Option(False, "--json")) -> None:
    """Show all Modal profiles and highlight the active one."""
    info = describe()
    columns = ["name", "active", "cluster", "environment", "state_store"]
    display_table(columns, [[info[c] for c in columns]], json_output=json, title="Profiles")
    if not json:
        print(NO_ACCOUNT)
