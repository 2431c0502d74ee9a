"""Schedules without Ray: Period and Cron fire times (Cron across DST changes, against a
minute-by-minute reference computed here), catch-up, the fire log's at-most-once claim, and the
table that fires due ticks with bounded overlap."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import modal
from modal.exception import InvalidError
from modal_ray import schedules
from modal_ray.schedules import FireLog, Scheduled, ScheduleTable, due, next_fire

NY = ZoneInfo("America/New_York")
UTC = timezone.utc


def ts(*args: int, tz: ZoneInfo | None = None) -> float:
    return datetime(*args, tzinfo=tz or UTC).timestamp()  # type: ignore[arg-type,misc]


# -- a reference cron, minute by minute ------------------------------------------------------


def _field(text: str, lo: int, hi: int) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/")
            step = int(s)
        if part == "*":
            a, b = lo, hi
        elif "-" in part:
            a, b = (int(x) for x in part.split("-"))
        else:
            a = b = int(part)
        out.update(range(a, b + 1, step))
    return out


def _matches(expr: str, wall: datetime) -> bool:
    minute, hour, dom, month, dow = expr.split()
    return (
        wall.minute in _field(minute, 0, 59)
        and wall.hour in _field(hour, 0, 23)
        and wall.day in _field(dom, 1, 31)
        and wall.month in _field(month, 1, 12)
        and (wall.weekday() + 1) % 7 in _field(dow, 0, 6)
    )


def reference_fires(expr: str, tz: ZoneInfo, start: float, end: float) -> list[float]:
    """Every UTC minute in [start, end) whose local wall-clock time matches; a matching time
    skipped by a spring-forward gap fires at the first minute after the gap; with a fixed hour,
    the second pass of a repeated (fall-back) wall-clock time does not fire."""
    fixed_hour = not expr.split()[1].startswith("*")
    out: list[float] = []
    t = datetime.fromtimestamp(start, UTC)
    previous: datetime | None = None
    while t.timestamp() < end:
        local = t.astimezone(tz)
        wall = local.replace(tzinfo=None)
        fire = _matches(expr, wall) and not (fixed_hour and local.fold == 1)
        if previous is not None and wall - previous > timedelta(minutes=1):
            skipped = previous + timedelta(minutes=1)
            while skipped < wall:
                fire = fire or _matches(expr, skipped)
                skipped += timedelta(minutes=1)
        if fire:
            out.append(t.timestamp())
        previous = wall
        t += timedelta(minutes=1)
    return out


def computed_fires(expr: str, tz: str, start: float, end: float) -> list[float]:
    spec = schedules.cron_spec(expr, tz)
    out: list[float] = []
    t = next_fire(spec, start - 1, start - 1)
    while t < end:
        out.append(t)
        t = next_fire(spec, start - 1, t)
    return out


@pytest.mark.parametrize(
    "expr",
    [
        "0 6 * * *",  # Modal's example: 6 am New York time, DST or not
        "30 2 * * *",  # 2:30 does not exist on the spring-forward day
        "*/15 2 * * *",
        "30 1 * * *",  # 1:30 happens twice on the fall-back day
        "0 * * * *",
        "*/20 * * * *",
        "15 1,3 * * 0",  # Sundays (both changes fall on Sundays)
    ],
)
@pytest.mark.parametrize(
    "window",
    [
        (ts(2026, 3, 7, 0, tz=NY), ts(2026, 3, 10, 0, tz=NY)),  # clocks go forward on Mar 8
        (ts(2026, 10, 31, 0, tz=NY), ts(2026, 11, 3, 0, tz=NY)),  # clocks go back on Nov 1
    ],
    ids=["march", "november"],
)
def test_cron_fire_times_match_the_reference_across_dst(
    expr: str, window: tuple[float, float]
) -> None:
    start, end = window
    expected = reference_fires(expr, NY, start, end)
    assert expected  # the window covers fires
    assert computed_fires(expr, "America/New_York", start, end) == expected


def test_cron_examples_across_dst() -> None:
    spec = schedules.cron_spec("0 6 * * *", "America/New_York")
    # 6 am New York: 11:00 UTC in winter, 10:00 UTC in summer (Modal's reference page).
    assert next_fire(spec, 0, ts(2026, 3, 7, 12)) == ts(2026, 3, 8, 10)
    assert next_fire(spec, 0, ts(2026, 3, 6, 12)) == ts(2026, 3, 7, 11)
    daily = schedules.cron_spec("30 1 * * *", "America/New_York")
    first = next_fire(daily, 0, ts(2026, 10, 31, 12))
    assert first == ts(2026, 11, 1, 5, 30)  # 1:30 EDT
    assert next_fire(daily, 0, first) == ts(2026, 11, 2, 6, 30)  # not 1:30 EST the same day
    hourly = schedules.cron_spec("0 * * * *", "America/New_York")
    one_edt = ts(2026, 11, 1, 5)
    assert next_fire(hourly, 0, one_edt) == ts(2026, 11, 1, 6)  # 1:00 EST: elapsed time
    utc = schedules.cron_spec("5 4 * * *", "UTC")
    assert next_fire(utc, 0, ts(2026, 1, 1)) == ts(2026, 1, 1, 4, 5)


def test_period_ticks_are_anchored_and_do_not_drift() -> None:
    anchor = ts(2026, 1, 31, 10, 0)
    monthly = schedules.period_spec(
        years=0, months=1, weeks=0, days=0, hours=0, minutes=0, seconds=0
    )
    t, fires = anchor, []
    for _ in range(3):
        t = next_fire(monthly, anchor, t)
        fires.append(datetime.fromtimestamp(t, UTC).date().isoformat())
    assert fires == ["2026-02-28", "2026-03-31", "2026-04-30"]
    pi = schedules.period_spec(years=0, months=0, weeks=0, days=0, hours=0, minutes=0, seconds=3.25)
    assert next_fire(pi, 100.0, 100.0) == 103.25
    assert next_fire(pi, 100.0, 103.25) == 106.5
    assert next_fire(pi, 100.0, 50.0) == 103.25
    daily = schedules.period_spec(years=0, months=0, weeks=0, days=1, hours=0, minutes=0, seconds=0)
    assert next_fire(daily, anchor, anchor + 10 * 86400 + 5) == anchor + 11 * 86400


def test_due_coalesces_missed_ticks() -> None:
    every2 = schedules.period_spec(
        years=0, months=0, weeks=0, days=0, hours=0, minutes=0, seconds=2
    )
    assert due(every2, 100.0, None, 101.0) == (None, 102.0)
    assert due(every2, 100.0, None, 102.0) == (102.0, 104.0)
    assert due(every2, 100.0, 102.0, 103.9) == (None, 104.0)
    # A scheduler that was down from 104 to 120.5 fires 120 once, then goes on.
    assert due(every2, 100.0, 102.0, 120.5) == (120.0, 122.0)
    minutely = schedules.cron_spec("* * * * *", "UTC")
    start = ts(2026, 5, 1, 12, 0)
    assert due(minutely, start, start, start + 30) == (None, start + 60)
    assert due(minutely, start, start, start + 3 * 86400 + 30) == (
        start + 3 * 86400,
        start + 3 * 86400 + 60,
    )


def test_bad_schedules_are_refused() -> None:
    for bad in ("* * * *", "0 8 * * 1 2026", "61 * * * *", 5):
        with pytest.raises(InvalidError, match="cron string"):
            modal.Cron(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="timezone"):
        modal.Cron("* * * * *", timezone="Mars/Olympus")
    with pytest.raises(InvalidError, match="longer than zero"):
        modal.Period()
    with pytest.raises(InvalidError, match="seconds"):
        modal.Period(seconds=-1)
    with pytest.raises(InvalidError, match="hours"):
        modal.Period(hours=1.5)  # type: ignore[arg-type]
    assert repr(modal.Period(hours=4)) == "Period(hours=4)"
    assert modal.Cron("0 8 * * 1", timezone="America/New_York")._spec.timezone == (
        "America/New_York"
    )


def test_fire_log_claims_each_tick_once(tmp_path: Path) -> None:
    path = tmp_path / "schedules" / "main.sqlite"
    a, b = FireLog(path), FireLog(path)  # two schedulers on one file
    assert a.last("k") is None
    assert a.claim("k", 10.0, None)
    assert not b.claim("k", 10.0, None)  # b had not seen a's claim
    assert b.last("k") == 10.0
    assert b.claim("k", 12.0, 10.0)
    assert not a.claim("k", 12.0, 10.0)
    assert not a.claim("k", 11.0, 12.0)  # never backwards
    assert b.claim("k", 14.0, 12.0, called=False)  # consumed, not called (overlap limit)
    assert FireLog(path).history() == {"k": {"fired": [10.0, 12.0], "skipped": [14.0]}}
    a.claim("other", 5.0, None)
    a.keep_only(["other"])
    assert b.last("k") is None  # forgotten: a schedule deployed again starts afresh
    assert b.history()["other"] == {"fired": [5.0], "skipped": []}


def test_table_fires_due_ticks_once_with_bounded_overlap(tmp_path: Path) -> None:
    async def main() -> None:
        now = [1000.0]
        started: list[str] = []
        release = asyncio.Event()

        async def fire(item: Scheduled) -> None:
            started.append(item.key)
            if item.key == "slow":
                await release.wait()
            else:
                raise RuntimeError("a failing scheduled call is logged, not raised")

        every10 = schedules.period_spec(
            years=0, months=0, weeks=0, days=0, hours=0, minutes=0, seconds=10
        )
        log = FireLog(tmp_path / "log.sqlite")
        table = ScheduleTable(fire, log, clock=lambda: now[0])
        table.set_items(
            [Scheduled("slow", every10, 1000.0, "slow"), Scheduled("fail", every10, 1000.0, "f")]
        )
        assert table.step() == 1010.0
        for _ in range(6):
            now[0] += 10
            table.step()
            table.step()  # the same instant again: nothing more fires
            await asyncio.sleep(0)
        assert started.count("fail") == 6
        assert started.count("slow") == schedules.MAX_IN_FLIGHT
        assert table.skipped == 6 - schedules.MAX_IN_FLIGHT
        # A second table on the same log (a restarted scheduler) fires nothing twice.
        again = ScheduleTable(fire, log, clock=lambda: now[0])
        again.set_items(list(table.items.values()))
        again.step()
        await asyncio.sleep(0)
        assert started.count("fail") == 6
        release.set()
        await table.cancel()
        history = log.history()
        assert len(history["slow"]["fired"]) == schedules.MAX_IN_FLIGHT
        assert len(history["slow"]["skipped"]) == 6 - schedules.MAX_IN_FLIGHT
        table.set_items([])  # everything unscheduled: the log forgets its state
        assert log.last("slow") is None
        assert log.last("fail") is None

    asyncio.run(main())


def test_a_scheduled_function_must_take_no_arguments() -> None:
    app = modal.App("sched-args")
    with pytest.raises(InvalidError, match="callable with no arguments"):

        @app.function(schedule=modal.Period(hours=1))
        def needs(x: int) -> None: ...

    @app.function(schedule=modal.Cron("0 8 * * 1"))
    def fine(x: int = 1) -> None: ...  # defaults are fine; no warning either

    with pytest.raises(InvalidError, match=r"modal\.Period or modal\.Cron"):
        app.function(schedule="* * * * *")(lambda: None)


def test_registry_keeps_schedules_per_version(tmp_path: Path) -> None:
    """Deploy, redeploy (a Period resets: new key and anchor; a Cron keeps its key), rollback
    (the old version's schedules come back, anchored at the rollback), stop (none left)."""
    from modal_ray.storage.registry_server import RegistryServer, registry_path

    reg = RegistryServer(registry_path(tmp_path, "main"), environment="main")
    every = modal.Period(minutes=5)._spec.to_json()
    cron = modal.Cron("0 6 * * *", timezone="America/New_York")._spec.to_json()

    def deploy(schedules: dict[str, str]) -> Any:
        app_id = reg.call("reserve", True, ("sched",))
        objects = [("f", "function", b"r"), ("g", "function", b"r")]
        return reg.call("deploy", True, ("sched", app_id, "", "dp", objects, {}, schedules))

    def active() -> list[Scheduled]:
        return schedules.deployed_items(reg.call("active_schedules", True, ()))

    first = deploy({"f": every, "g": cron})
    assert first["schedules"] == 2
    v1 = {i.target[1]: i for i in active()}
    assert v1["f"].target == ("sched", "f", 1)
    assert v1["f"].spec == modal.Period(minutes=5)._spec
    assert v1["g"].spec.timezone == "America/New_York"
    deploy({"f": every, "g": cron})
    v2 = {i.target[1]: i for i in active()}
    assert v2["f"].key != v1["f"].key  # a Period resets on redeploy...
    assert v2["f"].anchor >= v1["f"].anchor
    assert v2["g"].key == v1["g"].key  # ...a Cron runs on undisturbed
    assert deploy({})["schedules"] == 0  # v3: schedules removed
    assert active() == []
    rolled = reg.call("rollback", True, ("sched", 2))
    assert rolled["schedules"] == 2
    v4 = {i.target[1]: i for i in active()}
    assert v4["f"].target == ("sched", "f", 4)
    assert v4["g"].key == v1["g"].key
    reg.call("stop", True, ("sched",))
    assert active() == []
    # An app deployed with no schedules argument (an older client) has none.
    app_id = reg.call("reserve", True, ("plain",))
    assert reg.call("deploy", True, ("plain", app_id, "", "dp", [], {}))["schedules"] == 0
