"""`modal token info|new|rotate|set` and `modal setup`: modal-ray needs no Modal token.

It runs on a Ray cluster whose own access rules apply (Ray's token authentication, the network
that reaches the head). Each command says so and where the cluster is configured, and exits 0:
there is nothing to set up. `token new|set` never write a credential anywhere.
"""

from __future__ import annotations

import typer

token_cli = typer.Typer(
    name="token",
    help="Manage tokens.",
    no_args_is_help=True,
    add_completion=False,
)


def explain() -> None:
    """No token is needed; this is where the cluster is configured."""
    from modal_ray import config

    address = config.ray_address()
    print("modal-ray needs no Modal token: it runs on a Ray cluster, whose own access rules apply.")
    if address:
        print(f"Cluster: {address} (from MODAL_RAY_ADDRESS or RAY_ADDRESS).")
    else:
        print(
            "Cluster: none configured, so each program starts an embedded Ray of its own. For a"
            " cluster that outlives programs (deployed apps), run `modal-ray cluster start` and"
            " export the MODAL_RAY_ADDRESS it prints, or set MODAL_RAY_ADDRESS to your cluster's"
            " address (`host:6379` or `ray://host:10001`)."
        )
    print(
        "A head of `modal-ray cluster start` has a Ray auth token in its state store"
        f" ({config.state_root()}/cluster/auth_token) that modal-ray finds itself; for another"
        " cluster, set Ray's RAY_AUTH_TOKEN_PATH if it uses token authentication."
    )


@token_cli.command("info")
def info() -> None:
    """Display information about the token that is currently in use."""
    explain()


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
    explain()


@token_cli.command("rotate")
def rotate(expires_in: str | None = typer.Option(None, help="Lifetime of the token.")) -> None:
    """Create a new token in a web session, then delete the current token."""
    explain()


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
    explain()
    if token_id or token_secret:
        print("The token given was not stored: nothing reads it.")


def setup() -> None:
    """Bootstrap Modal's configuration."""
    explain()
