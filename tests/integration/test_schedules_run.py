"""Schedules of an ephemeral app (`with app.run():`) fire while it runs, as on Modal, and stop
with it; a failing scheduled call is logged and the schedule goes on."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

import modal


def _count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_period_fires_while_the_app_runs_and_stops_with_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = tmp_path / "ticks.txt"
    app = modal.App("test-schedules-run")

    @app.function(schedule=modal.Period(seconds=1), env={"TICKS": str(ticks)})
    def tick() -> None:
        import os
        import time

        with open(os.environ["TICKS"], "a") as f:
            f.write(f"{time.time()}\n")

    @app.function(schedule=modal.Period(seconds=1))
    def boom() -> None:
        raise ValueError("scheduled failure")

    caplog.set_level(logging.ERROR, logger="modal_ray.schedules")
    with app.run():
        run_tasks = app._tasks
        deadline = time.monotonic() + 60
        while (_count(ticks) < 3 or "scheduled failure" not in caplog.text) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert _count(ticks) >= 3  # it kept firing after boom's failures
        assert "boom (Period(seconds=1)) (tick " in caplog.text
        assert "ValueError: scheduled failure" in caplog.text
    fired = _count(ticks)
    assert run_tasks._schedules is None  # the run's scheduler was stopped and awaited
    time.sleep(2.5)  # more than two periods: a live schedule would have fired again
    assert _count(ticks) == fired
