"""Hour ranges as Amplitude's Export API sees them: UTC, both ends inclusive.

A day, or a window of several days, is asked for as one range; when Amplitude refuses it as too large
the range is halved, a window at a day boundary until single days are left, then by hours until the
parts are accepted or a single hour is left. Halving keeps the invariant that the parts cover every
hour of the original exactly once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True, order=True)
class HourRange:
    """Hours `start` to `end`, both inclusive, as naive UTC datetimes on the hour."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"hour range ends before it starts: {self}")

    @classmethod
    def day(cls, date: dt.date) -> HourRange:
        return cls.days(date, date)

    @classmethod
    def days(cls, first: dt.date, last: dt.date) -> HourRange:
        """Every hour of the days `first` to `last`, both inclusive."""
        return cls(dt.datetime.combine(first, dt.time()), dt.datetime.combine(last, dt.time()) + 23 * HOUR)

    @property
    def whole_days(self) -> int:
        """How many whole days the range is (0 when it starts or ends inside a day)."""
        if self.start.hour != 0 or self.end.hour != 23:
            return 0
        return self.hours // 24

    @property
    def hours(self) -> int:
        return (self.end - self.start) // HOUR + 1

    def halves(self) -> tuple[HourRange, HourRange]:
        """Two ranges, earlier first, that together cover this one exactly; needs at least two hours."""
        if self.hours < 2:
            raise ValueError(f"a single hour cannot be split: {self}")
        if self.whole_days > 1:  # a window splits between days, so each part is still whole days
            middle = self.start + (self.whole_days // 2 * 24 - 1) * HOUR
            return HourRange(self.start, middle), HourRange(middle + HOUR, self.end)
        middle = self.start + (self.hours // 2 - 1) * HOUR
        return HourRange(self.start, middle), HourRange(middle + HOUR, self.end)

    def query(self) -> dict[str, str]:
        """The Export API's `start` and `end` parameters."""
        return {"start": f"{self.start:%Y%m%dT%H}", "end": f"{self.end:%Y%m%dT%H}"}

    def label(self) -> str:
        return f"{self.start:%Y%m%dT%H}-{self.end:%Y%m%dT%H}"

    @classmethod
    def from_label(cls, label: str) -> HourRange:
        """The range a `label()` names (`YYYYMMDDTHH-YYYYMMDDTHH`), as indices and markers record it."""
        start, end = (dt.datetime.strptime(part, "%Y%m%dT%H") for part in label.split("-"))
        return cls(start, end)


def available_after(date: dt.date, lag_hours: float) -> dt.datetime:
    """The moment (naive UTC) from which every hour of `date` can be exported completely."""
    return dt.datetime.combine(date + dt.timedelta(days=1), dt.time()) + dt.timedelta(hours=lag_hours)


def last_available_day(now: dt.datetime, lag_hours: float) -> dt.date:
    """The newest day whose export is complete at `now` (naive UTC)."""
    return (now - dt.timedelta(hours=lag_hours)).date() - dt.timedelta(days=1)


def days_between(start: dt.date, stop: dt.date) -> list[dt.date]:
    """The days of [start, stop)."""
    return [start + dt.timedelta(days=n) for n in range((stop - start).days)]


def exportable_days(
    start: dt.date | None, stop: dt.date | None, first_date: dt.date, now: dt.datetime, lag_hours: float
) -> list[dt.date]:
    """The days of [start, stop) (from the project's first day, without start) that Amplitude can
    export completely at `now`: never before `first_date`, never one not yet over plus the lag."""
    first = max(start, first_date) if start else first_date
    end = last_available_day(now, lag_hours) + dt.timedelta(days=1)
    return days_between(first, min(stop, end) if stop else end)
