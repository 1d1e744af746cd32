"""ExportRange: the project's gap filler, Luigi's RangeDaily without its traps.

Luigi's RangeDaily clips `--start` to `days_back` (100) days ago and requires at most `task_limit`
(50) days per run, both silently, and with `days_forward=0` it includes today's unfinished day. Here
the range reaches back to `--start` however old, requires every missing day, and stops at the newest
day Amplitude can export completely (the day's end plus the availability lag). Which days are
missing is decided by VerifyDay.bulk_complete: one listing of the verified markers, not a request
per day.
"""

from __future__ import annotations

import datetime as dt

import luigi
from luigi.tools.range import RangeDaily

from amp_luigi.hours import last_available_day
from amp_luigi.settings import amplitude
from amp_luigi.tasks import VerifyDay


class ExportRange(RangeDaily):
    """Every missing day from --start (inclusive) to --stop (exclusive; default: all exportable days)."""

    of = luigi.TaskParameter(default=VerifyDay, description="The daily task to fill in (VerifyDay).")
    days_back = luigi.IntParameter(default=0, description="Ignored: --start is never clipped.")
    task_limit = luigi.IntParameter(default=100_000, description="At most this many days per run.")

    def moving_start(self, now: dt.datetime) -> dt.datetime:
        return dt.datetime.combine(amplitude().first_date, dt.time())

    def moving_stop(self, now: dt.datetime) -> dt.datetime:
        newest = last_available_day(now, amplitude().availability_lag_hours)
        return dt.datetime.combine(newest + dt.timedelta(days=1), dt.time())
