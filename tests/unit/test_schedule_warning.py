"""`schedule=` is not fired yet: decorating a scheduled function says so instead of ignoring it."""

from __future__ import annotations

import pytest

import modal
from modal_ray import warn


def test_schedule_warns_that_it_does_not_fire() -> None:
    warn.reset_for_tests()  # the warning is once per process
    app = modal.App("sched-warning")
    with pytest.warns(UserWarning, match="schedules do not fire"):

        @app.function(schedule=modal.Period(seconds=5))
        def tick() -> None:
            pass
