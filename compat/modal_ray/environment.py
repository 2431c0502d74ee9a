"""`modal.Environment`: the environments of the cluster (or of this machine) as objects.

An environment is the Ray namespace `modal-<name>` plus its part of the state store (secrets and
app registry); the list lives with the secrets (`modal_ray.operations`). `Environment.objects`
creates, lists and deletes them, as `modal environment create|list|delete` do. Roles, members
and billing are Modal account features and raise.
"""

from __future__ import annotations

import asyncio
from typing import Any

from modal_ray.exception import InvalidError, NotFoundError, UnimplementedError

from . import config, operations
from .synchronizer import dual, dual_static

NO_ACCOUNT = "There are no Modal accounts here: access to a Ray cluster is its operator's concern."


def no_apps_deployed(name: str, what: str) -> None:
    """`InvalidError` if apps are deployed in environment `name` (on a cluster)."""
    backend = operations.cluster_backend()
    if backend is None:
        return  # no cluster: nothing can be deployed
    apps = operations.deployed_apps(backend, name)
    if apps:
        listed = ", ".join(repr(a) for a in apps)
        raise InvalidError(
            f"Cannot {what} environment {name!r}: apps are deployed in it ({listed}). Stop them"
            f" first with `modal app stop APP -e {name}`."
        )


def delete_environment(name: str) -> None:
    """Delete `name` with its secrets and app history: `NotFoundError` if there is no such
    environment, `InvalidError` while apps are deployed in it."""
    if not operations.state_call("env_exists", name):
        raise NotFoundError(f"Environment {name!r} not found; see `modal environment list`.")
    no_apps_deployed(name, "delete")
    backend = operations.cluster_backend()
    if backend is not None:
        backend.stop_environment(name)
    operations.state_call("env_delete", name)


class _EnvironmentManager:
    """`modal.Environment.objects`: create, list and delete environments."""

    def __get__(self, obj: Any, objtype: Any = None) -> _EnvironmentManager:
        return self

    @dual_static
    async def create(
        name: str,
        *,
        restricted: bool = False,
        default_role: str | None = None,
        experimental_options: dict[str, Any] | None = None,
        client: Any = None,
    ) -> None:
        if restricted or default_role is not None:
            raise UnimplementedError(
                "`restricted=` / `default_role=`: environments here have no roles. " + NO_ACCOUNT
            )
        if experimental_options:
            raise UnimplementedError(
                f"`experimental_options={experimental_options!r}` is not supported by modal-ray."
            )
        await asyncio.to_thread(operations.state_call, "env_create", name)

    @dual_static
    async def delete(name: str, *, client: Any = None) -> None:
        await asyncio.to_thread(delete_environment, name)

    @dual_static
    async def list(*, client: Any = None) -> list[Environment]:
        entries = await asyncio.to_thread(operations.state_call, "env_list")
        return [Environment._hydrated(e["name"]) for e in entries]


class Environment:
    """One environment: a namespace of apps, secrets, Dicts, Queues and Volumes."""

    __module__ = "modal.environments"

    objects = _EnvironmentManager()

    def __init__(self, name: str, *, create_if_missing: bool = False) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidError(f"An environment name is a non-empty string, not {name!r}.")
        config.environment_name(name)  # a bad name fails here
        self._name = name
        self._create_if_missing = create_if_missing
        self._found = False

    @staticmethod
    def _hydrated(name: str) -> Environment:
        env = Environment(name)
        env._found = True
        return env

    def __repr__(self) -> str:
        return f"Environment({self._name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Environment) and other._name == self._name

    def __hash__(self) -> int:
        return hash(("Environment", self._name))

    @staticmethod
    def from_name(name: str, *, create_if_missing: bool = False, client: Any = None) -> Environment:
        """The environment `name`, looked up on first use (`.hydrate()`); `NotFoundError` then if
        it does not exist, unless `create_if_missing`."""
        return Environment(name, create_if_missing=create_if_missing)

    @staticmethod
    def from_context(*, client: Any = None) -> Environment:
        """The environment this process uses (`MODAL_ENVIRONMENT`, `-e`, else "main")."""
        return Environment._hydrated(config.environment_name())

    @dual
    async def hydrate(self, client: Any = None) -> Environment:
        if not self._found:
            exists = await asyncio.to_thread(operations.state_call, "env_exists", self._name)
            if not exists:
                if not self._create_if_missing:
                    raise NotFoundError(
                        f"Environment {self._name!r} not found; see `modal environment list`."
                    )
                await asyncio.to_thread(operations.state_call, "env_create", self._name)
            self._found = True
        return self

    @property
    def name(self) -> str:
        return self._name

    @property
    def object_id(self) -> str:
        self.hydrate()
        return f"en-{self._name}"

    @property
    def client(self) -> None:
        return None

    @property
    def apps(self) -> Any:
        raise UnimplementedError(
            "`Environment.apps` is not supported by modal-ray; list an environment's apps with"
            " `modal app list -e NAME`."
        )

    @property
    def members(self) -> Any:
        raise UnimplementedError("`Environment.members`: " + NO_ACCOUNT)

    @property
    def roles(self) -> Any:
        raise UnimplementedError("`Environment.roles`: " + NO_ACCOUNT)

    @property
    def billing(self) -> Any:
        raise UnimplementedError("`Environment.billing`: there is no Modal billing on Ray.")

    @dual
    async def get_dashboard_url(self) -> str:
        backend = operations.cluster_backend()
        return (backend.dashboard_url() if backend is not None else None) or ""


__all__ = ["Environment", "delete_environment", "no_apps_deployed"]
