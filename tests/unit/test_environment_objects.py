"""`modal.Environment` over this machine's state store (no cluster configured): the objects API
agrees with `modal environment ...`."""

from __future__ import annotations

from pathlib import Path

import pytest

import modal
from modal.exception import AlreadyExistsError, InvalidError, NotFoundError, UnimplementedError


@pytest.fixture(autouse=True)
def _own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_RAY_STATE", str(tmp_path))
    monkeypatch.delenv("MODAL_ENVIRONMENT", raising=False)


def test_create_list_look_up_and_delete() -> None:
    assert [e.name for e in modal.Environment.objects.list()] == ["main"]
    modal.Environment.objects.create("staging")
    with pytest.raises(AlreadyExistsError):
        modal.Environment.objects.create("staging")
    assert [e.name for e in modal.Environment.objects.list()] == ["main", "staging"]
    staging = modal.Environment.from_name("staging").hydrate()
    assert staging.object_id == "en-staging"
    assert staging == modal.Environment.objects.list()[1]
    modal.Environment.objects.delete("staging")
    with pytest.raises(NotFoundError, match="'staging' not found"):
        modal.Environment.from_name("staging").hydrate()
    with pytest.raises(NotFoundError):
        modal.Environment.objects.delete("staging")


def test_from_name_is_lazy_and_can_create() -> None:
    env = modal.Environment.from_name("later", create_if_missing=True)  # nothing made yet
    assert [e.name for e in modal.Environment.objects.list()] == ["main"]
    assert env.hydrate().name == "later"
    assert "later" in [e.name for e in modal.Environment.objects.list()]


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
