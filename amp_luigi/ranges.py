"""ExportRange: the project's gap filler, Luigi's RangeDaily without its traps, and late data.

Luigi's RangeDaily clips `--start` to `days_back` (100) days ago and requires at most `task_limit`
(50) days per run, both silently, and with `days_forward=0` it includes today's unfinished day. Here
the range reaches back to `--start` however old, requires every missing day, and stops at the newest
day Amplitude can export completely (the day's end plus the availability lag). Which days are
missing is decided by VerifyDay.bulk_complete: one listing of the verified markers, not a request
per day.

Luigi's scheduler costs O(pending tasks) per `get_work` call (spotify/luigi #1492, #1750): a
backfill that requires 1,095 days at once puts ~4,400 tasks in the pending set and every step of the
run pays for all of them, so the cost per day grows with the range. Over more than `batch_days`
missing days, ExportRange therefore requires nothing up front: its run() yields one batch of at most
`batch_days` days per chunk, all at once, and each batch (an ExportRange with `batch` set) yields its
own days only when a worker starts it. The pending set holds the batches plus the days of the few
batches started, and a failed day blocks only its own batch: the other batches still land, and the
run still exits non-zero ([retcode] task_failed).

Amplitude keeps accepting events for a day after it ends (a device that was offline uploads them
later), so a day exported on the morning after can still grow. `--refresh-days N` re-exports the
newest N days of the range that are already complete, on every run, through RefreshDay (in
amp_luigi.tasks: a complete day cannot simply be run again, since Luigi calls a task complete when
its output exists). UploadDay deletes the objects the new export no longer names and overwrites the
others under the same keys, so S3 ends up holding exactly the new export, without duplicates.

Without `--project`, when luigi.cfg names projects, ExportRange requires one ExportRange per project
(`--project web`, ...), each deciding its own missing days from its own listing: one project's
failing days, or keys Amplitude refuses, never hold back another's. Every project's settings and
keys are checked first, so a project without keys stops the run before any request. With
`--project`, or when luigi.cfg names none, it fills that one project (the project goes in
`--project`, not in `--of-params`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import luigi
from luigi.parameter import ParameterVisibility
from luigi.tools.range import RangeDaily

from amp_luigi.hours import last_available_day
from amp_luigi.projects import names, project
from amp_luigi.settings import amplitude, parquet
from amp_luigi.tasks import DayTask, ParquetDay, ProjectTask, RefreshDay, VerifyDay, settings_checked


class ExportRange(ProjectTask, RangeDaily):
    """Every missing day from --start (inclusive) to --stop (exclusive; default: all exportable days),
    and with --refresh-days N the newest N complete days of the range again.

    Up to `batch_days` missing days are required up front, as RangeDaily does; more are yielded from
    run() in batches (see the module docstring). requires() always names every missing day (over
    every project, one range per project): it is what the range's completeness means, whatever the
    scheduler is handed first.
    """

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
    batch_days = luigi.IntParameter(
        default=50,
        significant=False,
        visibility=ParameterVisibility.HIDDEN,  # the scheduler shows only dates and Luigi's range knobs
        description="Over more than this many missing days, hand the days to the scheduler in batches "
        "of this size (dynamic dependencies), so its pending set and its cost per step stay small.",
    )
    batch = luigi.BoolParameter(
        default=False,
        visibility=ParameterVisibility.HIDDEN,  # kept in the text a worker rebuilds a yielded task from
        description="Set on the batches a long ExportRange yields: require nothing up front, yield the "
        "days from run(), so a batch's days enter the scheduler only when a worker starts it.",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # [parquet] enabled makes the default daily task ParquetDay (which requires VerifyDay). The
        # parameter keeps its default so the task id stays the same; RangeDaily reads `self.of`.
        if self.of is VerifyDay and parquet().enabled:
            self.of = ParquetDay  # type: ignore[assignment]
        if self.of_params.get("project", self.project) != self.project:
            raise luigi.parameter.ParameterException(
                "ExportRange takes the project as --project (every project without it), not in --of-params."
            )
        if self.project:  # the days are that project's (RangeDaily passes of_params to them all)
            self.of_params = {**self.of_params, "project": self.project}

    def projects(self) -> list[ExportRange]:
        """One range per named project, when this one names none (see the module docstring)."""
        if "_projects" not in self.__dict__:
            fans_out = not self.project and not self.batch
            self._projects = [self.clone(project=name) for name in names()] if fans_out else []
        return self._projects

    def moving_start(self, now: dt.datetime) -> dt.datetime:
        return dt.datetime.combine(project(self.project).first_date, dt.time())

    def moving_stop(self, now: dt.datetime) -> dt.datetime:
        newest = last_available_day(now, amplitude().availability_lag_hours)
        return dt.datetime.combine(newest + dt.timedelta(days=1), dt.time())

    def requires(self) -> list[luigi.Task]:
        if self.projects():
            return list(self.projects())
        fill: list[luigi.Task] = list(super().requires())
        if self.refresh_days <= 0:
            return fill
        # Cached like RangeDaily's own requires: `as_of` is this run's start, fixed once per process.
        if not hasattr(self, "_refresh"):
            self._refresh = self._refresh_tasks({task.date for task in fill if isinstance(task, DayTask)})
        return fill + self._refresh

    def complete(self) -> bool:
        # Every setting first, and the keys of every project this range covers: a wrong one stops
        # the run before any request, with its message and no traceback.
        settings_checked(None if self.projects() else self.project)
        # Always a fresh look (one listing): RangeDaily caches requires(), and a batch or the range is
        # asked again after its days ran, when the cached list names days that are now verified.
        self.__dict__.pop("_cached_requires", None)
        return bool(super().complete())

    def deps(self) -> list[luigi.Task]:
        """What the scheduler gets up front: every missing day for a short range, nothing otherwise."""
        if self.projects():
            return list(self.projects())
        if self.batch or len(self.requires()) > self.batch_days:
            return []
        return list(super().deps())

    def run(self) -> Iterator[list[luigi.Task]]:
        if self.projects() or (not self.batch and len(self.requires()) <= self.batch_days):
            return  # deps() gave the scheduler every day; nothing is left to do here
        self.__dict__.pop("_cached_requires", None)  # a run after the days ran: look again
        required = self.requires()
        if self.batch:
            yield required
            return
        days = [task for task in required if isinstance(task, DayTask) and not isinstance(task, RefreshDay)]
        batches = [days[n : n + self.batch_days] for n in range(0, len(days), self.batch_days)]
        yield [
            self.clone(
                start=chunk[0].date,
                stop=chunk[-1].date + dt.timedelta(days=1),
                refresh_days=0,
                batch=True,
                # A yielded task goes to the worker as text, and Luigi writes None as "None", which
                # it reads back as an int (now) or a parameter name (param_name): give both values.
                now=int(time.time()) if self.now is None else self.now,
                param_name=self.param_name or "date",
            )
            for chunk in batches
        ] + [task for task in required if isinstance(task, RefreshDay)]

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
        return [
            RefreshDay(day, as_of=now, project=self.project)
            for day in sorted(newest)
            if day >= start and day not in missing
        ]
