"""`modal.Cron` and `modal.Period`: schedules for deployed functions.

Schedules fire only in deployed apps (as on Modal); `modal run` records them without firing.
"""

from __future__ import annotations

from modal.exception import InvalidError


class Schedule:
    """Base class of schedules."""


class Cron(Schedule):
    """A cron schedule, e.g. `modal.Cron("0 8 * * 1", timezone="America/New_York")`."""

    def __init__(self, cron_string: str, timezone: str = "UTC") -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from croniter import croniter

        if not isinstance(cron_string, str) or not croniter.is_valid(cron_string):
            raise InvalidError(f"Invalid cron string {cron_string!r}.")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidError(
                f"Invalid timezone {timezone!r}: use a tz database name such as 'UTC'."
            ) from None
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
        parts = {
            "years": years,
            "months": months,
            "weeks": weeks,
            "days": days,
            "hours": hours,
            "minutes": minutes,
        }
        for k, v in parts.items():
            if not isinstance(v, int) or v < 0:
                raise InvalidError(f"Period `{k}=` must be a non-negative int.")
        if seconds < 0:
            raise InvalidError("Period `seconds=` must be non-negative.")
        if not any(parts.values()) and not seconds:
            raise InvalidError("A Period must be longer than zero.")
        self.years, self.months, self.weeks, self.days = years, months, weeks, days
        self.hours, self.minutes, self.seconds = hours, minutes, seconds

    def __repr__(self) -> str:
        fields = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
        args = ", ".join(f"{k}={getattr(self, k)}" for k in fields if getattr(self, k))
        return f"Period({args})"


__all__ = ["Cron", "Period", "Schedule"]
