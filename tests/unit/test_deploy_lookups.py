"""Lookups of deployed objects are lazy, as in Modal: `from_name` / `from_id` do no I/O (no
cluster is needed to create the handle, e.g. at a module's top level), and an unhydrated handle
pickles as its lookup."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

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


def test_first_use_without_a_cluster_says_what_to_do(tmp_path: Path) -> None:
    # In a fresh process: after the integration tests this one is connected to their Ray.
    script = """
import ray
import modal

def refuse(*args, **kwargs):
    raise RuntimeError("a lookup without a cluster must not start Ray")

ray.init = refuse
for lookup in (
    lambda: modal.Function.from_name("some-app", "f").hydrate(),
    lambda: modal.Cls.from_name("some-app", "C")(),
):
    try:
        lookup()
    except modal.exception.NotFoundError as exc:
        print("NotFoundError:", exc)
"""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MODAL_RAY_ADDRESS", "RAY_ADDRESS", "MODAL_ENVIRONMENT")
    }
    env["MODAL_RAY_STATE"] = str(tmp_path / "state")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout + result.stderr[-2000:]
    assert all("modal-ray cluster start" in line for line in lines), lines


def test_bad_environment_name_fails_at_from_name() -> None:
    with pytest.raises(InvalidError, match="Invalid environment name"):
        modal.Function.from_name("some-app", "f", environment_name="bad/env")
