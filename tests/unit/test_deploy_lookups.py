"""Lookups of deployed objects are lazy, as in Modal: `from_name` / `from_id` do no I/O (no
cluster is needed to create the handle, e.g. at a module's top level), and an unhydrated handle
pickles as its lookup."""

from __future__ import annotations

import pickle

import pytest

import modal
from modal.exception import InvalidError


def test_from_name_needs_no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODAL_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    f = modal.Function.from_name("some-app", "f")
    c = modal.Cls.from_name("some-app", "C")
    g = modal.Function.from_id("fu-123")
    assert isinstance(f, modal.Function)
    assert isinstance(c, modal.Cls)
    assert "not hydrated" in repr(f)
    assert "not hydrated" in repr(c)
    assert "not hydrated" in repr(g)
    again = pickle.loads(pickle.dumps(f))
    assert "some-app.f" in repr(again)


def test_first_use_without_a_cluster_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODAL_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(modal.exception.NotFoundError, match="modal-ray cluster start"):
        modal.Function.from_name("some-app", "f").hydrate()
    with pytest.raises(modal.exception.NotFoundError, match="modal-ray cluster start"):
        modal.Cls.from_name("some-app", "C")()


def test_bad_environment_name_fails_at_from_name() -> None:
    with pytest.raises(InvalidError, match="Invalid environment name"):
        modal.Function.from_name("some-app", "f", environment_name="bad/env")
