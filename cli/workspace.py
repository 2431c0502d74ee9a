"""`modal workspace proxy-tokens create|list|revoke|delete`: the cluster's proxy-auth tokens.

Endpoints with `requires_proxy_auth=True` answer 401 unless a request carries a valid token as
`Modal-Key: wk-...` and `Modal-Secret: ws-...`. Tokens live on the cluster (one table, kept in
the state store; secrets only as hashes) so every replica checks the same ones; a revoked token
stops working within seconds. The secret is shown once, by `create`.
"""

from __future__ import annotations

from datetime import datetime, timezone

import typer

from modal.exception import NotFoundError

from .utils import display_table

workspace_cli = typer.Typer(
    name="workspace", help="Manage the workspace.", no_args_is_help=True, add_completion=False
)
proxy_tokens_cli = typer.Typer(
    name="proxy-tokens",
    help="Manage proxy-auth tokens for web endpoints (`requires_proxy_auth=True`).",
    no_args_is_help=True,
    add_completion=False,
)
workspace_cli.add_typer(proxy_tokens_cli, name="proxy-tokens")


def _call(method: str, *args: str) -> object:
    from modal_ray.web import proxy_tokens

    return proxy_tokens(method, *args)


def _when(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


@proxy_tokens_cli.command("create")
def create() -> None:
    """Create a token; its secret is shown only now."""
    result = _call("create")
    assert isinstance(result, tuple | list)
    token_id, secret = result
    print(f"Token ID: {token_id}")
    print(f"Token secret: {secret}")
    print("Send them as the `Modal-Key` and `Modal-Secret` headers.")


@proxy_tokens_cli.command("list")
def list_(json: bool = typer.Option(False, "--json", help="Output as JSON.")) -> None:
    """List tokens (ids and dates; never secrets)."""
    rows = _call("list")
    assert isinstance(rows, list)
    display_table(
        ["Token ID", "Created at", "Revoked at"],
        [[r["token_id"], _when(r["created_at"]), _when(r["revoked_at"])] for r in rows],
        json_output=json,
    )


@proxy_tokens_cli.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="The token's id (wk-...).")) -> None:
    """Revoke a token: requests with it are refused from now on (within seconds)."""
    if not _call("revoke", token_id):
        raise NotFoundError(f"No proxy token {token_id!r}.")
    print(f"Revoked {token_id}.")


@proxy_tokens_cli.command("delete")
def delete(token_id: str = typer.Argument(..., help="The token's id (wk-...).")) -> None:
    """Delete a token: it stops working (within seconds) and leaves the list."""
    if not _call("delete", token_id):
        raise NotFoundError(f"No proxy token {token_id!r}.")
    print(f"Deleted {token_id}.")
