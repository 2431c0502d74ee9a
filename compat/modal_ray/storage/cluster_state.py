"""State that belongs to a whole cluster, not to one environment: named secrets and the list of
environments.

Role: the rules, in plain Python over files of one state store. Without a cluster (the embedded
Ray, or a one-shot CLI command) a client runs them in-process over its own state store; on a
cluster one detached actor on the head hosts them over the head's state store
(`modal_ray.backends.ray.ops`), so every client, on any machine, sees the same secrets and
environments.

Layout (under the state root; documented in docs/operations.md):

    secrets/<environment>/<name>.json   {"env": {KEY: value}, "created_at": iso-8601}, mode 0600
    environments.json                   {name: {"created_at": epoch s, "web_suffix": str}}, 0600

Invariants:
- Secret values leave this module only through `secret_values` (a client resolving a secret for
  the worker's environment at call time); `secret_list` and `secret_info` give names and times.
- The default environment always exists. An environment is also listed when it was used without
  being created (`-e NAME` makes the Ray namespace on first use): it has secrets or an app
  registry in this store.
- Every call is one whole operation on the files (a host runs them one at a time).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from modal_ray.config import DEFAULT_ENVIRONMENT
from modal_ray.exception import AlreadyExistsError, InvalidError, NotFoundError
from modal_ray.state import check_object_name, read_json, write_json_private

ENVIRONMENTS_FILE = "environments.json"


def _check_environment(name: str) -> str:
    from modal_ray.settings import ENVIRONMENT_NAME_RULE, valid_environment_name

    if not isinstance(name, str) or not name or not valid_environment_name(name):
        raise InvalidError(f"Invalid environment name {name!r}: use {ENVIRONMENT_NAME_RULE}.")
    return name


class ClusterState:
    """Secrets and environments of one state store (see the module docstring)."""

    OPERATIONS: ClassVar[frozenset[str]] = frozenset(
        {
            "secret_create",
            "secret_values",
            "secret_info",
            "secret_list",
            "secret_delete",
            "env_list",
            "env_create",
            "env_exists",
            "env_delete",
            "env_update",
        }
    )

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def call(self, method: str, args: tuple[Any, ...]) -> Any:
        if method not in self.OPERATIONS:
            raise InvalidError(f"The cluster state has no operation {method!r}.")
        return getattr(self, method)(*args)

    # -- secrets ---------------------------------------------------------------------------

    def _secret_path(self, environment: str, name: str) -> Path:
        _check_environment(environment)
        return self.root / "secrets" / environment / f"{check_object_name(name, 'Secret')}.json"

    def secret_create(
        self, environment: str, name: str, env: dict[str, str], allow_existing: bool
    ) -> None:
        path = self._secret_path(environment, name)
        if path.exists() and not allow_existing:
            raise AlreadyExistsError(
                f"Secret {name!r} already exists in environment {environment!r}."
            )
        write_json_private(
            path, {"env": dict(env), "created_at": datetime.now(timezone.utc).isoformat()}
        )

    def _read(self, environment: str, name: str) -> dict[str, Any]:
        path = self._secret_path(environment, name)
        try:
            data: dict[str, Any] = read_json(path)
        except FileNotFoundError:
            raise NotFoundError(
                f"Secret {name!r} not found in environment {environment!r}. Create it with"
                f" `modal secret create {name} KEY=VALUE`"
                + ("" if environment == DEFAULT_ENVIRONMENT else f" -e {environment}")
                + "."
            ) from None
        if "created_at" not in data:
            stamp = path.stat().st_mtime
            data["created_at"] = datetime.fromtimestamp(stamp, timezone.utc).isoformat()
        return data

    def secret_values(self, environment: str, name: str) -> dict[str, str]:
        return dict(self._read(environment, name).get("env", {}))

    def secret_info(self, environment: str, name: str) -> dict[str, Any]:
        """Name, creation time and key names (never values)."""
        data = self._read(environment, name)
        return {"name": name, "created_at": data["created_at"], "keys": sorted(data.get("env", {}))}

    def secret_list(self, environment: str) -> list[dict[str, Any]]:
        """The environment's secrets (name, creation time), newest first."""
        folder = self.root / "secrets" / _check_environment(environment)
        if not folder.is_dir():
            return []
        out = []
        for path in folder.glob("*.json"):
            with contextlib.suppress(FileNotFoundError, ValueError, InvalidError):
                out.append(self.secret_info(environment, path.stem))
        out.sort(key=lambda s: s["created_at"], reverse=True)
        for s in out:
            del s["keys"]
        return out

    def secret_delete(self, environment: str, name: str, allow_missing: bool) -> bool:
        path = self._secret_path(environment, name)
        try:
            path.unlink()
        except FileNotFoundError:
            if allow_missing:
                return False
            raise NotFoundError(
                f"Secret {name!r} not found in environment {environment!r}."
            ) from None
        return True

    # -- environments ----------------------------------------------------------------------

    def _created(self) -> dict[str, dict[str, Any]]:
        try:
            data: dict[str, dict[str, Any]] = read_json(self.root / ENVIRONMENTS_FILE)
        except FileNotFoundError:
            return {}
        return data

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        write_json_private(self.root / ENVIRONMENTS_FILE, data)

    def _registries(self) -> set[str]:
        """Environments whose app registry has had an app (a lookup alone, say of a misspelt
        environment, makes an empty registry file: that is no use of the environment)."""
        out = set()
        for path in (self.root / "registry").glob("*.sqlite"):
            try:
                with contextlib.closing(
                    sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
                ) as db:
                    if db.execute("SELECT 1 FROM apps LIMIT 1").fetchone() is not None:
                        out.add(path.stem)
            except sqlite3.Error:
                continue  # being created, or not a registry of ours
        return out

    def _used(self) -> set[str]:
        """Environments used without `create`: they have secrets or an app registry."""
        secrets = (self.root / "secrets").glob("*")
        return {p.name for p in secrets if p.is_dir() and any(p.iterdir())} | self._registries()

    def env_list(self) -> list[dict[str, Any]]:
        """Every environment: name, creation time (None if made on first use), web suffix,
        whether it was created explicitly, whether it is the default, and whether it has an
        app registry."""
        created = self._created()
        registries = self._registries()
        names = {DEFAULT_ENVIRONMENT} | set(created) | self._used()
        out = []
        for name in sorted(names, key=lambda n: (n != DEFAULT_ENVIRONMENT, n)):
            entry = created.get(name, {})
            out.append(
                {
                    "name": name,
                    "created_at": entry.get("created_at"),
                    "web_suffix": entry.get("web_suffix", ""),
                    "created": name in created or name == DEFAULT_ENVIRONMENT,
                    "default": name == DEFAULT_ENVIRONMENT,
                    "registry": name in registries,
                }
            )
        return out

    def env_exists(self, name: str) -> bool:
        return any(e["name"] == name for e in self.env_list())

    def env_create(self, name: str) -> None:
        _check_environment(name)
        created = self._created()
        if name in created or name == DEFAULT_ENVIRONMENT:
            raise AlreadyExistsError(f"Environment {name!r} already exists.")
        created[name] = {"created_at": time.time(), "web_suffix": ""}
        self._save(created)

    def env_delete(self, name: str) -> None:
        """Forget `name` and remove its secrets and its app registry's file (the caller made
        sure that no app is deployed in it and stopped its registry)."""
        _check_environment(name)
        if name == DEFAULT_ENVIRONMENT:
            raise InvalidError(f"The default environment {name!r} cannot be deleted.")
        if not self.env_exists(name):
            raise NotFoundError(f"Environment {name!r} not found; see `modal environment list`.")
        created = self._created()
        if created.pop(name, None) is not None:
            self._save(created)
        shutil.rmtree(self.root / "secrets" / name, ignore_errors=True)
        for path in (self.root / "registry").glob(f"{name}.sqlite*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def env_update(self, name: str, new_name: str | None, web_suffix: str | None) -> None:
        """Rename (the caller made sure that no app is deployed in it) and/or set the web
        suffix."""
        _check_environment(name)
        if not self.env_exists(name):
            raise NotFoundError(f"Environment {name!r} not found; see `modal environment list`.")
        created = self._created()
        entry = created.get(name, {"created_at": None, "web_suffix": ""})
        if web_suffix is not None:
            entry["web_suffix"] = web_suffix
        if new_name is not None and new_name != name:
            _check_environment(new_name)
            if name == DEFAULT_ENVIRONMENT:
                raise InvalidError(f"The default environment {name!r} cannot be renamed.")
            if self.env_exists(new_name):
                raise AlreadyExistsError(f"Environment {new_name!r} already exists.")
            created.pop(name, None)
            old = self.root / "secrets" / name
            if old.is_dir():
                old.rename(self.root / "secrets" / new_name)
            for path in (self.root / "registry").glob(f"{name}.sqlite*"):
                path.unlink()
            name = new_name
        created[name] = entry
        self._save(created)


__all__ = ["ENVIRONMENTS_FILE", "ClusterState"]
