"""Schedules (`modal.Period`, `modal.Cron`): when they fire, which tick is due, who fired it.

Role: the engine-neutral rules of schedules. `ScheduleSpec` is the plain description a schedule
travels as (to the registry, as JSON). `next_fire` / `due` compute fire times; `FireLog` is the
SQLite file that records the last tick fired per schedule, so that a scheduler that restarts
(or a second one) never fires a tick twice; `run_schedules` fires an ephemeral app's
schedules while `app.run()` lasts. The Ray backend hosts the deployed apps' scheduler
(`modal_ray.backends.ray.scheduler`) on top of `ScheduleTable` and `FireLog`.

Semantics (times are epoch seconds, UTC):
- `Period`: ticks at `anchor + k * period` (k = 1, 2, ...), the anchor being when the schedule
  started: the start of an ephemeral run, or the deploy of the version (a redeploy or rollback
  resets it, as Modal documents). Months and years step as dateutil's `relativedelta` does
  (the 31st plus one month is the 30th or the 28th, computed from the anchor each time, so the
  day never drifts); days, hours, ... are fixed lengths of UTC time.
- `Cron`: a 5-field crontab evaluated in its `timezone` (zoneinfo) with croniter. Across DST
  changes, like Vixie cron: a wall-clock time skipped when clocks go forward fires at the first
  instant after the gap (once, however many matching times the gap swallowed); when clocks go
  back, an expression with a fixed hour fires once per wall-clock time (the first pass), and one
  whose hour field starts with `*` fires in both passes (it follows elapsed time). A cron
  schedule is not reset by a redeploy: its state is kept per (app, function, expression).
- Ticks missed while no scheduler ran (a head restart, a killed actor) coalesce into one fire
  of the latest missed tick, then the schedule continues: never a burst of catch-up calls.
- A tick is claimed in the `FireLog` (a compare-and-set on the last fired tick) before its call
  starts: at most once per tick, even with two schedulers. A scheduler killed between the claim
  and the call loses that one tick rather than firing it twice.
- Overlap: at most `MAX_IN_FLIGHT` calls of one schedule run at once (they overlap, as on
  Modal, when a call outlasts the period); a tick that would start one more is skipped and
  logged, so slow calls never pile up without bound.
- A fired call runs the function with no arguments; its failure is logged and the schedule goes
  on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modal_ray.exception import InvalidError

if TYPE_CHECKING:
    from .run_context import RunTasks

logger = logging.getLogger("modal_ray.schedules")
UTC = timezone.utc

MAX_IN_FLIGHT = 4  # calls of one schedule running at once; further ticks are skipped
HISTORY = 500  # ticks kept per schedule in the FireLog's history (for `status`)
HISTORY_S = 24 * 3600.0  # and for at most this long (a stopped app's too)
_PERIOD_FIELDS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
_CATCH_UP_WINDOW_S = 2 * 24 * 3600.0  # a cron scan looks back at most this far


# -- specs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A schedule as plain data: `kind` "period" (`period`: the 7 fields of `modal.Period`) or
    "cron" (`cron`, `timezone`)."""

    kind: str
    period: tuple[float, ...] = ()
    cron: str = ""
    timezone: str = "UTC"

    def to_json(self) -> str:
        if self.kind == "period":
            return json.dumps({"kind": "period", "period": list(self.period)})
        return json.dumps({"kind": "cron", "cron": self.cron, "timezone": self.timezone})

    @staticmethod
    def from_json(text: str) -> ScheduleSpec:
        data = json.loads(text)
        if data["kind"] == "period":
            return ScheduleSpec("period", period=tuple(data["period"]))
        return ScheduleSpec("cron", cron=data["cron"], timezone=data["timezone"])

    @property
    def resets_on_deploy(self) -> bool:
        """A Period is anchored at its deploy; a Cron is not (Modal's guide)."""
        return self.kind == "period"

    def describe(self) -> str:
        if self.kind == "cron":
            return f"Cron({self.cron!r}, timezone={self.timezone!r})"
        args = ", ".join(
            f"{k}={v:g}" for k, v in zip(_PERIOD_FIELDS, self.period, strict=True) if v
        )
        return f"Period({args})"


def period_spec(
    *, years: int, months: int, weeks: int, days: int, hours: int, minutes: int, seconds: float
) -> ScheduleSpec:
    """The spec of `modal.Period(...)`; `InvalidError` for a bad field or a zero period."""
    ints = {"years": years, "months": months, "weeks": weeks, "days": days, "hours": hours}
    ints["minutes"] = minutes
    for name, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidError(f"Period `{name}=` must be a non-negative int, not {value!r}.")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise InvalidError(f"Period `seconds=` must be a non-negative number, not {seconds!r}.")
    if not any(ints.values()) and not seconds:
        raise InvalidError("A Period must be longer than zero, e.g. `modal.Period(hours=1)`.")
    return ScheduleSpec(
        "period", period=(years, months, weeks, days, hours, minutes, float(seconds))
    )


def cron_spec(cron_string: str, timezone: str) -> ScheduleSpec:
    """The spec of `modal.Cron(...)`; `InvalidError` for a bad expression or time zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import croniter

    if not isinstance(cron_string, str) or len(cron_string.split()) != 5:
        raise InvalidError(
            f"Invalid cron string {cron_string!r}: expected 5 fields (minute hour day-of-month"
            " month day-of-week), e.g. '0 8 * * 1'."
        )
    if not croniter.is_valid(cron_string):
        raise InvalidError(f"Invalid cron string {cron_string!r}; see https://crontab.guru.")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidError(
            f"Invalid timezone {timezone!r}: use a tz database name such as 'UTC' or"
            " 'America/New_York'."
        ) from None
    return ScheduleSpec("cron", cron=cron_string, timezone=timezone)


def spec_of(schedule: Any) -> ScheduleSpec:
    """The spec of a `schedule=` value (`modal.Period` / `modal.Cron`)."""
    spec = getattr(schedule, "_spec", None)
    if isinstance(spec, ScheduleSpec):
        return spec
    raise InvalidError(
        f"`schedule=` takes modal.Period or modal.Cron, not {type(schedule).__name__}."
    )


# -- fire times ---------------------------------------------------------------------------------


def _period_tick(spec: ScheduleSpec, anchor: float, k: int) -> float:
    from dateutil.relativedelta import relativedelta

    years, months, weeks, days, hours, minutes, seconds = spec.period
    start = datetime.fromtimestamp(anchor, UTC)
    step = relativedelta(
        years=int(years) * k,
        months=int(months) * k,
        weeks=int(weeks) * k,
        days=int(days) * k,
        hours=int(hours) * k,
        minutes=int(minutes) * k,
    )
    return (start + step + timedelta(seconds=seconds * k)).timestamp()


def _period_length(spec: ScheduleSpec) -> float:
    years, months, weeks, days, hours, minutes, seconds = spec.period
    return (
        years * 365.2425 * 86400
        + months * 30.436875 * 86400
        + weeks * 7 * 86400
        + days * 86400
        + hours * 3600
        + minutes * 60
        + seconds
    )


def _period_index(spec: ScheduleSpec, anchor: float, t: float) -> int:
    """The largest k >= 0 with tick k <= t (tick 0 is the anchor)."""
    if t < anchor:
        return 0
    k = max(0, int((t - anchor) / _period_length(spec)) - 1)
    while k > 0 and _period_tick(spec, anchor, k) > t:
        k -= 1
    while _period_tick(spec, anchor, k + 1) <= t:
        k += 1
    return k


def _hour_is_fixed(expr: str) -> bool:
    return not expr.split()[1].startswith("*")


def _cron_next(spec: ScheduleSpec, after: float) -> float:
    """The first cron fire strictly after `after` (see the module docstring for DST)."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    tz = ZoneInfo(spec.timezone)
    fixed_hour = _hour_is_fixed(spec.cron)
    it = croniter(spec.cron, datetime.fromtimestamp(after, tz))
    while True:
        candidate: datetime = it.get_next(datetime)
        t = candidate.timestamp()
        if t <= after:  # croniter's answer for a gap can fall back onto the start
            continue
        if fixed_hour:
            wall = candidate.replace(tzinfo=None)
            first = wall.replace(tzinfo=tz, fold=0).timestamp()
            second = wall.replace(tzinfo=tz, fold=1).timestamp()
            if first < second and t == second:
                continue  # the second pass of a repeated wall-clock time
        return t


def next_fire(spec: ScheduleSpec, anchor: float, after: float) -> float:
    """The first fire time strictly after `after` of a schedule anchored at `anchor`."""
    if spec.kind == "period":
        return _period_tick(spec, anchor, _period_index(spec, anchor, after) + 1)
    return _cron_next(spec, max(after, anchor))


def due(
    spec: ScheduleSpec, anchor: float, last: float | None, now: float
) -> tuple[float | None, float]:
    """(the tick to fire now, or None; the next fire time after it). The tick to fire is the
    latest one at or before `now` that comes after `last` (the last tick fired; the anchor if
    none): ticks missed in between coalesce into it."""
    start = anchor if last is None else max(anchor, last)
    first = next_fire(spec, anchor, start)
    if first > now:
        return None, first
    if spec.kind == "period":
        tick = _period_tick(spec, anchor, _period_index(spec, anchor, now))
    else:
        tick = first
        scan_from = max(first, now - _CATCH_UP_WINDOW_S)
        if scan_from > tick:
            probe = next_fire(spec, anchor, scan_from)
            tick = probe if probe <= now else tick
        while (following := next_fire(spec, anchor, tick)) <= now:
            tick = following
    return tick, next_fire(spec, anchor, tick)


# -- the fire log -------------------------------------------------------------------------------

FIRE_LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS last_fire(key TEXT PRIMARY KEY, tick REAL NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS fired(
    key TEXT NOT NULL,
    tick REAL NOT NULL,
    at REAL NOT NULL,
    called INTEGER NOT NULL,
    PRIMARY KEY(key, tick)
);
"""


def fire_log_path(root: str | Path, environment: str) -> Path:
    return Path(root) / "schedules" / f"{environment}.sqlite"


class FireLog:
    """The last tick fired per schedule key, in one SQLite file; `claim` is the compare-and-set
    that makes a tick fire at most once."""

    def __init__(self, path: str | Path, sync: str = "NORMAL") -> None:
        from .storage.sqlite import Database

        self.db = Database(Path(path), FIRE_LOG_SCHEMA, "schedule log", sync)

    def last(self, key: str) -> float | None:
        row = self.db.read(
            lambda db: db.execute("SELECT tick FROM last_fire WHERE key = ?", (key,)).fetchone(),
            create=True,
        )
        return None if row is None else float(row[0])

    def claim(self, key: str, tick: float, previous: float | None, called: bool = True) -> bool:
        """Record `tick` as fired for `key` if the last fired tick is still `previous` (None:
        never fired); False if someone else moved it (the tick is theirs). `called`: False
        for a tick consumed without a call (skipped: too many calls of it still running)."""

        def op(db: sqlite3.Connection) -> bool:
            now = time.time()
            if previous is None:
                cur = db.execute(
                    "INSERT OR IGNORE INTO last_fire(key, tick, at) VALUES (?, ?, ?)",
                    (key, tick, now),
                )
            else:
                cur = db.execute(
                    "UPDATE last_fire SET tick = ?, at = ? WHERE key = ? AND tick = ? AND tick < ?",
                    (tick, now, key, previous, tick),
                )
            if cur.rowcount != 1:
                return False
            db.execute(
                "INSERT INTO fired(key, tick, at, called) VALUES (?, ?, ?, ?)",
                (key, tick, now, int(called)),
            )
            db.execute(
                "DELETE FROM fired WHERE (key = ? AND tick NOT IN"
                " (SELECT tick FROM fired WHERE key = ? ORDER BY tick DESC LIMIT ?)) OR at < ?",
                (key, key, HISTORY, now - HISTORY_S),
            )
            return True

        return self.db.write(op, create=True)

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget the schedules not in `keys` (stopped apps, schedules removed by a deploy); their
        history stays for `HISTORY_S`."""
        wanted = set(keys)

        def op(db: sqlite3.Connection) -> None:
            known = [r[0] for r in db.execute("SELECT key FROM last_fire").fetchall()]
            for key in known:
                if key not in wanted:
                    db.execute("DELETE FROM last_fire WHERE key = ?", (key,))

        self.db.write(op, create=True)

    def history(self) -> dict[str, dict[str, list[float]]]:
        """The recent ticks of each schedule key, oldest first: "fired" (called) and "skipped"."""
        rows = self.db.read(
            lambda db: db.execute(
                "SELECT key, tick, called FROM fired ORDER BY key, tick"
            ).fetchall(),
            create=True,
        )
        out: dict[str, dict[str, list[float]]] = {}
        for key, tick, called in rows:
            entry = out.setdefault(key, {"fired": [], "skipped": []})
            entry["fired" if called else "skipped"].append(float(tick))
        return out


# -- a table of schedules, fired as they fall due -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scheduled:
    """One active schedule: `key` names its fire state; `target` is what to call (opaque here);
    `anchor` is when it started (see the module docstring)."""

    key: str
    spec: ScheduleSpec
    anchor: float
    label: str
    target: Any = None


def deployed_key(app_id: str, tag: str, spec: ScheduleSpec, version: int) -> str:
    """The fire-state key of a deployed schedule: a Period's includes the version (a redeploy
    resets it), a Cron's does not (it runs on undisturbed by deploys)."""
    base = f"{app_id}/{tag}/{spec.to_json()}"
    return f"{base}@v{version}" if spec.resets_on_deploy else base


@dataclass
class ScheduleTable:
    """Fires the schedules it is given when they fall due, on the caller's event loop.

    `fire(item)` returns the coroutine of one call. `log` (optional) makes ticks at most once
    across schedulers and restarts; without it (an ephemeral run) the table's own memory does.
    """

    fire: Callable[[Scheduled], Coroutine[Any, Any, Any]]
    log: FireLog | None = None
    clock: Callable[[], float] = time.time
    items: dict[str, Scheduled] = field(default_factory=dict)
    _last: dict[str, float | None] = field(default_factory=dict)
    _next: dict[str, float] = field(default_factory=dict)
    _running: dict[str, set[asyncio.Task[Any]]] = field(default_factory=dict)
    skipped: int = 0

    def set_items(self, items: Iterable[Scheduled]) -> None:
        """Replace the active schedules (a deploy, rollback or stop was seen)."""
        new = {i.key: i for i in items}
        for key in list(self.items):
            if key not in new:
                self._last.pop(key, None)
                self._next.pop(key, None)
        for key, item in new.items():
            if key not in self.items or self.items[key] != item:
                self._last[key] = self.log.last(key) if self.log is not None else None
                self._next.pop(key, None)
        self.items = new
        if self.log is not None:
            self.log.keep_only(new)

    def in_flight(self) -> int:
        return sum(len(s) for s in self._running.values())

    def step(self) -> float:
        """Fire what is due now; the time of the next fire (inf when nothing is scheduled)."""
        now = self.clock()
        soonest = math.inf
        for key, item in self.items.items():
            upcoming = self._next.get(key)
            if upcoming is not None and upcoming > now:
                soonest = min(soonest, upcoming)
                continue
            last = self._last.get(key)
            tick, upcoming = due(item.spec, item.anchor, last, now)
            if tick is not None:
                call = len(self._running.get(key, ())) < MAX_IN_FLIGHT
                if self.log is None or self.log.claim(key, tick, last, call):
                    if call:
                        self._start(item, tick)
                    else:
                        self._skip(item, tick)
                    self._last[key] = tick
                else:
                    # Another scheduler fired it: take its record, recompute.
                    self._last[key] = self.log.last(key)
                    tick_, upcoming = due(item.spec, item.anchor, self._last[key], now)
                    if tick_ is not None:
                        upcoming = now + 0.1
            self._next[key] = upcoming
            soonest = min(soonest, upcoming)
        return soonest

    def _skip(self, item: Scheduled, tick: float) -> None:
        self.skipped += 1
        logger.warning(
            "Skipped the %s tick of %s: %d earlier calls of it are still running.",
            datetime.fromtimestamp(tick, UTC).isoformat(),
            item.label,
            MAX_IN_FLIGHT,
        )

    def _start(self, item: Scheduled, tick: float) -> None:
        running = self._running.setdefault(item.key, set())
        task = asyncio.ensure_future(self._call(item, tick))
        running.add(task)
        task.add_done_callback(running.discard)

    async def _call(self, item: Scheduled, tick: float) -> None:
        try:
            await self.fire(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.error(
                "Scheduled call of %s (tick %s) failed: %s: %s",
                item.label,
                datetime.fromtimestamp(tick, UTC).isoformat(),
                type(exc).__name__,
                exc,
            )

    async def cancel(self) -> None:
        """Cancel the calls still running (the run ended)."""
        tasks = [t for s in self._running.values() for t in s]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


# -- ephemeral runs -------------------------------------------------------------------------------


async def run_schedules(
    items: list[Scheduled], fire: Callable[[Scheduled], Coroutine[Any, Any, Any]]
) -> None:
    """Fire `items` until cancelled (the app run ends), then cancel the calls still running."""
    table = ScheduleTable(fire)
    table.set_items(items)
    try:
        while True:
            upcoming = table.step()
            await asyncio.sleep(max(0.0, min(upcoming - time.time(), 60.0)))
    finally:
        await table.cancel()


def ephemeral_items(
    functions: dict[str, Any], app_id: str | None, started: float
) -> list[Scheduled]:
    """The schedules of a running app's functions (`tag -> Function`), anchored at `started`."""
    items = []
    for tag, fn in functions.items():
        schedule = fn._options.schedule
        if schedule is None:
            continue
        spec = spec_of(schedule)
        items.append(Scheduled(f"{app_id}/{tag}", spec, started, f"{tag} ({spec.describe()})", fn))
    return items


def start_run_schedules(tasks: RunTasks, functions: dict[str, Any], app_id: str | None) -> None:
    """Start firing the schedules of a run's functions (on the running loop), if any; the run
    stops them with `RunTasks.stop_schedules`."""
    items = ephemeral_items(functions, app_id, time.time())
    if items:
        tasks.hold_schedules(asyncio.ensure_future(run_schedules(items, fire_function)))


def deploy_schedules(functions: dict[str, Any]) -> dict[str, str]:
    """tag -> spec JSON of the scheduled functions being deployed (for the registry)."""
    return {
        tag: spec_of(fn._options.schedule).to_json()
        for tag, fn in functions.items()
        if fn._options.schedule is not None
    }


def deployed_items(rows: Iterable[dict[str, Any]]) -> list[Scheduled]:
    """The registry's `active_schedules` rows as table items; the target of each is
    (app name, function tag, version)."""
    items = []
    for row in rows:
        spec = ScheduleSpec.from_json(row["spec"])
        key = deployed_key(row["app_id"], row["tag"], spec, int(row["version"]))
        label = f"{row['app_name']}.{row['tag']} ({spec.describe()})"
        target = (row["app_name"], row["tag"], int(row["version"]))
        items.append(Scheduled(key, spec, float(row["deployed_at"]), label, target))
    return items


async def fire_function(item: Scheduled) -> Any:
    """Call a scheduled function with no arguments, as Modal does."""
    return await item.target.remote.aio()


__all__ = [
    "MAX_IN_FLIGHT",
    "FireLog",
    "ScheduleSpec",
    "ScheduleTable",
    "Scheduled",
    "cron_spec",
    "deploy_schedules",
    "deployed_items",
    "deployed_key",
    "due",
    "ephemeral_items",
    "fire_function",
    "fire_log_path",
    "next_fire",
    "period_spec",
    "run_schedules",
    "spec_of",
    "start_run_schedules",
]
