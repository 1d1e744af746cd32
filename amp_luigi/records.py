"""The files the stages hand each other, typed and versioned, read and written only here.

    export/parts.json          ExportIndex   ExportDay -> ExtractDay: the hour ranges and their zips
    .windows/<days>.json       WindowRecord  ExportWindow -> DayBatch: which of its days it exported
    manifest.json              Manifest      ExtractDay -> UploadDay: every checked member
    _uploaded/<date>.json      DayRecord     UploadDay -> VerifyDay: the objects and S3's ETags
    _verified/<date>.json      DayRecord     VerifyDay -> users, status, RefreshDay, ParquetDay
    _parquet/<date>.json       ParquetRecord ParquetDay -> users, status
    _iceberg/<date>.json       IcebergRecord IcebergDay -> users, status

Each carries `version`. A record written before versions were (the same fields, no `version`) is
version 1. One this amp-luigi cannot read (not JSON, truncated, another form, an older version)
raises StaleStateError naming it, which the stage that reads it turns into "discard the stage that
wrote it and run again"; one written by a newer amp-luigi raises NewerRecordError and is kept.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any, TypeVar

from amp_luigi.errors import NewerRecordError, StaleStateError
from amp_luigi.layout import DayLayout
from amp_luigi.s3 import Bucket
from amp_luigi.staging_area import LOCAL, StagingArea

logger = logging.getLogger(__name__)

VERSION = 1
T = TypeVar("T")


def _version(data: Any, what: str) -> None:
    """Refuses what this version cannot read: not an object, an unknown or a newer version."""
    if not isinstance(data, dict):
        raise StaleStateError(f"{what} is damaged: JSON, but not an object")
    version = data.get("version", 1)
    if not isinstance(version, int) or version < 1:
        raise StaleStateError(f"{what} has version {version!r}, a form this amp-luigi does not write")
    if version > VERSION:
        raise NewerRecordError(
            f"{what} was written by a newer amp-luigi (record version {version}, this one reads {VERSION}): "
            "upgrade amp-luigi here, or run the day where the newer version runs."
        )


def _parsed(what: str, build: Any, data: Any) -> Any:
    _version(data, what)
    try:
        return build(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StaleStateError(f"{what} is not in the form this amp-luigi writes ({error!r})") from error


def _load(path: PurePath, area: StagingArea, what: str, build: Any) -> Any:
    named = f"{what} {area.where(path)}"
    try:
        data = json.loads(area.read_bytes(path))
    except ValueError as error:  # a truncated or overwritten file: JSONDecodeError, bad UTF-8
        raise StaleStateError(f"{named} is damaged: not JSON ({error})") from error
    return _parsed(named, build, data)


def _save(path: PurePath, area: StagingArea, data: dict[str, Any]) -> None:
    """Written whole or not at all (StagingArea.create): a reader never sees half a record."""
    area.write_bytes(path, json.dumps({"version": VERSION, **data}, indent=1).encode())


@dataclass(frozen=True)
class ExportedRange:
    """One hour range ExportDay requested, and its zip (None: Amplitude had no data, 404)."""

    hours: str
    archive: str | None

    def __post_init__(self) -> None:
        if not isinstance(self.hours, str) or not isinstance(self.archive, str | None):
            raise TypeError(f"an export range must name its hours and archive as text: {self}")


@dataclass(frozen=True)
class ExportIndex:
    """ExportDay's output: the day's ranges, written after every zip is on disk in full."""

    date: dt.date
    ranges: list[ExportedRange]
    split: bool = False  # Amplitude refused a wider range: the day needed these smaller ones

    def save(self, path: PurePath, area: StagingArea = LOCAL) -> None:
        parts = [asdict(part) for part in self.ranges]
        _save(path, area, {"date": self.date.isoformat(), "parts": parts, "split": self.split})

    @classmethod
    def load(cls, path: PurePath, area: StagingArea = LOCAL) -> ExportIndex:
        return _load(path, area, "the export index", cls._from_json)

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> ExportIndex:
        ranges = [ExportedRange(**part) for part in data["parts"]]
        return cls(dt.date.fromisoformat(data["date"]), ranges, bool(data.get("split", False)))


@dataclass(frozen=True)
class WindowRecord:
    """What one window did: the days it exported, those an overlapping run held, and its error."""

    first: dt.date
    last: dt.date
    exported: list[dt.date]
    held: list[dt.date]  # left to the run that holds them
    error: str | None = None  # why the window gave up; its days are then asked for one by one

    def save(self, path: PurePath, area: StagingArea = LOCAL) -> None:
        _save(
            path,
            area,
            {
                "first": self.first.isoformat(),
                "last": self.last.isoformat(),
                "exported": [day.isoformat() for day in self.exported],
                "held": [day.isoformat() for day in self.held],
                "error": self.error,
            },
        )

    @classmethod
    def load(cls, path: PurePath, area: StagingArea = LOCAL) -> WindowRecord:
        return _load(path, area, "the window record", cls._from_json)

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> WindowRecord:
        return cls(
            dt.date.fromisoformat(data["first"]),
            dt.date.fromisoformat(data["last"]),
            [dt.date.fromisoformat(day) for day in data["exported"]],
            [dt.date.fromisoformat(day) for day in data["held"]],
            data["error"],
        )


@dataclass(frozen=True)
class MemberRecord:
    """One checked member: what the manifest says about it."""

    name: str
    hour: int | None
    events: int
    gz_bytes: int
    gz_crc32: str
    json_bytes: int
    json_crc32: str


@dataclass(frozen=True)
class ExpectedObject:
    """One data object in S3: its key, size, CRC32 (as S3 writes it) and event count.

    `etag` is what S3 answered to the upload: the listing's ETag of an object nobody has replaced since.
    """

    key: str
    bytes: int
    crc32: str
    events: int
    member: str
    etag: str | None = None


@dataclass(frozen=True)
class Manifest:
    """ExtractDay's output, the contract between the stages: UploadDay turns it into the objects it
    puts in S3, and VerifyDay compares S3 with those objects."""

    date: dt.date
    members: list[MemberRecord]
    ranges: list[ExportedRange] = field(default_factory=list)
    split: bool = False  # from the export index: the day needed smaller hour ranges

    @property
    def events(self) -> int:
        return sum(member.events for member in self.members)

    def objects(self, layout: DayLayout) -> list[ExpectedObject]:
        """The objects this manifest becomes in S3, in the output format the layout asks for."""
        return [
            ExpectedObject(
                key=layout.object_key(member.name),
                bytes=member.gz_bytes if layout.keep_gzip else member.json_bytes,
                crc32=member.gz_crc32 if layout.keep_gzip else member.json_crc32,
                events=member.events,
                member=member.name,
            )
            for member in self.members
        ]

    def save(self, path: PurePath, area: StagingArea = LOCAL) -> None:
        _save(
            path,
            area,
            {
                "date": self.date.isoformat(),
                "events": self.events,
                "ranges": [asdict(part) for part in self.ranges],
                "split": self.split,
                "members": [asdict(member) for member in self.members],
            },
        )

    @classmethod
    def load(cls, path: PurePath, area: StagingArea = LOCAL) -> Manifest:
        return _load(path, area, "the manifest", cls._from_json)

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            date=dt.date.fromisoformat(data["date"]),
            members=[MemberRecord(**member) for member in data["members"]],
            ranges=[ExportedRange(**part) for part in data.get("ranges", [])],
            split=bool(data.get("split", False)),
        )


@dataclass(frozen=True)
class DayRecord:
    """An S3 marker: the day's objects, how they were uploaded and proven, and when it was verified."""

    date: dt.date
    objects: list[ExpectedObject]
    format: str = "json"  # the data objects' form: json or json.gz (keep_gzip)
    proof: str = ""  # [storage] upload_proof in force; '' in markers from before it existed
    verified_at: dt.datetime | None = None  # VerifyDay's moment (naive UTC); None on _uploaded/
    # What the day's export weighed and the hour ranges it was fetched in: what the next days'
    # requests are sized from (amp_luigi.windows). None and [] in markers from before they were.
    gz_bytes: int | None = None
    ranges: list[str] = field(default_factory=list)
    split: bool = False

    @property
    def events(self) -> int:
        return sum(obj.events for obj in self.objects)

    @property
    def bytes(self) -> int:
        return sum(obj.bytes for obj in self.objects)

    def to_json(self) -> dict[str, Any]:
        """Counts are written out too, for people and tools that read the marker."""
        data: dict[str, Any] = {
            "version": VERSION,
            "date": self.date.isoformat(),
            "objects": [asdict(obj) for obj in self.objects],
            "object_count": len(self.objects),
            "events": self.events,
            "bytes": self.bytes,
            "format": self.format,
            "proof": self.proof,
        }
        if self.gz_bytes is not None:
            data["export"] = {"gz_bytes": self.gz_bytes, "ranges": self.ranges, "split": self.split}
        if self.verified_at is not None:
            data["verified_at"] = self.verified_at.replace(tzinfo=dt.timezone.utc).isoformat()
        return data

    @classmethod
    def from_json(cls, data: Any, what: str) -> DayRecord:
        return _parsed(what, cls._from_json, data)

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> DayRecord:
        return cls(
            date=dt.date.fromisoformat(data["date"]),
            objects=[ExpectedObject(**obj) for obj in data["objects"]],
            format=str(data.get("format", "json")),
            proof=str(data.get("proof", "")),
            verified_at=_utc(data.get("verified_at")),
            gz_bytes=int(data["export"]["gz_bytes"]) if "export" in data else None,
            ranges=[str(hours) for hours in data["export"]["ranges"]] if "export" in data else [],
            split=bool(data.get("export", {}).get("split", False)),
        )


@dataclass(frozen=True)
class ParquetFile:
    """One Parquet file of a day in S3: its key, size, CRC32, rows and the ETag its upload answered."""

    key: str
    bytes: int
    crc32: str
    rows: int
    etag: str


@dataclass(frozen=True)
class ParquetRecord:
    """ParquetDay's marker: the day's files, checked against their footers in S3 before it is written."""

    date: dt.date
    schema_version: int
    files: list[ParquetFile]
    source_events: int  # what the verified marker counts

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "date": self.date.isoformat(),
            "schema_version": self.schema_version,
            "rows": sum(item.rows for item in self.files),
            "files": len(self.files),
            "bytes": sum(item.bytes for item in self.files),
            "source_events": self.source_events,
            "objects": [asdict(item) for item in self.files],
        }


@dataclass(frozen=True)
class IcebergRecord:
    """IcebergDay's marker: the commit that put upload day `date`'s events in the table, and what it
    counted, read back from the table after the commit."""

    date: dt.date
    table: str  # namespace.table
    snapshot_id: int | None  # the table's snapshot after the commit (time travel reads the day as committed)
    previous_snapshot_id: int | None  # the snapshot before it (None: the table's first commit)
    rows: int  # rows of upload day `date` in the table
    files: int  # data files the commit added
    source_events: int  # what the verified marker counts
    duplicates_within_day: int  # a uuid repeated within the day: committed once
    duplicates_committed: int  # a uuid another upload day committed already: not added again
    event_days: list[str]  # the event-time partitions the day's rows are in
    added_columns: list[str]  # fields Amplitude added that became columns with this commit
    committed_at: str

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self), "date": self.date.isoformat()}


def _utc(stamp: str | None) -> dt.datetime | None:
    """An ISO time as naive UTC; a marker from before `verified_at` was written has the earliest time."""
    if stamp is None:
        return None
    moment = dt.datetime.fromisoformat(stamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def read_marker(bucket: Bucket, key: str) -> DayRecord | None:
    """The marker at `key`, or None when there is none.

    A damaged marker (not JSON, not a form this version reads) is removed with a warning naming it
    and read as none, so the stage that writes it runs again instead of failing on it for ever.
    """
    where = f"s3://{bucket.name}/{key}"
    try:
        data = bucket.read_json_if_exists(key)
        return None if data is None else DayRecord.from_json(data, where)
    except StaleStateError as error:
        logger.warning("%s. It was removed: the next run writes it anew.", error)
        bucket.delete([key])
        return None


def write_marker(bucket: Bucket, key: str, record: DayRecord) -> None:
    bucket.write_json(key, record.to_json())
