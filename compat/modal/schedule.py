"""`modal.Cron` and `modal.Period`: schedules of functions (`@app.function(schedule=...)`).

They fire while an ephemeral app runs (`modal run`, `with app.run():`) and, once deployed, from
the cluster's scheduler until the app is stopped; the rules are in `modal_ray.schedules`.
"""

from __future__ import annotations

from modal_ray.schedules import ScheduleSpec, cron_spec, period_spec


class Schedule:
    """Base class of schedules."""

    _spec: ScheduleSpec


class Cron(Schedule):
    """A cron schedule, e.g. `modal.Cron("0 8 * * 1", timezone="America/New_York")`."""

    def __init__(self, cron_string: str, timezone: str = "UTC") -> None:
        self._spec = cron_spec(cron_string, timezone)
        self.cron_string = cron_string
        self.timezone = timezone

    def __repr__(self) -> str:
        return f"Cron({self.cron_string!r}, timezone={self.timezone!r})"


class Period(Schedule):
    """A fixed-interval schedule, e.g. `modal.Period(hours=5)`."""

    def __init__(
        self,
        *,
        years: int = 0,
        months: int = 0,
        weeks: int = 0,
        days: int = 0,
        hours: int = 0,
        minutes: int = 0,
        seconds: float = 0,
    ) -> None:
        self._spec = period_spec(
            years=years,
            months=months,
            weeks=weeks,
            days=days,
            hours=hours,
            minutes=minutes,
            seconds=seconds,
        )
        self.years, self.months, self.weeks, self.days = years, months, weeks, days
        self.hours, self.minutes, self.seconds = hours, minutes, seconds

    def __repr__(self) -> str:
        fields = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
        args = ", ".join(f"{k}={getattr(self, k)}" for k in fields if getattr(self, k))
        return f"Period({args})"


__all__ = ["Cron", "Period", "Schedule"]
