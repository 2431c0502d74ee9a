"""`modal environment ...` (not built yet).

An environment here is the Ray namespace `modal-<name>` (plus its part of the state store), made
on first use by `-e NAME` / `MODAL_ENVIRONMENT`; there are no roles or billing. See `unbuilt.py`
for how unbuilt commands behave.
"""

from __future__ import annotations

from enum import Enum

import typer

from .unbuilt import ENVIRONMENTS, NO_ACCOUNT, not_built

environment_cli = typer.Typer(
    name="environment",
    help="Create and interact with Environments.",
    no_args_is_help=True,
    add_completion=False,
)
roles_cli = typer.Typer(
    name="roles",
    help="Manage the Environment Roles of users and service users.",
    no_args_is_help=True,
    add_completion=False,
)
billing_cli = typer.Typer(
    name="billing",
    help="View billing and usage info for the given Environment.",
    no_args_is_help=True,
    add_completion=False,
)
environment_cli.add_typer(roles_cli, name="roles")
environment_cli.add_typer(billing_cli, name="billing")


class Role(str, Enum):
    contributor = "contributor"
    viewer = "viewer"
    no_access = "no-access"


@environment_cli.command("list")
def list_(json: bool = typer.Option(False, "--json")) -> None:
    """List all Environments in the current Workspace."""
    not_built("environment list", ENVIRONMENTS)


@environment_cli.command("create")
def create(
    name: str = typer.Argument(..., help="Name of the new Environment."),
    restricted: bool = typer.Option(False, help="Restrict access to members given a role."),
    default_role: str | None = typer.Option(None, help="Role of workspace members."),
    public: bool = typer.Option(False, hidden=True),
) -> None:
    """Create a new Environment in the current Workspace."""
    not_built("environment create", ENVIRONMENTS)


@environment_cli.command("delete")
def delete(
    name: str = typer.Argument(..., help="Name of the Environment to delete."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Don't ask for confirmation."),
) -> None:
    """Delete an Environment in the current Workspace."""
    not_built("environment delete", ENVIRONMENTS)


@environment_cli.command("update")
def update(
    current_name: str = typer.Argument(..., help="Current name of the Environment."),
    set_name: str | None = typer.Option(None, help="New name."),
    set_web_suffix: str | None = typer.Option(None, help="New web suffix."),
    set_image_builder_version: str | None = typer.Option(None, help="Image builder version."),
) -> None:
    """Update Environment-level settings."""
    not_built("environment update", ENVIRONMENTS)


@roles_cli.command("list")
def roles_list(
    environment: str = typer.Argument(..., help="Environment name."),
    exclude_default: bool = typer.Option(False, help="Leave out default roles."),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """List the roles of each user and service user in an Environment."""
    not_built("environment roles list", NO_ACCOUNT)


@roles_cli.command("update")
def roles_update(
    environment: str = typer.Argument(..., help="Environment name."),
    principal: str = typer.Argument(..., help="User or service user."),
    role: Role = typer.Option(..., help="The new role."),
    service_user: bool = typer.Option(False, help="PRINCIPAL is a service user."),
) -> None:
    """Update a user's or service user's role in an Environment."""
    not_built("environment roles update", NO_ACCOUNT)


@billing_cli.command("report")
def billing_report(
    environment_name: str | None = typer.Argument(None, help="Environment name."),
    start: str | None = typer.Option(None, help="Start date."),
    end: str | None = typer.Option(None, help="End date."),
    for_: str | None = typer.Option(None, "--for", help="A period such as `last month`."),
    resolution: str = typer.Option("d", "-r", "--resolution", help="`d` (daily) or `h` (hourly)."),
    tz: str | None = typer.Option(None, help="Time zone."),
    tag_names: str | None = typer.Option(None, "-t", "--tag-names", help="Tags to group by."),
    show_resources: bool = typer.Option(False, help="Break costs down by resource."),
    json: bool = typer.Option(False, "--json"),
    csv: bool = typer.Option(False, "--csv"),
) -> None:
    """Generate a billing report for the specified Environment."""
    not_built("environment billing report", NO_ACCOUNT)


@billing_cli.command("summary")
def billing_summary(
    environment_name: str | None = typer.Argument(None, help="Environment name."),
    for_: str | None = typer.Option(None, "--for", help="A period such as `last month`."),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Generate a billing summary for the specified Environment."""
    not_built("environment billing summary", NO_ACCOUNT)
