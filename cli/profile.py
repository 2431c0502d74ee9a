"""`modal profile activate|current|list` (not built yet): modal-ray has no profiles.

The cluster comes from `MODAL_RAY_ADDRESS`, the environment from `-e` / `MODAL_ENVIRONMENT`. See
`unbuilt.py` for how unbuilt commands behave.
"""

from __future__ import annotations

import typer

from .unbuilt import NO_ACCOUNT, not_built

profile_cli = typer.Typer(
    name="profile",
    help="Switch between Modal profiles.",
    no_args_is_help=True,
    add_completion=False,
)


@profile_cli.command("activate")
def activate(profile: str = typer.Argument(..., help="Profile to activate.")) -> None:
    """Change the active Modal profile."""
    not_built("profile activate", NO_ACCOUNT)


@profile_cli.command("current")
def current() -> None:
    """Print the currently active Modal profile."""
    not_built("profile current", NO_ACCOUNT)


@profile_cli.command("list")
def list_(json: bool = typer.Option(False, "--json")) -> None:
    """Show all Modal profiles and highlight the active one."""
    not_built("profile list", NO_ACCOUNT)
