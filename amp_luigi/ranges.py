"""ExportRange: the project's gap filler, Luigi's RangeDaily without its traps, and late data.

Luigi's RangeDaily clips `--start` to `days_back` (100) days ago and requires at most `task_limit`
(50) days per run, both silently, and with `days_forward=0` it includes today's unfinished day. Here
the range reaches back to `--start` however old, requires every missing day, and stops at the newest
day Amplitude can export completely (the day's end plus the availability lag). Which days are
missing is decided by VerifyDay.bulk_complete: one listing of the verified markers, not a request
per day.

Amplitude keeps accepting events for a day after it ends (a device that was offline uploads them
later), so a day exported on the morning after can still grow. `--refresh-days N` re-exports the
newest N days of the range that are already complete, on every run, through RefreshDay (in
amp_luigi.tasks: a complete day cannot simply be run again, since Luigi calls a task complete when
its output exists). UploadDay deletes the objects the new export no longer names and overwrites the
others under the same keys, so S3 ends up holding exactly the new export, without duplicates.
"""

from __future__ import annotations

import datetime as dt
import time

import luigi
from luigi.tools.range import RangeDaily

from amp_luigi.hours import last_available_day
from amp_luigi.settings import amplitude, parquet
from amp_luigi.tasks import DayTask, ParquetDay, RefreshDay, VerifyDay


class ExportRange(RangeDaily):
    """Every missing day from --start (inclusive) to --stop (exclusive; default: all exportable days),
    and with --refresh-days N the newest N complete days of the range again."""

    of = luigi.TaskParameter(
        default=VerifyDay,
        description="The daily task to fill in: VerifyDay, or ParquetDay for the Parquet layer too "
        "([parquet] enabled = true makes ParquetDay the default).",
    )
    days_back = luigi.IntParameter(default=0, description="Ignored: --start is never clipped.")
    task_limit = luigi.IntParameter(default=100_000, description="At most this many days per run.")
    refresh_days = luigi.IntParameter(
        default=0,
        description="Re-export the newest N days of the range on every run, for events that arrive "
        "after a day was exported; 0 (the default) exports each day once.",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # [parquet] enabled makes the default daily task ParquetDay (which requires VerifyDay). The
        # parameter keeps its default so the task id stays the same; RangeDaily reads `self.of`.
        if self.of is VerifyDay and parquet().enabled:
            self.of = ParquetDay  # type: ignore[assignment]

    def moving_start(self, now: dt.datetime) -> dt.datetime:
        return dt.datetime.combine(amplitude().first_date, dt.time())

    def moving_stop(self, now: dt.datetime) -> dt.datetime:
        newest = last_available_day(now, amplitude().availability_lag_hours)
        return dt.datetime.combine(newest + dt.timedelta(days=1), dt.time())

    def requires(self) -> list[luigi.Task]:
        fill: list[luigi.Task] = list(super().requires())
        if self.refresh_days <= 0:
            return fill
        # Cached like RangeDaily's own requires: `as_of` is this run's start, fixed once per process.
        if not hasattr(self, "_refresh"):
            self._refresh = self._refresh_tasks({task.date for task in fill if isinstance(task, DayTask)})
        return fill + self._refresh

    def _refresh_tasks(self, missing: set[dt.date]) -> list[luigi.Task]:
        now = dt.datetime.fromtimestamp(
            time.time() if self.now is None else self.now, tz=dt.timezone.utc
        ).replace(tzinfo=None, microsecond=0)
        stop = self.moving_stop(now).date()
        if self.stop:
            stop = min(stop, self.stop)
        start = self.start or self.moving_start(now).date()
        newest = [stop - dt.timedelta(days=n) for n in range(1, self.refresh_days + 1)]
        # A missing day is exported by the gap filling anyway; refresh only the complete ones.
        return [RefreshDay(day, as_of=now) for day in sorted(newest) if day >= start and day not in missing]
