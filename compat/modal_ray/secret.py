"""`modal.Secret`: environment variables injected into a function's worker at call time.

Secrets never go into a Ray `runtime_env` (the Ray dashboard shows it): the resolved values travel
inside the function's invocation and are set in `os.environ` around each input
(see `modal_ray.runtime.worker`).
Named secrets live in the state store, one JSON file per secret with mode 0600.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modal_ray.exception import AlreadyExistsError, InvalidError, NotFoundError

from . import config, state
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
        path = state.secrets_dir(env) / f"{state.check_object_name(name, 'Secret')}.json"
        if path.exists() and not allow_existing:
            raise AlreadyExistsError(f"Secret {name!r} already exists in environment {env!r}.")
        state.write_json_private(
            path,
            {"env": _check_env(env_dict), "created_at": datetime.now(timezone.utc).isoformat()},
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
        folder = state.secrets_dir(env)
        if not folder.exists():
            return []
        if isinstance(created_before, str):
            created_before = datetime.fromisoformat(created_before)
        paths = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        out = []
        for p in paths:
            created = datetime.fromtimestamp(p.stat().st_mtime, timezone.utc)
            if created_before is not None:
                cutoff = (
                    created_before
                    if created_before.tzinfo
                    else created_before.replace(tzinfo=timezone.utc)
                )
                if created >= cutoff:
                    continue
            out.append(Secret.from_name(p.stem, environment_name=env))
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
        path = state.secrets_dir(env) / f"{state.check_object_name(name, 'Secret')}.json"
        if not path.exists():
            if allow_missing:
                return
            raise NotFoundError(f"Secret {name!r} not found in environment {env!r}.")
        path.unlink()


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
        """The variables, reading a named secret from the state store."""
        if self._env is not None:
            return dict(self._env)
        assert self._name is not None
        env = config.environment_name(self._environment_name)
        path = state.secrets_dir(env) / f"{self._name}.json"
        try:
            data = state.read_json(path)
        except FileNotFoundError:
            raise NotFoundError(
                f"Secret {self._name!r} not found in environment {env!r}. Create it with"
                f" `modal secret create {self._name} KEY=VALUE`."
            ) from None
        values = dict(data.get("env", {}))
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

        created = None
        if self._name is not None:
            env = config.environment_name(self._environment_name)
            path = state.secrets_dir(env) / f"{self._name}.json"
            if path.exists():
                created = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
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
