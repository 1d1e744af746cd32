"""The pipeline: four tasks per UTC day, each complete exactly when its own output exists.

    ExportDay -> ExtractDay -> UploadDay -> VerifyDay -> ParquetDay (optional)
                                                      -> IcebergDay (optional)
    RefreshDay: a verified day exported again, for late events

A finished day is skipped without a single request to Amplitude (VerifyDay's S3 marker exists), and a
failed one resumes at the stage that failed, because every earlier stage left its output behind.
Each task wires its stage (a plain function in the module of the same name) to its input and
output. One recovery rule: a task that finds its input bad (damaged, unreadable, changed, or not
what S3 holds) discards the task that made it, with `discard()`, and fails naming what it found;
the next run makes that input again. The parameters are the date and the project's name (left out
for the single project of a configuration that names none, with the task ids that always had):
credentials and settings live in luigi.cfg or the environment, never in task parameters, which the
central scheduler shows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePath
from typing import ClassVar, NoReturn

import luigi

from amp_luigi.errors import ArchiveError, ConfigError, StaleStateError, VerificationError
from amp_luigi.export import check_exportable, export_day, known_near, locked_days
from amp_luigi.extract import extract_day
from amp_luigi.hours import HourRange
from amp_luigi.layout import (
    ICEBERG_DIR,
    PARQUET_DIR,
    UPLOADED_DIR,
    VERIFIED_DIR,
    DayLayout,
    ParquetLayout,
    iceberg_marker_key,
    marker_date,
    marker_prefix,
)
from amp_luigi.luigi_defaults import day_resource, export_resources
from amp_luigi.progress import Progress, mib
from amp_luigi.projects import Project, checked, project
from amp_luigi.query.catalog import open_table, table_of
from amp_luigi.records import DayRecord, read_marker, write_marker
from amp_luigi.s3 import Bucket
from amp_luigi.settings import amplitude, iceberg, parquet, staging, storage
from amp_luigi.staging_area import StagingArea
from amp_luigi.upload import upload_day
from amp_luigi.verify import differences
from amp_luigi.windows import estimate

logger = logging.getLogger(__name__)


def settings_checked(name: str | None) -> None:
    """Every setting (and the keys of project `name`, None: of every project) checked before the
    first request; Luigi calls complete() before anything else.

    Luigi logs a failing complete() with its traceback; for a setting the message is all there is to
    read, so that log line is cut down to it.
    """
    try:
        checked(name, exporting=True)
    except ConfigError as error:
        logging.getLogger("luigi-interface").addFilter(_WithoutTraceback(str(error)))
        raise


class _WithoutTraceback(logging.Filter):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.message in text and "Traceback" in text:
            record.msg, record.args = text.split("\n", 1)[0].removesuffix(":") + ":\n" + self.message, ()
        return True


# Luigi runs the highest priority first and raises a task's dependencies to its own priority, so a
# day's four tasks share one: earlier days first, and a backfill finishes its days in order. ExportDay
# gets EXPORT_AHEAD_DAYS more, so idle export slots go to the next days' downloads (Amplitude's
# minutes of latency overlap the extraction and upload of earlier days) while at most that many days
# of archives wait in staging. Without it a backfill runs in batches: every day of a batch is
# extracted and uploaded before the next batch's exports start.
EXPORT_AHEAD_DAYS = 4
_LAST_DAY = dt.date(2199, 12, 31)


def day_priority(date: dt.date) -> int:
    return max(0, (_LAST_DAY - date).days)


class MarkerTarget(luigi.Target):
    """An S3 marker as a Luigi target. exists() is one HEAD: S3Target.exists() follows a missing key
    with a search for a "directory" of that name (four requests per check, twice per task and day)."""

    def __init__(self, bucket: Bucket, key: str) -> None:
        self.bucket, self.key = bucket, key

    @property
    def path(self) -> str:
        return f"s3://{self.bucket.name}/{self.key}"

    def exists(self) -> bool:
        return self.bucket.exists(self.key)

    def remove(self) -> None:
        self.bucket.delete([self.key])


class StagedTarget(luigi.Target):
    """A file of the project's staging area (amp_luigi.staging_area) as a Luigi target: a stat on
    this host's disk, or one HEAD in S3."""

    def __init__(self, area: StagingArea, staged: PurePath) -> None:
        self.area, self.staged = area, staged

    @property
    def path(self) -> str:
        return self.area.where(self.staged)

    def exists(self) -> bool:
        return self.area.exists(self.staged)


class ProjectTask(luigi.Task):
    """A task of one project: `--project web` ([project.web] in luigi.cfg), or none for the unnamed one.

    An unnamed project's task leaves the parameter out of its task id and its name, so both stay
    what they were before projects existed (`VerifyDay(date=2024-03-01)`).
    """

    project = luigi.Parameter(
        default="",
        positional=False,  # `VerifyDay(date)` as before: the date stays the first positional parameter
        description="The project's name ([project.<name>] in luigi.cfg); left out when luigi.cfg names none.",
    )

    def to_str_params(self, only_significant: bool = False, only_public: bool = False) -> dict[str, str]:
        params: dict[str, str] = super().to_str_params(only_significant, only_public)
        if not self.project:
            params.pop("project", None)
        return params

    def __repr__(self) -> str:
        """`VerifyDay(date=2024-03-01, project=web)`: the project last, and absent when unnamed."""
        shown = self.to_str_params(only_significant=True)
        ordered = sorted(shown.items(), key=lambda item: item[0] == "project")
        return f"{self.get_task_family()}({', '.join(f'{name}={value}' for name, value in ordered)})"

    def project_settings(self) -> Project:
        """The project's settings, read once per task (Luigi asks for outputs many times)."""
        if "_project" not in self.__dict__:
            self._project = project(self.project)
        return self._project


class DayTask(ProjectTask):
    date = luigi.DateParameter(description="The UTC day, YYYY-MM-DD.")
    # What discard() means for the next run, said when a later stage discards this one's output.
    redo = ""

    @property
    def priority(self) -> int:  # type: ignore[override]
        return day_priority(self.date)

    def layout(self) -> DayLayout:
        """Built once per task: Luigi asks for a task's output many times while it schedules."""
        if "_layout" not in self.__dict__:
            settings = self.project_settings()
            self._layout = DayLayout(
                self.date, settings.staging_root, settings.prefix, storage().keep_gzip, settings.staging
            )
        return self._layout

    def marker(self, key: str) -> MarkerTarget:
        """Built once per task and process: a task forked by Luigi must not use its parent's client."""
        targets: dict[tuple[int, str], MarkerTarget] = self.__dict__.setdefault("_markers", {})
        if (os.getpid(), key) not in targets:
            targets[os.getpid(), key] = MarkerTarget(self.project_settings().open_bucket(), key)
        return targets[os.getpid(), key]

    def __getstate__(self) -> dict[str, object]:
        """Without the targets: their S3 client cannot be pickled (a spawned worker, not forked)."""
        return {name: value for name, value in self.__dict__.items() if name != "_markers"}

    def complete(self) -> bool:
        settings_checked(self.project)
        return bool(self.output().exists())

    def discard(self) -> None:
        """Remove this task's output (and what it left half done), so the next run makes it again."""
        raise NotImplementedError

    def input_is_bad(self, error: Exception) -> NoReturn:
        """The recovery rule: the stage that made this task's input is discarded, then the day fails."""
        made_it = self.requires()
        assert isinstance(made_it, DayTask)
        made_it.discard()
        raise type(error)(f"{self.day_label()}: {error}. {made_it.redo}") from error

    def day_label(self) -> str:
        """The day as messages name it: `2024-03-01`, or `project web 2024-03-01`."""
        return " ".join(filter(None, (self.project_settings().label(), self.date.isoformat())))


class MarkerDay(DayTask):
    """A day task whose output is an S3 marker, `<prefix>/_<kind>/<date>.json` (its `marker_dir`):
    complete when the marker exists, a range's days decided by one listing of the markers, discarded
    by removing the marker."""

    marker_dir: ClassVar[str]

    def marker_key(self) -> str:
        raise NotImplementedError

    def output(self) -> MarkerTarget:
        return self.marker(self.marker_key())

    @classmethod
    def bulk_complete(cls, parameter_tuples: Iterable[dt.date]) -> list[dt.date]:
        """The dates with a marker, from one listing instead of one request per day (1,000 keys a page).

        Luigi's RangeDaily calls this with a functools.partial as `cls` (its `of_params`, e.g. the
        project, as keywords) and a one-shot iterator; the partial's class is read from `.func`.
        """
        keywords: dict[str, object] = cls.keywords if isinstance(cls, functools.partial) else {}
        kind: type[MarkerDay] = cls.func if isinstance(cls, functools.partial) else cls
        wanted = list(parameter_tuples)
        found = kind.marked(str(keywords.get("project", "")))
        return [date for date in wanted if date in found]

    @classmethod
    def marked(cls, name: str) -> set[dt.date]:
        """Every day of project `name` with this task's marker, from one listing."""
        settings_checked(name)
        settings = project(name)
        listing = settings.open_bucket().listing(marker_prefix(settings.prefix, cls.marker_dir))
        return {day for day in map(marker_date, listing) if day is not None}

    def discard(self) -> None:
        self.output().remove()


class ExportDay(DayTask):
    """Downloads the day from Amplitude into the project's staging area (this host's disk, or S3).

    Input: none. Output: `export/parts.json`, listing one zip per hour range (a range Amplitude found
    too large is split, down to single hours; a range without data has no zip). Complete when that
    index exists; it is written after every zip is on disk in full.
    """

    redo = "The download was discarded; the next run fetches it again."

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        # Amplitude allows ~5 concurrent requests per project: one cap per project ([resources]);
        # and the day's own, so that on several hosts no window downloads it at the same time.
        return export_resources(self.project, [self.date])

    @property
    def priority(self) -> int:  # type: ignore[override]
        return day_priority(self.date) + EXPORT_AHEAD_DAYS

    def output(self) -> luigi.Target:
        layout = self.layout()
        return StagedTarget(layout.area, layout.export_index)

    def discard(self) -> None:
        layout = self.layout()
        layout.area.remove_tree(layout.export_dir)

    def run(self) -> None:
        settings = self.project_settings()
        check_exportable(self.date, settings.first_date, amplitude().availability_lag_hours)
        progress = Progress(self)
        layout = self.layout()
        with locked_days(settings.work_dir, [self.date], wait=True):
            # While this task waited for the lock, its window or another run may have done it.
            if self.output().exists():
                progress(f"{self.day_label()} was exported with its window", 100, final=True)
                return
            hours_each = self.hours_each()
            split = f" in {hours_each}-hour ranges, as its neighbours needed" if hours_each < 24 else ""
            # Amplitude can think for minutes before the first byte: say so in the scheduler meanwhile.
            progress(
                f"requesting {self.day_label()} from Amplitude{split}, waiting for the first byte",
                0,
                final=True,
            )
            index = export_day(settings.client(), layout, download_progress(progress), hours_each)
        size = sum(
            layout.area.size(layout.export_dir / part.archive) for part in index.ranges if part.archive
        )
        progress(f"downloaded {len(index.ranges)} range(s), {mib(size)}", 100, final=True)

    def hours_each(self) -> int:
        """The widest hour range the nearest exported days needed (24 where none was split)."""
        settings = self.project_settings()
        known = known_near(
            settings.open_bucket(),
            settings.prefix,
            settings.staging,
            settings.staging_root,
            [self.date],
            VerifyDay.marked(self.project),
        )
        guess = estimate(self.date, known)
        return 24 if guess is None else guess.widest_hours


def download_progress(progress: Progress) -> Callable[[HourRange, int, int | None], None]:
    """Bytes received of each range, for the scheduler's status line and progress bar."""

    def on_bytes(hours: HourRange, received: int, total: int | None) -> None:
        of_total = f" of {mib(total)}" if total else ""
        percent = 100.0 * received / total if total else None
        progress(f"downloading {hours.label()}: {mib(received)}{of_total}", percent)

    return on_bytes


class ExtractDay(DayTask):
    """Extracts and checks every `*.json.gz` member and writes the day's manifest.

    Input: ExportDay's archives. Output: `manifest.json` (member name, hour, sizes, CRC32s, event
    count), written after every member passed its checks. An archive that fails them, or a damaged
    index, is discarded with ExportDay's output, so the next run downloads it again.
    """

    redo = "The extracted members were discarded; the next run extracts them again."

    def requires(self) -> ExportDay:
        return self.clone(ExportDay)

    def output(self) -> luigi.Target:
        layout = self.layout()
        return StagedTarget(layout.area, layout.manifest_path)

    def discard(self) -> None:
        layout = self.layout()
        layout.area.remove(layout.manifest_path)
        layout.area.remove_tree(layout.members_dir)

    def run(self) -> None:
        progress = Progress(self)

        def on_member(done: int, total: int, members: int) -> None:
            progress(
                f"extracted {members} member(s), {mib(done)} of {mib(total)}", 100.0 * done / (total or 1)
            )

        try:
            manifest = extract_day(self.layout(), staging().limits(), on_member)
        except (ArchiveError, StaleStateError) as error:
            self.discard()  # the members extracted so far
            self.input_is_bad(error)
        progress(f"extracted {len(manifest.members)} member(s), {manifest.events} events", 100, final=True)


class UploadDay(MarkerDay):
    """Uploads the day's members to S3 under deterministic keys, replacing whatever was there.

    Input: the manifest and members. Output: the S3 marker `_uploaded/<date>.json` listing the
    objects, written last. Objects under the day's prefix that the manifest does not name (left by an
    earlier export of the day) are deleted, so a rerun never duplicates. A member that changed since
    extraction, or a damaged manifest, is discarded with ExtractDay's output.
    """

    redo = "The upload marker was removed: run again to upload the day anew."
    marker_dir = UPLOADED_DIR

    def requires(self) -> ExtractDay:
        return self.clone(ExtractDay)

    def marker_key(self) -> str:
        return self.layout().uploaded_key

    def run(self) -> None:
        progress = Progress(self)
        bucket = self.project_settings().open_bucket()

        def on_object(done: int, total: int) -> None:
            progress(f"uploaded {done} of {total} object(s)", 100.0 * done / total)

        try:
            record = upload_day(bucket, self.layout(), staging().limits(), on_object)
        except (ArchiveError, StaleStateError) as error:
            self.input_is_bad(error)
        write_marker(bucket, self.output().key, record)
        progress(f"uploaded {len(record.objects)} object(s), {record.events} events", 100, final=True)


class VerifyDay(MarkerDay):
    """Proves S3 holds exactly the day's objects, then writes the verified manifest.

    Input: UploadDay's marker. Output: `_verified/<date>.json` (the date in the file name, so Luigi's
    range tools can list it), written only when every object matches by key, size and ETag and no
    other object sits under the day's prefix. Complete when that marker can be read: a damaged one is
    removed, so the day is verified again. On a mismatch or a damaged upload marker it removes
    UploadDay's marker, so the next run uploads again. Once the day is proven, its staging files
    (with whatever a killed run left among them, and in S3 the uploads it left open) are removed
    unless [staging] keep is set, and the marker is written last.
    """

    redo = "The day will be verified again."
    marker_dir = VERIFIED_DIR

    def requires(self) -> UploadDay:
        return self.clone(UploadDay)

    def marker_key(self) -> str:
        return self.layout().verified_key

    def complete(self) -> bool:
        """The marker is read, not only found (status, RefreshDay and users read it); a GET costs a HEAD."""
        settings_checked(self.project)
        return self.verified() is not None

    def verified(self) -> DayRecord | None:
        output = self.output()
        return read_marker(output.bucket, output.key)

    def run(self) -> None:
        layout = self.layout()
        progress = Progress(self)
        bucket = self.project_settings().open_bucket()
        uploaded = read_marker(bucket, layout.uploaded_key)  # a damaged one is removed, and named
        if uploaded is None:
            self.input_is_bad(StaleStateError(f"s3://{bucket.name}/{layout.uploaded_key} could not be read"))
        problems = differences(bucket, layout.data_prefix, uploaded.objects)
        if problems:
            self.input_is_bad(
                VerificationError(
                    f"S3 does not hold what was uploaded under s3://{bucket.name}/{layout.data_prefix}: "
                    + "; ".join(problems)
                )
            )
        # The staging goes before the marker: verification needs none of it, so a run killed in
        # between verifies again, and one killed earlier left its objects for this to remove.
        if not staging().keep:
            layout.area.remove_tree(layout.day_dir)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        record = dataclasses.replace(uploaded, verified_at=now)
        write_marker(bucket, layout.verified_key, record)
        progress(f"verified {len(record.objects)} object(s), {record.events} events", 100, final=True)


class ParquetDay(MarkerDay):
    """Converts the verified day into typed Parquet under `<parquet prefix>/dt=<date>/` (amp_luigi.query.parquet).

    Input: VerifyDay's marker and the objects it lists, read from S3, never staging, so any day ever
    verified converts, however old. Output: `_parquet/<date>.json` (rows, files, bytes, schema
    version), written only after every file's footer in S3 counts the rows the verified marker
    counts. A rerun converts again to the same keys and deletes any other file.
    """

    redo = "The Parquet marker was removed: run again to convert the day anew."
    marker_dir = PARQUET_DIR

    def requires(self) -> VerifyDay:
        return self.clone(VerifyDay)

    def marker_key(self) -> str:
        return self.parquet_layout().marker_key

    def parquet_layout(self) -> ParquetLayout:
        settings = self.project_settings()
        return ParquetLayout(self.date, settings.prefix, settings.parquet_prefix)

    def run(self) -> None:
        from amp_luigi.query.parquet import Engine, convert_day  # DuckDB only where the layer is used

        layout = self.parquet_layout()
        progress = Progress(self)
        bucket = self.project_settings().open_bucket()
        verified = self.requires().verified()
        if verified is None:  # removed as damaged since scheduling: verify the day again
            self.input_is_bad(StaleStateError(f"the verified marker of {self.day_label()} could not be read"))
        settings = parquet()
        root = self.project_settings().work_dir
        # Hidden and not named like a day, so the status view does not take it for a failed export.
        work = Path(tempfile.mkdtemp(prefix=f".parquet-{self.date.isoformat()}-", dir=root))
        try:
            record = convert_day(
                bucket,
                layout,
                verified.objects,
                Engine(settings.memory_limit_mib, settings.threads),
                work,
                lambda done, total: progress(f"converted {done} of {total} hour(s)", 100.0 * done / total),
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        bucket.write_json(layout.marker_key, record.to_json())
        rows, size = sum(item.rows for item in record.files), sum(item.bytes for item in record.files)
        progress(f"{rows} rows in {len(record.files)} Parquet file(s), {mib(size)}", 100, final=True)


class IcebergDay(MarkerDay):
    """Commits upload day `date`'s verified events to the project's Iceberg table, partitioned by
    event time (amp_luigi.query.iceberg), in one atomic commit that replaces whatever the day
    committed before, each event (`uuid`) once.

    Input: VerifyDay's marker and the objects it lists, read from S3, never staging (and ParquetDay
    first when [parquet] enabled, so a range fills both layers). Output: `_iceberg/<date>.json`
    (the snapshot, rows, files, duplicates dropped), written after the commit, once the day's rows
    are counted in the table. A rerun commits the day again: its rows replace the earlier ones.
    Commits to one table take turns (a Luigi resource of capacity 1 per table).
    """

    redo = "The Iceberg marker was removed: run again to commit the day anew."
    marker_dir = ICEBERG_DIR

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        return {table_of(self.project_settings()).resource: 1}

    def requires(self) -> list[DayTask]:
        return [self.clone(VerifyDay), *([self.clone(ParquetDay)] if parquet().enabled else [])]

    def marker_key(self) -> str:
        return iceberg_marker_key(self.project_settings().prefix, self.date)

    def run(self) -> None:
        from amp_luigi.query.iceberg import commit_day  # pyiceberg only where the layer is used
        from amp_luigi.query.typed import Engine

        progress = Progress(self)
        settings = self.project_settings()
        verify = self.clone(VerifyDay)
        verified = verify.verified()
        if verified is None:  # removed as damaged since scheduling: verify the day again
            verify.discard()
            raise StaleStateError(f"{self.day_label()}: the verified marker could not be read. {verify.redo}")
        table = table_of(settings)
        work = Path(tempfile.mkdtemp(prefix=f".iceberg-{self.date.isoformat()}-", dir=settings.work_dir))
        try:
            record = commit_day(
                lambda: open_table(table),
                settings.open_bucket(),
                self.date,
                verified.objects,
                Engine(iceberg().value("memory_limit_mib")),
                work,
                lambda message, percent: progress(message, percent),
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        settings.open_bucket().write_json(self.marker_key(), record.to_json())
        dropped = record.duplicates_within_day + record.duplicates_committed
        progress(
            f"{record.rows} rows in {record.table} (snapshot {record.snapshot_id}), {dropped} duplicate(s) dropped",
            100,
            final=True,
        )


def last_layer() -> type[DayTask]:
    """The daily task that completes a day with every enabled layer: IcebergDay ([iceberg] enabled,
    which requires ParquetDay when [parquet] is enabled too), ParquetDay, else VerifyDay."""
    if iceberg().enabled:
        return IcebergDay
    return ParquetDay if parquet().enabled else VerifyDay


class RefreshDay(DayTask):
    """Exports an already verified day again, replacing its objects in S3 exactly.

    Amplitude keeps accepting events for a day after it ends, so a day exported on the morning after
    can still grow. Input: none up front; VerifyDay(date) as a dynamic dependency. Output: none of
    its own. Complete when the day's verified marker says `verified_at` >= `as_of`, i.e. the day was
    exported (again) during this run or later. Its run() discards, while the marker is older than
    `as_of`, the day's staging, its upload marker and, last, its verified marker (until that one is
    gone a crash here repeats the removal on the next run, and after it the normal gap filling
    covers the day), then requires VerifyDay. Luigi runs run() again from the start once VerifyDay
    is done; by then the marker is new, so nothing is removed twice.
    """

    as_of = luigi.DateSecondParameter(
        description="The run's start (UTC): a day verified before this moment is exported again."
    )

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        # One refresh of a day at a time, whatever its as_of (overlapping runs): a second one that
        # started while the first was removing markers would remove the first one's new download.
        return {day_resource("amp_refresh", self.project, self.date): 1}

    def verified_at(self) -> dt.datetime | None:
        """When the day's verified marker was written (naive UTC), or None without a marker."""
        record = self.clone(VerifyDay).verified()
        if record is None:
            return None
        return record.verified_at or dt.datetime.min  # written before markers carried the time

    def complete(self) -> bool:
        settings_checked(self.project)
        verified_at = self.verified_at()
        return verified_at is not None and verified_at >= self.as_of

    def run(self) -> Iterator[DayTask]:
        verified_at = self.verified_at()
        if verified_at is not None and verified_at < self.as_of:
            Progress(self)(
                f"removing the markers of {self.day_label()} verified at {verified_at:%Y-%m-%d %H:%M:%S}", 0
            )
            logger.info("%s: re-exporting for late events (verified at %s)", self.day_label(), verified_at)
            layout = self.layout()
            layout.area.remove_tree(layout.day_dir)
            for stage in self.refreshed_stages():
                stage.discard()
        yield self.clone(last_layer())
        Progress(self)(f"re-exported {self.day_label()}", 100, final=True)

    def refreshed_stages(self) -> list[DayTask]:
        """The S3 outputs a refresh discards, the verified marker last."""
        return [self.clone(UploadDay), self.clone(ParquetDay), self.clone(IcebergDay), self.clone(VerifyDay)]
