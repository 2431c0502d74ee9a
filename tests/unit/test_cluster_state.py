"""The cluster's shared state (named secrets, environments) over one state store, in-process."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from modal_ray.exception import AlreadyExistsError, InvalidError, NotFoundError
from modal_ray.storage.cluster_state import ClusterState


def test_secrets_are_private_files_and_listings_hold_no_values(tmp_path: Path) -> None:
    state = ClusterState(tmp_path)
    state.call("secret_create", ("main", "db", {"PASSWORD": "hunter2"}, False))
    path = tmp_path / "secrets" / "main" / "db.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    with pytest.raises(AlreadyExistsError):
        state.call("secret_create", ("main", "db", {"PASSWORD": "x"}, False))
    state.call("secret_create", ("main", "db", {"PASSWORD": "hunter3"}, True))
    assert state.call("secret_values", ("main", "db")) == {"PASSWORD": "hunter3"}
    listed = state.call("secret_list", ("main",))
    info = state.call("secret_info", ("main", "db"))
    assert [s["name"] for s in listed] == ["db"]
    assert "hunter3" not in json.dumps(listed) + json.dumps(info)
    assert info["keys"] == ["PASSWORD"]
    # Environments are separate.
    assert state.call("secret_list", ("other",)) == []
    with pytest.raises(NotFoundError, match="'db' not found in environment 'other'"):
        state.call("secret_values", ("other", "db"))
    assert state.call("secret_delete", ("main", "db", False)) is True
    assert state.call("secret_delete", ("main", "db", True)) is False
    with pytest.raises(NotFoundError):
        state.call("secret_delete", ("main", "db", False))
    with pytest.raises(InvalidError):
        state.call("secret_values", ("main", "../escape"))
    with pytest.raises(InvalidError):
        state.call("secret_list", ("../up",))
    with pytest.raises(InvalidError, match="no operation"):
        state.call("__init__", ())


def test_environments_created_used_renamed_deleted(tmp_path: Path) -> None:
    state = ClusterState(tmp_path)
    assert [e["name"] for e in state.call("env_list", ())] == ["main"]
    state.call("env_create", ("staging",))
    with pytest.raises(AlreadyExistsError):
        state.call("env_create", ("staging",))
    with pytest.raises(AlreadyExistsError):
        state.call("env_create", ("main",))
    with pytest.raises(InvalidError):
        state.call("env_create", ("bad name",))
    # Used without being created: listed, marked as such.
    state.call("secret_create", ("adhoc", "s", {"K": "v"}, False))
    (tmp_path / "registry").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "registry" / "reg.sqlite")) as db:
        db.execute("CREATE TABLE apps(name TEXT)")
        db.execute("INSERT INTO apps VALUES ('a')")
        db.commit()
    with contextlib.closing(sqlite3.connect(tmp_path / "registry" / "looked-up.sqlite")) as db:
        db.execute("CREATE TABLE apps(name TEXT)")  # a lookup made it; no app was ever there
    listed = {e["name"]: e for e in state.call("env_list", ())}
    assert list(listed) == ["main", "adhoc", "reg", "staging"]
    assert listed["main"]["default"]
    assert listed["staging"]["created"]
    assert not listed["adhoc"]["created"]
    assert listed["reg"]["registry"]
    assert (tmp_path / "environments.json").stat().st_mode & 0o777 == 0o600
    state.call("env_update", ("adhoc", "renamed", "sfx"))
    assert state.call("secret_values", ("renamed", "s")) == {"K": "v"}
    assert not state.call("env_exists", ("adhoc",))
    assert {e["name"]: e for e in state.call("env_list", ())}["renamed"]["web_suffix"] == "sfx"
    with pytest.raises(AlreadyExistsError):
        state.call("env_update", ("renamed", "staging", None))
    state.call("env_delete", ("renamed",))
    state.call("env_delete", ("reg",))
    assert not (tmp_path / "registry" / "reg.sqlite").exists()
    assert [e["name"] for e in state.call("env_list", ())] == ["main", "staging"]
    with pytest.raises(NotFoundError, match="'nope' not found"):
        state.call("env_delete", ("nope",))
    with pytest.raises(InvalidError, match="default"):
        state.call("env_delete", ("main",))
