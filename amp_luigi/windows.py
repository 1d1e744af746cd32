"""Right-sized requests: which missing days go into one Export API request, and how a heavy day is
split before Amplitude refuses it.

A backfill waits on Amplitude, not on us: every request waits seconds to minutes before its first
byte, whatever its size. So consecutive missing days share one request (a window) as long as their
estimated archive stays under `[amplitude] window_mib` and `max_window_days` (never past the
Export API's 365 days), and a day that needed smaller hour ranges tells its neighbours to start
from those. What is known of a day (`Known`) is what its export weighed and the widest hour range
Amplitude accepted for it, from the verified markers and from days exported earlier in the run.

A window is never wider than twice the days known around it: where nothing is known, windows grow
1, 2, 4, ... days, each width learnt from the answers before it, so one misjudged estimate costs
one refusal (a 400 halves the window, days first, then hours), not a day's worth. Planning is a
pure function of the missing days and of what is known, so the `plan` command and the run agree.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TypeVar

from amp_luigi.hours import HourRange

DAY = dt.timedelta(days=1)
T = TypeVar("T")
# Days per DayBatch: each batch learns its first answer on its own and a failed day stops only its
# own batch's later waves, so a half year: a year's backfill learns twice, and the scheduler's pending
# set stays bounded by the waves (a wave's windows and the days of the wave before), not by this.
BATCH_DAYS = 180
# The nearest days whose export is known stand for a missing day: sizes vary from day to day
# (weekends, releases), so a few neighbours, and the largest of them.
NEIGHBOURS = 7


@dataclass(frozen=True)
class Known:
    """What one exported day says about its neighbours."""

    bytes: int | None  # the day's archive members as Amplitude sent them; None: not known (a forecast)
    widest_hours: int  # the widest hour range it was fetched in
    split: bool = False  # Amplitude refused it a wider range: it needed those smaller ones


@dataclass(frozen=True)
class Budget:
    """How large a request may be: `[amplitude] window_mib` and `max_window_days`."""

    bytes: int
    max_days: int


@dataclass(frozen=True)
class Window:
    """Consecutive days fetched by one request, or one heavy day by several of `hours_each` hours."""

    days: tuple[dt.date, ...]
    hours_each: int  # 24 for a window of whole days
    estimate: int | None  # bytes; None when no size is known near these days
    learning: bool = False  # nothing at all is known near: its answer is awaited before the next request

    @property
    def first(self) -> dt.date:
        return self.days[0]

    @property
    def last(self) -> dt.date:
        return self.days[-1]

    def requests(self) -> list[HourRange]:
        """The hour ranges asked for up front: the whole window, or the day in `hours_each` slices."""
        if self.hours_each >= 24:
            return [HourRange.days(self.first, self.last)]
        start = dt.datetime.combine(self.first, dt.time())
        slices = range(0, 24, self.hours_each)
        return [
            HourRange(
                start + dt.timedelta(hours=h), start + dt.timedelta(hours=min(h + self.hours_each, 24) - 1)
            )
            for h in slices
        ]

    def label(self) -> str:
        days = (
            str(self.first) if len(self.days) == 1 else f"{self.first}..{self.last} ({len(self.days)} days)"
        )
        return days if self.hours_each >= 24 else f"{days} in {self.hours_each}-hour ranges"


def consecutive(days: list[dt.date]) -> list[list[dt.date]]:
    """The days in runs without a gap; a window never spans a day that is not missing."""
    runs: list[list[dt.date]] = []
    for day in sorted(days):
        if runs and day - runs[-1][-1] == DAY:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _neighbours(day: dt.date, known: dict[dt.date, Known]) -> list[Known]:
    nearest = sorted(known, key=lambda other: (abs((other - day).days), other))[:NEIGHBOURS]
    return [known[other] for other in nearest]


def estimate(day: dt.date, known: dict[dt.date, Known]) -> Known | None:
    """The largest neighbour's bytes, and the narrowest hour range a neighbour needed after a
    refusal (24 where none was refused: a day split up front only because its neighbours were says
    nothing of its own, so once the refused days are no longer among the nearest the days are asked
    for whole again); None alone."""
    near = _neighbours(day, known)
    if not near:
        return None
    sizes = [each.bytes for each in near if each.bytes is not None]
    needed = [each.widest_hours for each in near if each.split]
    return Known(max(sizes) if sizes else None, min(needed, default=24), split=bool(needed))


def _growth(day: dt.date, known: dict[dt.date, Known], reach: int) -> int:
    """At most twice the days known within `reach` days before `day` (1 where none is)."""
    return max(1, 2 * sum(1 for other in known if dt.timedelta(0) < day - other <= dt.timedelta(days=reach)))


def plan(missing: list[dt.date], known: dict[dt.date, Known], budget: Budget) -> list[Window]:
    """The windows that fetch `missing`, oldest first, from what is known now."""
    windows: list[Window] = []
    for run in consecutive(missing):
        index = 0
        while index < len(run):
            first = run[index]
            guess = estimate(first, known)
            size = None if guess is None else guess.bytes
            if guess is not None and (guess.widest_hours < 24 or (size or 0) >= budget.bytes):
                windows.append(Window((first,), guess.widest_hours, size))
                index += 1
                continue
            most = min(budget.max_days, _growth(first, known, 2 * budget.max_days), len(run) - index)
            if size:
                most = min(most, max(1, budget.bytes // size))
            days = tuple(run[index : index + most])
            windows.append(
                Window(days, 24, None if size is None else size * len(days), learning=guess is None)
            )
            index += most
    return windows


def wave(windows: list[Window], cap: int) -> list[Window]:
    """The windows handed to the scheduler at once: as many as the export cap lets run, but only the
    first while nothing at all is known, so its answer is learnt before the next request goes out."""
    return windows[:1] if windows and windows[0].learning else windows[:cap]


def in_batches(days: list[T], size: int) -> list[list[T]]:
    """The days in the batches a range hands the scheduler (ExportRange's DayBatch tasks)."""
    return [days[n : n + size] for n in range(0, len(days), size)]


def forecast(
    missing: list[dt.date],
    known: dict[dt.date, Known],
    budget: Budget,
    cap: int,
    batch_days: int,
    downloaded: frozenset[dt.date] = frozenset(),
) -> list[list[Window]]:
    """The waves of requests a run would make, each batch of the missing days planned as its
    DayBatch plans it (the days `downloaded` already need none): wave by wave, each wave's days
    known when the next is planned (at the size their window was estimated at, or unknown). What
    the plan command prints. The run learns the real sizes as they arrive, and a batch that starts
    after another ended knows its days too: over one batch, the forecast is the upper bound."""
    waves: list[list[Window]] = []
    for batch in in_batches(sorted(missing), batch_days):
        learnt = dict(known)
        left = [day for day in batch if day not in downloaded]
        while left:
            taken = wave(plan(left, learnt, budget), cap)
            for window in taken:
                each = None if window.estimate is None else math.ceil(window.estimate / len(window.days))
                # Split up front, not refused: as the run records a day fetched so.
                learnt.update({day: Known(each, window.hours_each) for day in window.days})
            waves.append(taken)
            done = {day for window in taken for day in window.days}
            left = [day for day in left if day not in done]
    return waves
