"""`modal.Secret`: environment variables injected into a function's worker at call time.

Secrets never go into a Ray `runtime_env` (the Ray dashboard shows it): the resolved values travel
inside the function's invocation and are set in `os.environ` around each input
(see `modal_ray.runtime.worker`).
Named secrets live in a state store, one JSON file per secret with mode 0600: the cluster's (on
its head, through `modal_ray.operations`) when this process uses a cluster, so that every machine
connected to it sees them; this machine's otherwise. Their values are read only to resolve a
secret for a function's inputs; listings and `info` give names and times.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modal_ray.exception import InvalidError, NotFoundError

from . import config, operations, state
from .ids import new_id
from .synchronizer import dual, dual_static


def _check_env(env: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in env.items():
        if not isinstance(k, str):
            raise InvalidError(f"Secret keys must be strings, not {type(k).__name__} ({k!r}).")
        if v is None:
            continue
        if not isinstance(v, str):
            raise InvalidError(f"Secret value for {k!r} must be a string, not {type(v).__name__}.")
        out[k] = v
    return out


class _SecretManager:
    """`modal.Secret.objects`: create, list and delete named secrets."""

    def __get__(self, obj: Any, objtype: Any = None) -> _SecretManager:
        return self

    @dual_static
    async def create(
        name: str,
        env_dict: Mapping[str, str],
        *,
        environment_name: str | None = None,
        allow_existing: bool = False,
        client: Any = None,
    ) -> None:
        env = config.environment_name(environment_name)
        state.check_object_name(name, "Secret")
        await asyncio.to_thread(
            operations.state_call,
            "secret_create",
            env,
            name,
            _check_env(env_dict),
            allow_existing,
        )

    @dual_static
    async def list(
        *,
        max_objects: int | None = None,
        created_before: datetime | str | None = None,
        environment_name: str | None = None,
        client: Any = None,
    ) -> list[Secret]:
        """Named secrets of the environment, newest first."""
        env = config.environment_name(environment_name)
        listed = await asyncio.to_thread(operations.state_call, "secret_list", env)
        if isinstance(created_before, str):
            created_before = datetime.fromisoformat(created_before)
        if created_before is not None and created_before.tzinfo is None:
            created_before = created_before.replace(tzinfo=timezone.utc)
        out = []
        for entry in listed:
            created = datetime.fromisoformat(entry["created_at"])
            if created_before is not None and created >= created_before:
                continue
            secret = Secret.from_name(entry["name"], environment_name=env)
            secret._created_at = created
            out.append(secret)
            if max_objects is not None and len(out) >= max_objects:
                break
        return out

    @dual_static
    async def delete(
        name: str,
        *,
        allow_missing: bool = False,
        environment_name: str | None = None,
        client: Any = None,
    ) -> None:
        env = config.environment_name(environment_name)
        state.check_object_name(name, "Secret")
        await asyncio.to_thread(operations.state_call, "secret_delete", env, name, allow_missing)


class Secret:
    """A dictionary of environment variables for a function's containers."""

    __module__ = "modal.secret"

    objects = _SecretManager()

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        name: str | None = None,
        environment_name: str | None = None,
        required_keys: tuple[str, ...] = (),
    ) -> None:
        self._env = env
        self._name = name
        self._environment_name = environment_name
        self._required_keys = required_keys
        self._object_id = new_id("st")
        self._created_at: datetime | None = None

    def __repr__(self) -> str:
        return f"Secret.from_name({self._name!r})" if self._name else "Secret.from_dict(...)"

    # -- constructors --------------------------------------------------------------------

    @staticmethod
    def from_dict(env_dict: dict[str, str | None] = {}) -> Secret:  # noqa: B006 - Modal's signature
        """A Secret from a dict; keys with value None are left out."""
        if not isinstance(env_dict, Mapping):
            raise InvalidError(
                "`Secret.from_dict` takes a dict of environment variable names to values."
            )
        return Secret(_check_env(env_dict))

    @staticmethod
    def from_local_environ(env_keys: list[str]) -> Secret:
        """A Secret with the named variables copied from this machine's environment."""
        if isinstance(env_keys, str):
            raise InvalidError(
                "`Secret.from_local_environ` takes a list of variable names, not a string."
            )
        missing = [k for k in env_keys if k not in os.environ]
        if missing:
            raise InvalidError(f"Local environment variables not set: {', '.join(missing)}")
        return Secret({k: os.environ[k] for k in env_keys})

    @staticmethod
    def from_dotenv(
        path: str | Path | None = None, *, filename: str = ".env", client: Any = None
    ) -> Secret:
        """A Secret from a `.env` file: found from `path` (file or folder) or from the current
        directory up."""
        from dotenv import dotenv_values, find_dotenv

        if path is not None:
            base = Path(path)
            folder = base.parent if base.is_file() or base.suffix else base
            env_path = str(folder / filename)
            if not os.path.isfile(env_path):
                env_path = ""
        else:
            env_path = find_dotenv(filename, usecwd=True)
        if not env_path:
            return Secret({})
        return Secret(_check_env(dotenv_values(env_path)))

    @staticmethod
    def from_name(
        name: str,
        *,
        environment_name: str | None = None,
        required_keys: list[str] = [],  # noqa: B006 - Modal's signature
        client: Any = None,
    ) -> Secret:
        """A reference to a named Secret (created with `modal secret create`), resolved when
        used."""
        state.check_object_name(name, "Secret")
        return Secret(
            name=name, environment_name=environment_name, required_keys=tuple(required_keys)
        )

    # -- resolution ------------------------------------------------------------------------

    def _resolve(self) -> dict[str, str]:
        """The variables, reading a named secret from the state store (the cluster's when this
        process uses a cluster)."""
        if self._env is not None:
            return dict(self._env)
        assert self._name is not None
        env = config.environment_name(self._environment_name)
        values: dict[str, str] = operations.state_call("secret_values", env, self._name)
        missing = [k for k in self._required_keys if k not in values]
        if missing:
            raise NotFoundError(
                f"Secret {self._name!r} is missing required keys: {', '.join(missing)}"
            )
        return values

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def object_id(self) -> str:
        return self._object_id

    @property
    def client(self) -> None:
        return None

    @dual
    async def hydrate(self, client: Any = None) -> Secret:
        self._resolve()
        return self

    @dual
    async def update(self, env_dict: dict[str, str]) -> None:
        """Add or replace keys of a named Secret."""
        if self._name is None:
            assert self._env is not None
            self._env.update(_check_env(env_dict))
            return
        merged = {**self._resolve(), **_check_env(env_dict)}
        await Secret.objects.create.aio(
            self._name, merged, environment_name=self._environment_name, allow_existing=True
        )

    @dual
    async def info(self, *, refresh: bool = False) -> Any:
        from modal_ray.types import SecretInfo

        created = self._created_at
        if self._name is not None and (created is None or refresh):
            env = config.environment_name(self._environment_name)
            info = await asyncio.to_thread(operations.state_call, "secret_info", env, self._name)
            created = self._created_at = datetime.fromisoformat(info["created_at"])
        return SecretInfo(name=self._name, created_at=created, created_by=None)

    @dual
    async def get_dashboard_url(self) -> str:
        return ""


def merge_secrets(secrets: list[Secret] | tuple[Secret, ...]) -> dict[str, str]:
    """Apply secrets in order; on a key clash the later one wins (Modal's rule)."""
    env: dict[str, str] = {}
    for s in secrets:
        if not isinstance(s, Secret):
            raise InvalidError(f"`secrets=` takes modal.Secret objects, not {type(s).__name__}.")
        env.update(s._resolve())
    return env
