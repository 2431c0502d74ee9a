"""`modal.Environment` over the state this process uses (this machine's store here; the cluster's
when another test of the process connected one): the objects API agrees with `modal environment`."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import modal
from modal.exception import AlreadyExistsError, InvalidError, NotFoundError, UnimplementedError


@pytest.fixture(autouse=True)
def _own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_RAY_STATE", str(tmp_path))
    monkeypatch.delenv("MODAL_ENVIRONMENT", raising=False)


def _names() -> list[str]:
    return [e.name for e in modal.Environment.objects.list()]


def test_create_list_look_up_and_delete() -> None:
    name = f"staging-{uuid.uuid4().hex[:8]}"
    before = _names()
    assert before[0] == "main"
    modal.Environment.objects.create(name)
    with pytest.raises(AlreadyExistsError):
        modal.Environment.objects.create(name)
    assert set(_names()) == {*before, name}
    staging = modal.Environment.from_name(name).hydrate()
    assert staging.object_id == f"en-{name}"
    assert staging in modal.Environment.objects.list()
    modal.Environment.objects.delete(name)
    assert _names() == before
    with pytest.raises(NotFoundError, match=f"'{name}' not found"):
        modal.Environment.from_name(name).hydrate()
    with pytest.raises(NotFoundError):
        modal.Environment.objects.delete(name)


def test_from_name_is_lazy_and_can_create() -> None:
    name = f"later-{uuid.uuid4().hex[:8]}"
    env = modal.Environment.from_name(name, create_if_missing=True)  # nothing made yet
    assert name not in _names()
    assert env.hydrate().name == name
    assert name in _names()
    modal.Environment.objects.delete(name)


def test_context_and_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    assert modal.Environment.from_context().name == "main"
    monkeypatch.setenv("MODAL_ENVIRONMENT", "dev")
    assert modal.Environment.from_context().name == "dev"
    for bad in ("", "has space", "x" * 200):
        with pytest.raises(InvalidError):
            modal.Environment.from_name(bad)
    with pytest.raises(InvalidError, match="cannot be deleted"):
        modal.Environment.objects.delete("main")
    with pytest.raises(UnimplementedError, match="roles"):
        modal.Environment.objects.create("x", restricted=True)
    with pytest.raises(UnimplementedError):
        _ = modal.Environment.from_context().members
