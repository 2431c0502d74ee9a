"""`modal environment list|create|delete|update`; `roles` and `billing` are not built.

An environment here is the Ray namespace `modal-<name>` plus its part of the state store (its
secrets and app registry). The list of environments lives with the secrets
(`modal_ray.operations`): in the cluster's state store when a cluster is configured
(`MODAL_RAY_ADDRESS`), else in this machine's. An environment is also made on first use by
`-e NAME` / `MODAL_ENVIRONMENT`, and then listed too. See `unbuilt.py` for how unbuilt commands
behave.
"""

from __future__ import annotations

from enum import Enum

import typer

from modal.exception import InvalidError, UnimplementedError

from .unbuilt import NO_ACCOUNT, not_built
from .utils import display_table

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
    import datetime

    from modal_ray import config
    from modal_ray.operations import state_call

    current = config.environment_name()
    rows = [
        [
            e["name"],
            e["web_suffix"] or None,
            e["name"] == current,
            datetime.datetime.fromtimestamp(e["created_at"]).isoformat(" ", "seconds")
            if e["created_at"]
            else ("-" if e["created"] else "on first use"),
        ]
        for e in state_call("env_list")
    ]
    columns = ["name", "web_suffix", "default", "created_at"]
    display_table(columns, rows, json_output=json, title="Environments")


@environment_cli.command("create")
def create(
    name: str = typer.Argument(..., help="Name of the new Environment."),
    restricted: bool = typer.Option(False, help="Restrict access to members given a role."),
    default_role: str | None = typer.Option(None, help="Role of workspace members."),
    public: bool = typer.Option(False, hidden=True),
) -> None:
    """Create a new Environment in the current Workspace."""
    from modal_ray.operations import state_call

    if restricted or default_role:
        raise UnimplementedError(
            "`--restricted` / `--default-role`: environments here have no roles. " + NO_ACCOUNT
        )
    state_call("env_create", name)
    print(f"Environment created: {name} (Ray namespace `modal-{name}`). Use it with `-e {name}`.")


@environment_cli.command("delete")
def delete(
    name: str = typer.Argument(..., help="Name of the Environment to delete."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Don't ask for confirmation."),
) -> None:
    """Delete an Environment in the current Workspace."""
    from modal_ray.environment import delete_environment, no_apps_deployed
    from modal_ray.operations import state_call

    if not state_call("env_exists", name):
        from modal.exception import NotFoundError

        raise NotFoundError(f"Environment {name!r} not found; see `modal environment list`.")
    no_apps_deployed(name, "delete")
    if not yes:
        try:
            confirmed = typer.confirm(
                f"Delete environment {name!r} with its secrets and its app history? This cannot"
                " be undone.",
                default=False,
            )
        except typer.Abort:
            raise InvalidError(
                f"Not deleting environment {name!r}: no confirmation was given. Pass `--yes` to"
                " delete without confirmation."
            ) from None
        if not confirmed:
            raise typer.Abort()
    delete_environment(name)
    print(f"Environment deleted: {name}")


@environment_cli.command("update")
def update(
    current_name: str = typer.Argument(..., help="Current name of the Environment."),
    set_name: str | None = typer.Option(None, help="New name."),
    set_web_suffix: str | None = typer.Option(None, help="New web suffix."),
    set_image_builder_version: str | None = typer.Option(None, help="Image builder version."),
) -> None:
    """Update Environment-level settings."""
    from modal_ray.operations import cluster_backend, state_call

    if set_image_builder_version is not None:
        raise UnimplementedError(
            "`--set-image-builder-version`: images here are Ray runtime environments, built"
            " without Modal's image builder; there is no version to set."
        )
    if set_web_suffix is not None:
        raise UnimplementedError(
            "`--set-web-suffix`: web endpoints here get their URLs from the cluster's web gateway"
            " (a port per endpoint, or the operator's domain), not from a Modal web suffix."
        )
    if set_name is None:
        raise InvalidError("Nothing to update: pass `--set-name NEW_NAME`.")
    if set_name is not None and set_name != current_name:
        from modal_ray.environment import no_apps_deployed

        no_apps_deployed(current_name, "rename")
        backend = cluster_backend()
        if backend is not None:
            backend.stop_environment(current_name)
    state_call("env_update", current_name, set_name, None)
    print(f"Environment updated: {set_name or current_name}")


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
