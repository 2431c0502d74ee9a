"""Secrets and environment variables reach the worker at call time, never through runtime_env."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import ray

import modal
from modal.exception import NotFoundError

SECRET_VALUE = "s3cr3t-value-for-tests"

app = modal.App(
    "test-secrets",
    secrets=[modal.Secret.from_dict({"APP_LEVEL": "app", "CLASH": "from-app"})],
)


@app.function(
    secrets=[
        modal.Secret.from_dict({"TOKEN": SECRET_VALUE, "CLASH": "first", "DROPPED": None}),
        modal.Secret.from_dict({"CLASH": "second"}),
    ],
    env={"PLAIN": "plain-value"},
)
def read_env() -> dict[str, str | None]:
    ctx = ray.get_runtime_context()
    return {
        "TOKEN": os.environ.get("TOKEN"),
        "APP_LEVEL": os.environ.get("APP_LEVEL"),
        "CLASH": os.environ.get("CLASH"),
        "DROPPED": os.environ.get("DROPPED"),
        "PLAIN": os.environ.get("PLAIN"),
        "MODAL_ENVIRONMENT": os.environ.get("MODAL_ENVIRONMENT"),
        "MODAL_TASK_ID": os.environ.get("MODAL_TASK_ID"),
        "runtime_env": json.dumps(ctx.runtime_env),
    }


@app.function()
def read_token() -> str | None:
    return os.environ.get("TOKEN")


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with app.run():
        yield app


def test_secrets_are_env_vars_in_order(running: modal.App) -> None:
    env = read_env.remote()
    assert env["TOKEN"] == SECRET_VALUE
    assert env["APP_LEVEL"] == "app"
    assert env["CLASH"] == "second"  # later secrets win
    assert env["DROPPED"] is None
    assert env["PLAIN"] == "plain-value"
    assert env["MODAL_ENVIRONMENT"] == "main"
    assert str(env["MODAL_TASK_ID"]).startswith("ta-")


def test_secrets_are_not_in_runtime_env(running: modal.App) -> None:
    env = read_env.remote()
    assert SECRET_VALUE not in str(env["runtime_env"])


def test_secrets_do_not_leak_to_other_functions(running: modal.App) -> None:
    # The same worker process may run both functions: the secret must be gone afterwards.
    for _ in range(5):
        read_env.remote()
        assert read_token.remote() is None
    assert os.environ.get("TOKEN") is None


def test_secret_constructors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOCAL_ONE", "1")
    assert modal.Secret.from_local_environ(["LOCAL_ONE"])._resolve() == {"LOCAL_ONE": "1"}
    with pytest.raises(modal.exception.InvalidError, match="NOT_SET_ANYWHERE"):
        modal.Secret.from_local_environ(["NOT_SET_ANYWHERE"])
    (tmp_path / ".env").write_text("A=1\nB='two words'\n")
    assert modal.Secret.from_dotenv(tmp_path)._resolve() == {"A": "1", "B": "two words"}
    monkeypatch.chdir(tmp_path)
    assert modal.Secret.from_dotenv()._resolve()["A"] == "1"
    with pytest.raises(modal.exception.InvalidError):
        modal.Secret.from_dict({"K": 1})  # type: ignore[dict-item]


def test_named_secret_from_state_store(running: modal.App) -> None:
    modal.Secret.objects.create("test-named", {"TOKEN": "named-value"}, allow_existing=True)
    other = modal.App("test-named-secret")

    @other.function(
        secrets=[modal.Secret.from_name("test-named", required_keys=["TOKEN"])], serialized=True
    )
    def f() -> str | None:
        return os.environ.get("TOKEN")

    with other.run():
        assert f.remote() == "named-value"
    root = Path(os.environ["MODAL_RAY_STATE"])
    stored = root / "secrets" / "main" / "test-named.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    with pytest.raises(NotFoundError):
        modal.Secret.from_name("no-such-secret")._resolve()
    with pytest.raises(NotFoundError, match="MISSING"):
        modal.Secret.from_name("test-named", required_keys=["MISSING"])._resolve()
    assert [s.name for s in modal.Secret.objects.list()] == ["test-named"]
    modal.Secret.objects.delete("test-named")
    assert modal.Secret.objects.list() == []
