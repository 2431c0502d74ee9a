"""Names of app runs, pools and calls (`modal_ray.naming`) and the run context an App hands its
functions (`modal_ray.run_context`): made and parsed in one place, no Ray."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import modal
from modal_ray import naming
from modal_ray.config import APP_ID_ENV
from modal_ray.run_context import RunTasks, worker_context


@pytest.mark.parametrize("environment", ["main", "dev-2", "team_a.prod", "my-app"])
@pytest.mark.parametrize("tag", ["f", "Model.generate", "weird tag/ap-x", "x-ap-y"])
def test_pool_name_parses_back_to_its_run(environment: str, tag: str) -> None:
    app_id = naming.new_app_id()
    name = naming.pool_name(environment, app_id, tag, {"size": "xl"}, "")
    assert name.startswith(naming.run_prefix(environment, app_id))
    assert naming.parse_run_prefix(name) == (environment, app_id)
    assert naming.run_prefix_of(name) == naming.run_prefix(environment, app_id)


def test_pool_names_are_deterministic_and_distinct_per_parameter_set_and_variant() -> None:
    app_id = naming.new_app_id()
    one = naming.pool_name("main", app_id, "Model", {"a": 1, "b": "x"}, "")
    assert one == naming.pool_name("main", app_id, "Model", {"b": "x", "a": 1}, "")
    assert one != naming.pool_name("main", app_id, "Model", {"a": 2, "b": "x"}, "")
    assert one != naming.pool_name("main", app_id, "Model", {"a": 1, "b": "x"}, "|gpu")
    assert one != naming.pool_name("main", naming.new_app_id(), "Model", {"a": 1, "b": "x"}, "")


def test_code_outside_a_run_uses_the_local_app_id() -> None:
    name = naming.pool_name("main", None, "f", {}, "")
    assert naming.run_prefix_of(name) == "modal-main-ap-local-"
    assert naming.parse_run_prefix(name) == ("main", naming.LOCAL_APP_ID)


def test_names_that_are_not_pool_names_are_refused() -> None:
    for bad in ("serve-app", "modal-main-no-app-id"):
        with pytest.raises(ValueError):
            naming.parse_run_prefix(bad)


def test_call_and_app_ids() -> None:
    call_id = naming.new_call_id()
    assert call_id.startswith("fc-")
    assert naming.is_call_id(call_id)
    assert not naming.is_call_id(naming.new_app_id())
    assert naming.new_app_id().startswith("ap-")


def test_an_app_not_running_gives_the_worker_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(APP_ID_ENV, "ap-fromdriver")
    monkeypatch.setenv("MODAL_ENVIRONMENT", "staging")
    secret = modal.Secret.from_dict({"K": "v"})
    app = modal.App("ctx", secrets=[secret], volumes={}, include_source=False)
    ctx = app.run_context()
    assert (ctx.environment, ctx.app_id, ctx.app_name, ctx.running) == (
        "staging",
        "ap-fromdriver",
        "ctx",
        False,
    )
    assert ctx.secrets == (secret,)
    assert ctx.include_source is False
    assert ctx.tasks is not None
    bare = worker_context()
    assert (bare.environment, bare.app_id, bare.tasks) == ("staging", "ap-fromdriver", None)


class _Call:
    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelled = False

    def _owned_task(self) -> asyncio.Task[Any]:
        return self.task

    async def _cancel_owned(self) -> None:
        self.cancelled = True
        self.task.cancel()


def test_run_tasks_cancel_or_wait_for_what_the_run_started() -> None:
    async def scenario(stop_by_cancel: bool) -> tuple[bool, bool, bool]:
        group = RunTasks()
        never = asyncio.Event()
        background = asyncio.get_running_loop().create_task(
            never.wait() if stop_by_cancel else asyncio.sleep(0)
        )
        call = _Call(
            asyncio.get_running_loop().create_task(
                never.wait() if stop_by_cancel else asyncio.sleep(0)
            )
        )
        group.add(background)
        group.add(call)
        if stop_by_cancel:
            await group.cancel_all()
            await asyncio.gather(background, call.task, return_exceptions=True)
        else:
            await group.wait_all()
        return background.cancelled(), call.task.cancelled(), call.cancelled

    assert asyncio.run(scenario(True)) == (True, True, True)
    assert asyncio.run(scenario(False)) == (False, False, False)
