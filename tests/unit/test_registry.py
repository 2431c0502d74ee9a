"""Rules of the app registry (`modal_ray.storage.registry_server`), run in-process over a
temporary file with no Ray: stable app ids, versions, lookups and their errors, stop, packages,
concurrent deploys."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from modal.exception import NotFoundError
from modal_ray.storage.registry_server import RegistryServer, registry_path


@pytest.fixture
def reg(tmp_path: Path) -> RegistryServer:
    return RegistryServer(registry_path(tmp_path, "main"), environment="main")


def _deploy(reg: RegistryServer, name: str, body: bytes = b"r1", dep: str = "dp-1") -> dict:
    app_id = reg.call("reserve", True, (name,))
    objects = [("f", "function", body), ("C", "class", b"c-" + body)]
    return reg.call("deploy", True, (name, app_id, "", dep, objects, {"gcs://p.zip": b"zip"}))


def test_redeploy_keeps_app_id_and_object_ids(reg: RegistryServer) -> None:
    first = _deploy(reg, "app")
    f1 = reg.call("lookup", False, ("app", "f", "function"))
    second = _deploy(reg, "app", b"r2", "dp-2")
    f2 = reg.call("lookup", False, ("app", "f", "function"))
    assert second["app_id"] == first["app_id"]
    assert (first["version"], second["version"]) == (1, 2)
    assert f1["record"] == b"r1"
    assert f2["record"] == b"r2"
    assert f1["object_id"] == f2["object_id"]
    assert reg.call("lookup_id", False, (f1["object_id"],))["record"] == b"r2"
    assert reg.call("lookup", False, ("app", "f", "function", 1))["record"] == b"r1"
    assert reg.call("lookup_app", False, (first["app_id"],))["name"] == "app"


def test_lookup_errors_name_what_was_looked_up(reg: RegistryServer) -> None:
    _deploy(reg, "app")
    with pytest.raises(NotFoundError, match="App 'nope' not found in environment 'main'"):
        reg.call("lookup", False, ("nope", "f", "function"))
    with pytest.raises(NotFoundError, match=r"Function 'g' not found in app 'app'.*'f'"):
        reg.call("lookup", False, ("app", "g", "function"))
    with pytest.raises(NotFoundError, match="'C' in app 'app' is a Cls, not a Function"):
        reg.call("lookup", False, ("app", "C", "function"))
    with pytest.raises(NotFoundError, match="'f' in app 'app' is a Function, not a Cls"):
        reg.call("lookup", False, ("app", "f", "class"))
    with pytest.raises(NotFoundError, match="No deployed object with id 'fu-x'"):
        reg.call("lookup_id", False, ("fu-x",))


def test_reserved_but_not_deployed_is_not_found(reg: RegistryServer) -> None:
    app_id = reg.call("reserve", True, ("half",))
    with pytest.raises(NotFoundError, match="App 'half' not found"):
        reg.call("lookup_app", False, ("half",))
    assert reg.call("list_apps", False, ()) == []
    assert reg.call("is_deployed", False, (app_id,)) is True  # its pools are being made


def test_stop_hides_the_app_and_a_new_deploy_is_a_new_app(reg: RegistryServer) -> None:
    app_id = _deploy(reg, "app")["app_id"]
    assert reg.call("stop", True, ("app",)) == {"name": "app", "app_id": app_id}
    assert reg.call("is_deployed", False, (app_id,)) is False
    with pytest.raises(NotFoundError, match="App 'app' not found"):
        reg.call("lookup", False, ("app", "f", "function"))
    with pytest.raises(NotFoundError):
        reg.call("stop", True, ("app",))
    assert [a["state"] for a in reg.call("list_apps", False, ())] == ["stopped"]
    again = _deploy(reg, "app", b"r3", "dp-3")
    assert again["app_id"] != app_id  # a stopped app is not restarted
    assert again["version"] == 1
    assert reg.call("lookup", False, ("app", "f", "function"))["record"] == b"r3"
    assert reg.call("is_deployed", False, (app_id,)) is False


def test_packages_and_persistence(tmp_path: Path, reg: RegistryServer) -> None:
    _deploy(reg, "app")
    assert reg.call("package", False, ("gcs://p.zip",)) == b"zip"
    assert reg.call("package", False, ("gcs://other.zip",)) is None
    reopened = RegistryServer(registry_path(tmp_path, "main"), environment="main")
    assert reopened.call("lookup", False, ("app", "f", "function"))["record"] == b"r1"
    apps = reopened.call("list_apps", False, ())
    assert [(a["name"], a["state"], a["version"], a["objects"]) for a in apps] == [
        ("app", "deployed", 1, 2)
    ]
    assert oct(registry_path(tmp_path, "main").stat().st_mode & 0o777) == "0o600"


def test_concurrent_deploys_of_one_name_stay_consistent(reg: RegistryServer) -> None:
    results: list[dict] = []
    errors: list[BaseException] = []

    def deploy(i: int) -> None:
        try:
            results.append(_deploy(reg, "race", f"r{i}".encode(), f"dp-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deploy, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r["app_id"] for r in results}) == 1
    assert sorted(r["version"] for r in results) == list(range(1, 9))
    last = max(results, key=lambda r: r["version"])
    current = reg.call("lookup", False, ("race", "f", "function"))
    assert current["version"] == last["version"] == 8
    for v in range(1, 9):  # every version complete: both of its objects
        assert reg.call("lookup", False, ("race", "C", "class", v))["record"].startswith(b"c-")


def test_history_and_rollback(reg: RegistryServer) -> None:
    _deploy(reg, "app", b"r1", "dp-1")
    _deploy(reg, "app", b"r2", "dp-2")
    _deploy(reg, "app", b"r3", "dp-3")
    back = reg.call("rollback", True, ("app", None))  # default: the version before the current
    assert (back["version"], back["restored"]) == (4, 2)
    assert reg.call("lookup", False, ("app", "f", "function"))["record"] == b"r2"
    back = reg.call("rollback", True, ("app", 1))
    assert (back["version"], back["restored"]) == (5, 1)
    assert reg.call("lookup", False, ("app", "C", "class"))["record"] == b"c-r1"
    history = reg.call("history", False, ("app",))
    assert [h["version"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["tag"] for h in history][3:] == ["rollback to v2", "rollback to v1"]
    with pytest.raises(NotFoundError, match="no earlier version 7"):
        reg.call("rollback", True, ("app", 7))
    with pytest.raises(NotFoundError, match="App 'nope' not found"):
        reg.call("history", False, ("nope",))
