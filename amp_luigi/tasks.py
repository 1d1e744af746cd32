"""The pipeline: four tasks per UTC day, each complete exactly when its own output exists.

    ExportDay -> ExtractDay -> UploadDay -> VerifyDay

A finished day is skipped without a single request to Amplitude (VerifyDay's S3 marker exists), and a
failed one resumes at the stage that failed, because every earlier stage left its output behind. The
only parameter is the date: credentials and settings live in luigi.cfg or the environment, never in
task parameters, which the central scheduler shows to anyone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import shutil
import threading
from collections.abc import Iterable
from typing import Any

import botocore.exceptions
import luigi
from luigi.contrib.s3 import S3Target

from amp_luigi.amplitude import export_hours
from amp_luigi.archive import extract_archives, inflate, read_chunks
from amp_luigi.errors import (
    ArchiveError,
    ConfigError,
    FatalError,
    NotYetAvailableError,
    StaleStateError,
    VerificationError,
)
from amp_luigi.hours import HourRange, available_after
from amp_luigi.layout import VERIFIED_DIR, DayLayout, marker_date, marker_prefix
from amp_luigi.manifest import ExpectedObject, Manifest, day_record, read_marker, recorded_objects
from amp_luigi.progress import Progress, mib
from amp_luigi.settings import amplitude, staging, storage, validated
from amp_luigi.storage import Bucket, explain
from amp_luigi.verify import differences

logger = logging.getLogger(__name__)


def check_exportable(date: dt.date, now: dt.datetime | None = None) -> None:
    """Refuse, before any request, a day Amplitude cannot export completely."""
    settings = amplitude()
    if date < settings.first_date:
        raise FatalError(
            f"{date} is before the project's first day {settings.first_date} ([amplitude] first_date): "
            "check the date, or set first_date to the day your Amplitude project started."
        )
    ready = available_after(date, settings.availability_lag_hours)
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    if now < ready:
        raise NotYetAvailableError(
            f"{date} cannot be exported yet: Amplitude has all of it only from {ready:%Y-%m-%d %H:%M} UTC "
            f"(the day's end plus [amplitude] availability_lag_hours = {settings.availability_lag_hours:g}); "
            "exporting it now would mark a partial day complete. Run again after that time."
        )


def settings_checked() -> None:
    """Every setting checked before the first request; Luigi calls complete() before anything else.

    Luigi logs a failing complete() with its traceback; for a setting the message is all there is to
    read, so that log line is cut down to it.
    """
    try:
        validated(exporting=True)
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


class DayTask(luigi.Task):
    date = luigi.DateParameter(description="The UTC day, YYYY-MM-DD.")

    @property
    def priority(self) -> int:  # type: ignore[override]
        return day_priority(self.date)

    def layout(self) -> DayLayout:
        return DayLayout(self.date, staging().root(), storage().key_prefix(), storage().keep_gzip)

    def s3_target(self, key: str) -> S3Target:
        return S3Target(f"s3://{storage().bucket_name()}/{key}", client=storage().target_client())

    def complete(self) -> bool:
        settings_checked()
        output = self.output()
        try:
            return self.output_holds()
        except botocore.exceptions.ClientError as error:
            # Luigi checks completeness while scheduling, before any task runs: say what is wrong.
            bucket = storage().bucket_name()
            key = str(getattr(output, "path", "")).removeprefix(f"s3://{bucket}/")
            raise explain(error, bucket, "read", key) from error
        except botocore.exceptions.BotoCoreError as error:
            raise FatalError(
                f"S3 could not be asked whether {getattr(output, 'path', output)} exists ({error}): check "
                "the AWS credentials (ACCESS_KEY / the AWS chain), the network and AWS_ENDPOINT_URL_S3."
            ) from error

    def output_holds(self) -> bool:
        """Whether this task's output exists (VerifyDay also reads it: others trust what it proves)."""
        output = self.output()
        if isinstance(output, S3Target):
            return _marker_exists(output)
        return bool(output.exists())


class ExportDay(DayTask):
    """Downloads the day from Amplitude into the staging directory.

    Input: none. Output: `export/parts.json`, listing one zip per hour range (a range Amplitude found
    too large is split, down to single hours; a range without data has no zip). Complete when that
    index exists; it is written after every zip is on disk in full.
    """

    resources = {"amplitude_export": 1}  # Amplitude allows ~5 concurrent requests per project

    @property
    def priority(self) -> int:  # type: ignore[override]
        return day_priority(self.date) + EXPORT_AHEAD_DAYS

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.layout().export_index))

    def run(self) -> None:
        check_exportable(self.date)
        layout = self.layout()
        progress = Progress(self)
        # Amplitude can think for minutes before the first byte: say so in the scheduler meanwhile.
        progress(f"requesting {self.date} from Amplitude, waiting for the first byte", 0, final=True)

        def on_bytes(hours: HourRange, received: int, total: int | None) -> None:
            of_total = f" of {mib(total)}" if total else ""
            percent = 100.0 * received / total if total else None
            progress(f"downloading {hours.label()}: {mib(received)}{of_total}", percent)

        parts = export_hours(amplitude().client(), HourRange.day(self.date), layout.archive_path, on_bytes)
        index = [
            {"hours": part.hours.label(), "archive": part.archive.name if part.archive else None}
            for part in parts
        ]
        with self.output().open("w") as out:
            json.dump({"date": self.date.isoformat(), "parts": index}, out, indent=1)
        size = sum(part.archive.stat().st_size for part in parts if part.archive)
        progress(f"downloaded {len(parts)} range(s), {mib(size)}", 100, final=True)


class ExtractDay(DayTask):
    """Extracts and checks every `*.json.gz` member and writes the day's manifest.

    Input: ExportDay's archives. Output: `manifest.json` (member name, hour, sizes, CRC32s, event
    count), written after every member passed its checks. An archive that fails them is discarded
    with ExportDay's output, so the next run downloads it again.
    """

    def requires(self) -> ExportDay:
        return ExportDay(self.date)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.layout().manifest_path))

    def run(self) -> None:
        layout = self.layout()
        progress = Progress(self)

        def on_member(done: int, total: int, members: int) -> None:
            progress(
                f"extracted {members} member(s), {mib(done)} of {mib(total)}", 100.0 * done / (total or 1)
            )

        try:
            ranges = _export_index(layout)
            archives = [layout.export_dir / part["archive"] for part in ranges if part["archive"]]
            missing = [path.name for path in archives if not path.exists()]
            if missing:
                raise ArchiveError(
                    f"downloaded archive(s) {', '.join(missing)} vanished from {layout.export_dir}"
                )
            members = extract_archives(archives, layout.members_dir, staging().limits(), on_member)
        except ArchiveError as error:
            shutil.rmtree(layout.export_dir, ignore_errors=True)
            shutil.rmtree(layout.members_dir, ignore_errors=True)
            raise ArchiveError(
                f"{self.date}: {error}. The download was discarded; the next run fetches it again."
            ) from error
        manifest = Manifest(self.date, members, ranges)
        with self.output().open("w") as out:
            json.dump(manifest.to_json(), out, indent=1)
        progress(f"extracted {len(members)} member(s), {manifest.events} events", 100, final=True)


class UploadDay(DayTask):
    """Uploads the day's members to S3 under deterministic keys, replacing whatever was there.

    Input: the manifest and members. Output: the S3 marker `_uploaded/<date>.json` listing the
    objects, written last. Objects under the day's prefix that the manifest does not name (left by an
    earlier export of the day) are deleted, so a rerun never duplicates.
    """

    def requires(self) -> ExtractDay:
        return ExtractDay(self.date)

    def output(self) -> S3Target:
        return self.s3_target(self.layout().uploaded_key)

    def run(self) -> None:
        layout = self.layout()
        bucket = storage().open_bucket()
        limits = staging().limits()
        progress = Progress(self)
        uploaded = 0
        lock = threading.Lock()

        def upload(obj: ExpectedObject) -> ExpectedObject:
            nonlocal uploaded
            with (layout.members_dir / obj.member).open("rb") as source:
                chunks: Iterable[bytes] = read_chunks(source)
                if not layout.keep_gzip:
                    chunks = inflate(chunks, obj.member, limits)
                etag = bucket.upload(obj.key, chunks, obj.crc32, {"events": str(obj.events)})
            with lock:
                uploaded += 1
                progress(
                    f"uploaded {uploaded} of {len(expected)} object(s)", 100.0 * uploaded / len(expected)
                )
            return dataclasses.replace(obj, etag=etag)

        _abort_abandoned_uploads(bucket, layout.data_prefix, self.date)
        try:
            manifest = Manifest.load(layout.manifest_path)
            expected = manifest.objects(layout)
            objects = bucket.map(upload, expected)
        except (ArchiveError, StaleStateError) as error:
            # A staged member that no longer inflates or matches its checksum, or a manifest an
            # older version wrote: extract again.
            layout.manifest_path.unlink(missing_ok=True)
            shutil.rmtree(layout.members_dir, ignore_errors=True)
            raise ArchiveError(
                f"{self.date}: {error}. The extracted members were discarded; the next run extracts them again."
            ) from error
        strays = sorted(set(bucket.listing(layout.data_prefix)) - {obj.key for obj in objects})
        if strays:
            logger.warning(
                "%s: deleting %d object(s) no longer in the export: %s", self.date, len(strays), strays
            )
            bucket.delete(strays)
        bucket.write_json(layout.uploaded_key, day_record(self.date, objects, format=_format(layout)))
        progress(f"uploaded {len(objects)} object(s), {manifest.events} events", 100, final=True)


class VerifyDay(DayTask):
    """Proves S3 holds exactly the day's objects, then writes the verified manifest.

    Input: UploadDay's marker. Output: `_verified/<date>.json` (the date in the file name, so Luigi's
    range tools can list it), written only when every object matches by key, size and ETag and no
    other object sits under the day's prefix. On a mismatch it removes UploadDay's marker, so the next
    run uploads again. After success the day's staging files are removed unless [staging] keep is set.
    """

    def requires(self) -> UploadDay:
        return UploadDay(self.date)

    def output(self) -> S3Target:
        return self.s3_target(self.layout().verified_key)

    def output_holds(self) -> bool:
        """The verified marker is read, not only found: a damaged one is removed, the day verified again.

        status, RefreshDay and users read it; one GET costs what a HEAD does.
        """
        return read_marker(storage().open_bucket(), self.layout().verified_key) is not None

    @classmethod
    def bulk_complete(cls, parameter_tuples: Iterable[dt.date]) -> list[dt.date]:
        """The dates with a verified marker, from one listing instead of one request per day.

        Luigi's RangeDaily calls this with a functools.partial as `cls` and a one-shot iterator.
        """
        settings_checked()
        dates = list(parameter_tuples)
        listing = storage().open_bucket().listing(marker_prefix(storage().key_prefix(), VERIFIED_DIR))
        verified = {marker_date(key) for key in listing}
        return [date for date in dates if date in verified]

    def run(self) -> None:
        layout = self.layout()
        progress = Progress(self)
        bucket = storage().open_bucket()
        try:  # a marker that is not JSON (a store kept aws-chunked framing) or not this version's form
            objects = recorded_objects(bucket.read_json(layout.uploaded_key))
        except StaleStateError as error:
            bucket.delete([layout.uploaded_key])
            raise StaleStateError(
                f"{self.date}: s3://{bucket.name}/{layout.uploaded_key}: {error}. It was removed: run again "
                "to upload the day anew."
            ) from error
        problems = differences(bucket, layout.data_prefix, objects)
        if problems:
            bucket.delete([layout.uploaded_key])
            raise VerificationError(
                f"{self.date}: S3 does not hold what was uploaded under s3://{bucket.name}/{layout.data_prefix}: "
                + "; ".join(problems)
                + ". The upload marker was removed: run again to upload the day anew."
            )
        record = day_record(
            self.date,
            objects,
            format=_format(layout),
            verified_at=dt.datetime.now(dt.timezone.utc).isoformat(),
        )
        bucket.write_json(layout.verified_key, record)
        if not staging().keep:
            shutil.rmtree(layout.day_dir, ignore_errors=True)
        progress(f"verified {len(objects)} object(s), {record['events']} events", 100, final=True)


def _abort_abandoned_uploads(bucket: Bucket, prefix: str, date: dt.date) -> None:
    """Best effort: without s3:ListBucketMultipartUploads / s3:AbortMultipartUpload, only warn.

    It never replaces the error of the upload itself. Some stores list no uploads for a prefix (MinIO):
    there a lifecycle rule for incomplete multipart uploads does this job.
    """
    try:
        aborted = bucket.abort_uploads(prefix)
    except FatalError as error:  # not granted, or not implemented (s3rver answers 501 NotImplemented)
        logger.warning("%s: could not clean up multipart uploads left by a killed run: %s", date, error)
        return
    if aborted:
        logger.warning(
            "%s: aborted %d multipart upload(s) left by a killed run: %s", date, len(aborted), aborted
        )


def _marker_exists(target: S3Target) -> bool:
    """One HEAD request. S3Target.exists() follows a missing key with a search for a "directory" of
    that name (two GETs and a LIST): four requests per check, twice per task and day in a backfill."""
    bucket, _, key = target.path.removeprefix("s3://").partition("/")
    try:
        storage().client().head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as error:
        if str(error.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            _check_bucket(bucket)  # a HEAD's 404 has no body: it cannot tell a missing bucket from a key
            return False
        raise
    return True


@functools.lru_cache(maxsize=8)
def _check_bucket(bucket: str) -> None:
    """Raises NoSuchBucket (a listing's error has a body) if the bucket is missing; once per process."""
    storage().client().list_objects_v2(Bucket=bucket, MaxKeys=1)


def _export_index(layout: DayLayout) -> list[dict[str, Any]]:
    """ExportDay's list of ranges; a damaged one is an ArchiveError, so the day is downloaded again."""
    try:
        ranges = json.loads(layout.export_index.read_bytes())["parts"]
        if all(isinstance(part["archive"], str | None) for part in ranges):
            return list(ranges)
    except (ValueError, KeyError, TypeError) as error:
        raise ArchiveError(f"the export index {layout.export_index} is damaged ({error!r})") from error
    raise ArchiveError(f"the export index {layout.export_index} is damaged (an archive name is not text)")


def _format(layout: DayLayout) -> str:
    return "json.gz" if layout.keep_gzip else "json"
