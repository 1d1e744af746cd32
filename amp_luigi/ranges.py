"""ExportRange: the gap filler, Luigi's RangeDaily without its traps, and late data.

Luigi's RangeDaily clips `--start` to `days_back` (100) days ago and requires at most `task_limit`
(50) days per run, both silently, and with `days_forward=0` it includes today's unfinished day. Here
the range reaches back to `--start` however old, requires every missing day, and stops at the newest
day Amplitude can export completely (the day's end plus the availability lag). Which days are
missing is decided by the daily task's bulk_complete: one listing of its markers, not a request per
day. ExportRange keeps RangeDaily's parameters (so its command line and task ids are Luigi's) and
decides its days itself.

Luigi's scheduler costs O(pending tasks) per `get_work` call (spotify/luigi #1492, #1750): a
backfill that requires 1,095 days at once puts ~4,400 tasks in the pending set and every step of the
run pays for all of them, so the cost per day grows with the range. ExportRange therefore hands the
scheduler DayBatch tasks of at most `batch_days` missing days instead of the days: a batch requires
nothing up front and yields from run(), wave by wave, the ExportWindow tasks that fetch its days
with right-sized requests (amp_luigi.windows: several days in one request, a heavy day split up
front) and then the days, so they enter the scheduler only when a worker starts the batch. The
pending set holds the batches plus the tasks of the few batches started, and a failed day stops
only its own batch's later waves: the other batches still land, and the run still exits non-zero
([retcode] task_failed).

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
import functools
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import luigi
from luigi.parameter import ParameterVisibility
from luigi.tools.range import RangeDaily

from amp_luigi.errors import FatalError, StaleStateError
from amp_luigi.export import check_exportable, export_window, known_near, locked_days
from amp_luigi.hours import days_between, exportable_days
from amp_luigi.layout import WINDOWS_DIR, window_days, window_dir, window_record
from amp_luigi.luigi_defaults import export_resources
from amp_luigi.progress import Progress
from amp_luigi.projects import names, project
from amp_luigi.records import WindowRecord
from amp_luigi.settings import amplitude, export_cap, staging
from amp_luigi.tasks import (
    EXPORT_AHEAD_DAYS,
    DayTask,
    ExportDay,
    ProjectTask,
    RefreshDay,
    StagedTarget,
    VerifyDay,
    day_priority,
    download_progress,
    last_layer,
    settings_checked,
)
from amp_luigi.windows import BATCH_DAYS, Window, consecutive, in_batches, plan, wave

logger = logging.getLogger(__name__)
# When this process started: an ExportRange's default `now`, so every range this process makes
# (and every clone of it) shares one, and it travels with the range's parameters.
PROCESS_STARTED = int(time.time())


def missing_days(daily: type[DayTask], params: Mapping[str, Any], days: list[dt.date]) -> list[DayTask]:
    """The tasks of `daily` (with `params`) for the days of `days` that are not complete.

    A daily task with bulk_complete (the marker tasks) answers from one listing, called as Luigi's
    RangeDaily calls it (with the parameters in a functools.partial); any other is asked day by day.
    """
    try:
        done = set(daily.bulk_complete.__func__(functools.partial(daily, **params), days))  # type: ignore[attr-defined]
    except NotImplementedError:
        return [task for task in (daily(date=day, **params) for day in days) if not task.complete()]
    return [daily(date=day, **params) for day in days if day not in done]


def day_params(of_params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The parameters every day of a range gets besides its date: `--of-params` and the project
    (left out for the unnamed one, whose task ids never had it)."""
    return {**of_params, **({"project": name} if name else {})}


class ExportWindow(ProjectTask):
    """Downloads consecutive missing days with one request (or one heavy day in the hour ranges its
    neighbours needed) and writes each day's export, as ExportDay would have: those ExportDays are
    complete before they are scheduled. Output: a WindowRecord in staging naming the days it
    exported and why it left any to go alone (held by an overlapping run, or the window's error,
    which then each day's own request meets or gets past: a window never fails its days).
    """

    first = luigi.DateParameter(description="The window's first day.")
    last = luigi.DateParameter(description="The window's last day.")
    hours_each = luigi.IntParameter(default=24, description="Hours per request up front (a heavy day).")

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        # The export cap, and each of its days': a window planned again while an earlier one over
        # the same days still runs (on another host, whose locks are its own) waits, then finds
        # them exported.
        return export_resources(self.project, self.days())

    @property
    def priority(self) -> int:  # type: ignore[override]
        # Before any ExportDay of its days (which have EXPORT_AHEAD_DAYS more than their day).
        return day_priority(self.first) + EXPORT_AHEAD_DAYS + 1

    def days(self) -> list[dt.date]:
        return days_between(self.first, self.last + dt.timedelta(days=1))

    def output(self) -> luigi.Target:
        settings = project(self.project)
        return StagedTarget(settings.staging, window_record(settings.staging_root, self.first, self.last))

    def complete(self) -> bool:
        settings_checked(self.project)
        return bool(self.output().exists())

    def run(self) -> None:
        settings = project(self.project)
        progress = Progress(self)
        layouts = {day: ExportDay(day, project=self.project).layout() for day in self.days()}
        error = None
        try:  # planned within the exportable days; a window run by hand is held to it too
            for day in self.days():
                check_exportable(day, settings.first_date, amplitude().availability_lag_hours)
        except FatalError as refused:
            error = str(refused)
        area = settings.staging
        with locked_days(settings.work_dir, [] if error else self.days(), wait=False) as held:
            # Listed under the locks: a day another run verified meanwhile is not asked for again.
            verified = VerifyDay.marked(self.project)
            todo = [day for day in held if day not in verified and not area.exists(layouts[day].export_index)]
            for run in consecutive(todo):
                window = Window(tuple(run), self.hours_each if len(run) == 1 else 24, None)
                progress(
                    f"requesting {window.label()} from Amplitude, waiting for the first byte", 0, final=True
                )
                try:
                    export_window(
                        settings.client(), window, layouts, staging().limits(), download_progress(progress)
                    )
                except FatalError as failed:  # archive checks included: the days are asked for alone instead
                    error = f"{window.label()}: {failed}"
                    logger.warning("%s. The days are exported one by one.", error)
                    area.remove_tree(window_dir(settings.staging_root, window.first, window.last))
                    break
        exported = [day for day in self.days() if area.exists(layouts[day].export_index)]
        others = [day for day in self.days() if day not in held and not error]
        record = window_record(settings.staging_root, self.first, self.last)
        WindowRecord(self.first, self.last, exported, others, error).save(record, area)
        done = f"exported {len(exported)} of {len(self.days())} day(s)"
        progress(f"{done}; {error}" if error else done, 100, final=True)


class DayBatch(ProjectTask):
    """Consecutive days of an ExportRange: requires nothing up front and yields, wave by wave, the
    windows that fetch its missing days and then the days themselves, so they enter the scheduler
    only when a worker starts the batch. Complete when every day of [start, stop) is.

    Each wave is planned from what is known then (amp_luigi.windows): as many windows as the export
    cap runs at once, only the first while nothing is known. Days are handed over once their
    window is done and what waits in staging reaches what the windows in flight may hold (or no
    window is left), so downloads overlap the extraction and upload of earlier days while staging
    stays bounded; a day that fails then stops only the waves after it (the next run goes on).
    """

    of = luigi.TaskParameter(description="The daily task of the batch's days.")
    of_params = luigi.DictParameter(
        default=dict[str, Any](), description="Parameters of the days besides date and project."
    )
    start = luigi.DateParameter(description="The first day, inclusive.")
    stop = luigi.DateParameter(description="The day after the last one.")

    def missing(self) -> list[DayTask]:
        return missing_days(
            self.of, day_params(self.of_params, self.project), days_between(self.start, self.stop)
        )

    def complete(self) -> bool:
        settings_checked(self.project)
        return not self.missing()

    def run(self) -> Iterator[list[luigi.Task]]:
        # Luigi runs run() again from the start when the yielded tasks were not all done at once:
        # every wave is planned from what staging and S3 hold then.
        settings = project(self.project)
        budget = amplitude().budget()
        cap = export_cap(self.project)
        handed: list[luigi.Task] = []
        while missing := self.missing():
            exports = {task.date: task.clone(ExportDay) for task in missing if isinstance(task, DayTask)}
            verified = VerifyDay.marked(self.project)
            self.forget_windows(done=verified)
            records = self.records()
            # Verified already (a later layer's days, ParquetDay's), exported, or done by a window.
            fetched = {
                day
                for day, export in exports.items()
                if day in verified or export.complete() or self.windowed(day, records)
            }
            # After a window gave up (a refusal, a damaged answer), the days go one by one: each
            # meets, or gets past, the error alone, and one bad day holds back no other.
            gave_up = any(record.error for record in records)
            waiting = [day for day in exports if day not in fetched and not gave_up]
            known = known_near(
                settings.open_bucket(),
                settings.prefix,
                settings.staging,
                settings.staging_root,
                waiting,
                verified,
            )
            windows = wave(plan(waiting, known, budget), cap) if waiting else []
            staged = sum(known[day].bytes or 0 for day in fetched - verified if day in known)
            release = not windows or staged >= cap * budget.bytes or gave_up
            tasks: list[luigi.Task] = [
                *(ExportWindow(w.first, w.last, w.hours_each, project=self.project) for w in windows),
                *(task for task in missing if release and (task.date in fetched or gave_up)),
            ]
            if tasks == handed:  # done, but a listing that lags says not yet: the next run looks again
                return
            handed = tasks
            yield tasks
        self.forget_windows(done=None)

    @staticmethod
    def windowed(day: dt.date, records: list[WindowRecord]) -> bool:
        """Whether a window covered `day` (exported it, or left it to go alone)."""
        return any(record.first <= day <= record.last for record in records)

    def records(self) -> list[WindowRecord]:
        """What the windows over this batch's days did. One a killed run left behind only sends its
        days to go alone; a damaged one counts as none (its days are planned again)."""
        settings = project(self.project)
        area, folder = settings.staging, settings.staging_root / WINDOWS_DIR
        found = []
        for path in area.files(folder):
            days = window_days(path)
            if path.parent != folder or days is None or days[1] < self.start or days[0] >= self.stop:
                continue  # a spool's archive, or a window of other days
            try:
                found.append(WindowRecord.load(path, area))
            except StaleStateError as error:
                logger.warning("%s; it was removed", error)
                area.remove(path)
            except FileNotFoundError:
                continue  # forgotten by another batch since the listing
        return found

    def forget_windows(self, done: set[dt.date] | None) -> None:
        """Remove the records and spools of windows whose days are all verified (`done`), or, with
        None, of every window within the batch's days (all of them are by then), wherever the
        batches of an earlier run began and ended."""
        settings = project(self.project)
        area, folder = settings.staging, settings.staging_root / WINDOWS_DIR
        # A window's record (`<first>..<last>.json`) and its spool (`<first>..<last>/`).
        for name in area.children(folder):
            days = window_days(folder / name)
            if days is None:
                continue
            span = days_between(days[0], days[1] + dt.timedelta(days=1))
            finished = (
                all(day in done for day in span)
                if done is not None
                else self.start <= days[0] and days[1] < self.stop
            )
            if not finished:
                continue
            if name.endswith(".json"):
                area.remove(folder / name)
            else:
                area.remove_tree(folder / name)


class OptionalDateParameter(luigi.parameter.OptionalParameterMixin[dt.date], luigi.DateParameter):  # type: ignore[misc]
    """A date or None, None written as '' (RangeDaily's DateParameter writes "None", which it cannot
    read back)."""

    expected_type = dt.date


class ExportRange(ProjectTask, RangeDaily):
    """Every missing day from --start (inclusive) to --stop (exclusive; default: all exportable days),
    and with --refresh-days N the newest N complete days of the range again.

    requires() names every missing day (over every project, one range per project): it is what the
    range's completeness means. deps(), what the scheduler is handed, is DayBatch tasks of up to
    `batch_days` missing days each, and the refreshes (see the module docstring).
    """

    of = luigi.TaskParameter(
        default=VerifyDay,
        description="The daily task to fill in: VerifyDay, ParquetDay for the Parquet layer too, or "
        "IcebergDay for the Iceberg table ([parquet] or [iceberg] enabled = true makes it the default).",
    )
    # RangeDaily's optional parameters, declared so that None goes to the scheduler as '' and comes
    # back as None: a worker that did not schedule the range (an assistant, on another host) builds
    # it from the scheduler's text, which Luigi's own "None" breaks (ValueError, exit 40).
    start = OptionalDateParameter(default=None, description="The first day, inclusive.")
    stop = OptionalDateParameter(
        default=None, description="The day after the last one (default: all exportable)."
    )
    now = luigi.OptionalIntParameter(  # type: ignore[assignment]  # luigi's stubs: RangeBase's default None
        default=PROCESS_STARTED,
        description="The run's start, in seconds since the epoch (default: when this process started): the "
        "moment --refresh-days re-exports as of, the same on every host that runs the range.",
    )
    param_name = luigi.OptionalParameter(
        default=None, positional=False, description="Ignored: the daily task takes `date`."
    )
    days_back = luigi.IntParameter(default=0, description="Ignored: --start is never clipped.")
    task_limit = luigi.IntParameter(default=100_000, description="At most this many days per run.")
    refresh_days = luigi.IntParameter(
        default=0,
        description="Re-export the newest N days of the range on every run, for events that arrive "
        "after a day was exported; 0 (the default) exports each day once.",
    )
    batch_days = luigi.IntParameter(
        default=BATCH_DAYS,
        significant=False,
        visibility=ParameterVisibility.HIDDEN,  # the scheduler shows only dates and Luigi's range knobs
        description="Hand the missing days to the scheduler in batches of at most this many (DayBatch), "
        "each fetching its days in waves, so the scheduler's pending set and cost per step stay small.",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if self.of_params.get("project", self.project) != self.project:
            raise luigi.parameter.ParameterException(
                "ExportRange takes the project as --project (every project without it), not in --of-params."
            )

    def daily(self) -> type[DayTask]:
        """The daily task filled in: `--of`, where an enabled layer makes the default its day task
        (tasks.last_layer); the parameter keeps its default, so the task id stays the same."""
        return last_layer() if self.of is VerifyDay else self.of

    def day_params(self) -> dict[str, Any]:
        return day_params(self.of_params, self.project)

    @functools.cached_property
    def per_project(self) -> list[ExportRange]:
        """One range per named project, when this one names none (see the module docstring)."""
        return [] if self.project else [self.clone(project=name) for name in names()]

    @functools.cached_property
    def started(self) -> dt.datetime:
        """The run's start (naive UTC, whole seconds), `now`: the `as_of` of its refreshes. A
        parameter, not this process's clock: an assistant on another host that runs the range
        rebuilds it from luigid's text, and must not take the days just exported for days to refresh."""
        return dt.datetime.fromtimestamp(
            time.time() if self.now is None else self.now, tz=dt.timezone.utc
        ).replace(tzinfo=None, microsecond=0)

    def days(self) -> list[dt.date]:
        """Every day of the range Amplitude can export completely, from the project's first day on."""
        if not self.start and not self.reverse:
            raise luigi.parameter.ParameterException(
                "Either start needs to be specified or reverse needs to be True"
            )
        first = project(self.project).first_date
        return exportable_days(self.start, self.stop, first, self.started, amplitude().availability_lag_hours)

    def missing(self) -> list[DayTask]:
        """The range's missing days, oldest first (`--reverse`: newest first), at most `task_limit`."""
        found = missing_days(self.daily(), self.day_params(), self.days())
        return found[-self.task_limit :][::-1] if self.reverse else found[: self.task_limit]

    def refreshes(self, missing: list[DayTask]) -> list[luigi.Task]:
        """RefreshDay for each of the newest `refresh_days` days of the range that is complete."""
        gaps = {task.date for task in missing}
        newest = self.days()[-self.refresh_days :] if self.refresh_days > 0 else []
        return [
            RefreshDay(day, as_of=self.started, project=self.project) for day in newest if day not in gaps
        ]

    def requires(self) -> list[luigi.Task]:
        if self.per_project:
            return list(self.per_project)
        missing = self.missing()
        return [*missing, *self.refreshes(missing)]

    def deps(self) -> list[luigi.Task]:
        """What the scheduler gets: the missing days in DayBatch tasks of at most `batch_days` days
        (each fetches its days in right-sized windows), and the refreshes."""
        if self.per_project:
            return list(self.per_project)
        missing = self.missing()
        chunks = in_batches(missing, self.batch_days)
        batches = [
            DayBatch(
                of=self.daily(),
                of_params=self.of_params,
                start=min(chunk[0].date, chunk[-1].date),
                stop=max(chunk[0].date, chunk[-1].date) + dt.timedelta(days=1),
                project=self.project,
            )
            for chunk in chunks
        ]
        return [*batches, *self.refreshes(missing)]

    def complete(self) -> bool:
        # Every setting first, and the keys of every project this range covers: a wrong one stops
        # the run before any request, with its message and no traceback.
        settings_checked(None if self.per_project else self.project)
        return all(task.complete() for task in self.requires())
