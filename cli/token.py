"""`modal token info|new|rotate|set` and `modal setup` (not built yet).

modal-ray needs no Modal token: it runs on a Ray cluster whose own access rules apply. See
`unbuilt.py` for how unbuilt commands behave.
"""

from __future__ import annotations

import typer

from .unbuilt import NO_ACCOUNT, not_built

token_cli = typer.Typer(
    name="token",
    help="Manage tokens.",
    no_args_is_help=True,
    add_completion=False,
)


@token_cli.command("info")
def info() -> None:
    """Display information about the token that is currently in use."""
    not_built("token info", NO_ACCOUNT)


@token_cli.command("new")
def new(
    activate: bool = typer.Option(
        True, "--activate/--no-activate", help="Activate the profile of the new token."
    ),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check the new token."),
    expires_in: str | None = typer.Option(None, help="Lifetime of the token."),
    delete_existing: bool = typer.Option(False, help="Delete the tokens the profile had."),
    source: str | None = typer.Option(None, hidden=True),
) -> None:
    """Create a new token by using an authenticated web session."""
    not_built("token new", NO_ACCOUNT)


@token_cli.command("rotate")
def rotate(expires_in: str | None = typer.Option(None, help="Lifetime of the token.")) -> None:
    """Create a new token in a web session, then delete the current token."""
    not_built("token rotate", NO_ACCOUNT)


@token_cli.command("set")
def set_(
    token_id: str | None = typer.Option(None, help="Account token ID."),
    token_secret: str | None = typer.Option(None, help="Account token secret."),
    activate: bool = typer.Option(
        True, "--activate/--no-activate", help="Activate the profile of the token."
    ),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check the token."),
    delete_existing: bool = typer.Option(False, help="Delete the tokens the profile had."),
) -> None:
    """Set account credentials for connecting to Modal."""
    not_built("token set", NO_ACCOUNT)


def setup() -> None:
    """Bootstrap Modal's configuration."""
    not_built("setup", NO_ACCOUNT)
