"""Every local path and S3 key of a day, in one place, so the layout is visible on one screen.

A project named in luigi.cfg (`[project.web]`, amp_luigi.projects) has its own `<prefix>`, by
default `<[storage] prefix>/<name>` (project_prefix), its own `<parquet prefix>` (parquet_prefix)
and its own staging root `<data_dir>/<name>` (project_staging); the unnamed project of a
configuration that names none uses `[storage] prefix` and `<data_dir>` themselves.

Staging (local), per day under `<data_dir>/<YYYY-MM-DD>/`:
    export/<start>-<end>.zip   one downloaded archive per requested hour range
    export/parts.json          the list of ranges and archives: ExportDay's output, written last
    members/<member>.json.gz   members extracted and checked
    manifest.json              names, sizes, checksums and event counts: ExtractDay's output
and beside the days:
    .windows/<first>..<last>/                a window's archives (several days in one request) until split
    .windows/<first>..<last>.json            what the window did, until its batch is done (WindowRecord)
    .locks/<YYYY-MM-DD>                      held while the day's export is written: overlapping runs take turns

S3, under `<prefix>/`:
    <YYYY-MM-DD>/<member>.json (or .json.gz with keep_gzip)   the data, one object per member
    _uploaded/<YYYY-MM-DD>.json                               UploadDay's output, written last
    _verified/<YYYY-MM-DD>.json                               VerifyDay's output: the verified manifest
    _check/probe                                              the store probes of `upload_proof` and `check`
    _parquet/<YYYY-MM-DD>.json                                ParquetDay's output, written last
    _iceberg/<YYYY-MM-DD>.json                                IcebergDay's output, after its commit

S3, under `<parquet prefix>/` (`[parquet] prefix` or a project's `parquet_prefix`, default
`<prefix>_parquet`), nothing but data:
    dt=<YYYY-MM-DD>/<YYYY-MM-DD>T<HH>.parquet                 ParquetDay: one file per hour with events

S3, under `<prefix>_iceberg/<table>/` (iceberg_prefix), the Iceberg table's location: `data/` and
`metadata/`, written by pyiceberg and listed by its catalog (amp_luigi.query.iceberg).

The markers carry the date in the file name, not a directory, because Luigi's range tools infer
completeness by listing a marker's parent directory.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path, PurePath

from amp_luigi.hours import HourRange
from amp_luigi.staging_area import LOCAL, StagingArea

# Amplitude names members `<id>/<id>_<YYYY-MM-DD>_<H>#<n>.json.gz`, the hour not zero-padded; the
# objects keep the name (`.json` unless keep_gzip).
MEMBER_NAME = re.compile(r"_(?P<date>\d{4}-\d{2}-\d{2})_(?P<hour>\d{1,2})#(?P<part>\d+)\.json(?:\.gz)?$")
VERIFIED_DIR = "_verified"
UPLOADED_DIR = "_uploaded"
CHECK_DIR = "_check"
PARQUET_DIR = "_parquet"
ICEBERG_DIR = "_iceberg"


def project_prefix(storage_prefix: str, project: str) -> str:
    """A named project's default prefix: its own folder under the shared one."""
    return join_key(storage_prefix, project)


def parquet_prefix(prefix: str) -> str:
    """The default Parquet prefix: beside the raw prefix, not inside it, since a table's location
    reads every object below it and the two layers must not read each other's files."""
    return f"{prefix}_parquet"


def iceberg_prefix(prefix: str) -> str:
    """The Iceberg table's location, beside the raw and Parquet prefixes for the same reason."""
    return f"{prefix}_iceberg"


def iceberg_marker_key(prefix: str, date: dt.date) -> str:
    """IcebergDay's marker of upload day `date`, with the other markers under `prefix`."""
    return marker_prefix(prefix, ICEBERG_DIR) + f"{date.isoformat()}.json"


def project_staging(data_dir: Path, project: str) -> Path:
    """A named project's staging root, apart from every other project's days."""
    return data_dir / project


WINDOWS_DIR = ".windows"


def window_dir(staging_root: PurePath, first: dt.date, last: dt.date) -> PurePath:
    """Where a window's archives wait to be split into its days' own (hidden: not a day)."""
    return staging_root / WINDOWS_DIR / f"{first}..{last}"


def window_record(staging_root: PurePath, first: dt.date, last: dt.date) -> PurePath:
    """What a window did (its days exported, or left to go alone), until its batch is done."""
    return staging_root / WINDOWS_DIR / f"{first}..{last}.json"


def window_days(path: PurePath) -> tuple[dt.date, dt.date] | None:
    """The first and last day a window's spool or record is named for, else None."""
    first, _, rest = path.name.partition("..")
    last = date_named(rest.removesuffix(".json"))
    start = date_named(first)
    return None if start is None or last is None else (start, last)


def day_lock(work_dir: Path, date: dt.date) -> Path:
    """The file locked while a day's export is written (on this host: work_dir is local, whatever the
    staging area); kept, so a lock never moves under its holder."""
    return work_dir / ".locks" / date.isoformat()


def join_key(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part)


def marker_prefix(prefix: str, kind: str) -> str:
    return join_key(prefix, kind) + "/"


def probe_key(prefix: str) -> str:
    """A key for the short-lived objects that test what the store does; nothing else lives there."""
    return marker_prefix(prefix, CHECK_DIR) + "probe"


def marker_date(key: str) -> dt.date | None:
    """The date of a marker key such as `.../_verified/2024-03-01.json`, or None for other keys."""
    name = key.rsplit("/", 1)[-1]
    return date_named(name.removesuffix(".json")) if name.endswith(".json") else None


def date_named(name: str) -> dt.date | None:
    """The date a name such as `2024-03-01` (a day's directory or key segment) stands for, else None."""
    try:
        return dt.date.fromisoformat(name)
    except ValueError:
        return None


def member_hour(name: str) -> int | None:
    """The hour in a member's or a data object's name (`..._2024-03-01_5#0.json.gz`: 5), else None."""
    match = MEMBER_NAME.search(name)
    return int(match["hour"]) if match else None


@dataclass(frozen=True)
class DayLayout:
    """A day's files in its project's staging area (`area`, below `staging_root`) and its keys in S3."""

    date: dt.date
    staging_root: PurePath
    prefix: str
    keep_gzip: bool
    area: StagingArea = LOCAL

    @property
    def day_dir(self) -> PurePath:
        return self.staging_root / self.date.isoformat()

    @property
    def export_dir(self) -> PurePath:
        return self.day_dir / "export"

    @property
    def export_index(self) -> PurePath:
        return self.export_dir / "parts.json"

    def archive_path(self, hours: HourRange) -> PurePath:
        return self.export_dir / f"{hours.label()}.zip"

    @property
    def members_dir(self) -> PurePath:
        return self.day_dir / "members"

    @property
    def manifest_path(self) -> PurePath:
        return self.day_dir / "manifest.json"

    @property
    def data_prefix(self) -> str:
        return join_key(self.prefix, self.date.isoformat()) + "/"

    @property
    def object_format(self) -> str:
        """The data objects' form, as the markers record it."""
        return "json.gz" if self.keep_gzip else "json"

    def object_key(self, member: str) -> str:
        """`<prefix>/<date>/<member>.json`, or the member's own name when gzip is kept."""
        name = member if self.keep_gzip else member[: -len(".gz")]
        return self.data_prefix + name

    @property
    def uploaded_key(self) -> str:
        return marker_prefix(self.prefix, UPLOADED_DIR) + f"{self.date.isoformat()}.json"

    @property
    def verified_key(self) -> str:
        return marker_prefix(self.prefix, VERIFIED_DIR) + f"{self.date.isoformat()}.json"


@dataclass(frozen=True)
class ParquetLayout:
    """A day's keys in the Parquet layer. Its marker sits with the other markers under `prefix`, never
    under `parquet_prefix`, which a table's location reads whole."""

    date: dt.date
    prefix: str
    parquet_prefix: str

    @property
    def partition_prefix(self) -> str:
        return join_key(self.parquet_prefix, f"dt={self.date.isoformat()}") + "/"

    def hour_key(self, hour: int) -> str:
        return self.partition_prefix + f"{self.date.isoformat()}T{hour:02d}.parquet"

    @property
    def marker_key(self) -> str:
        return marker_prefix(self.prefix, PARQUET_DIR) + f"{self.date.isoformat()}.json"


def parquet_location_template(parquet_prefix: str) -> str:
    """The Athena partition projection template of the Parquet table, `${dt}` left for Athena."""
    return join_key(parquet_prefix, "dt=${dt}") + "/"


def raw_location_template(prefix: str) -> str:
    """The Athena partition projection template of the raw NDJSON table: `<prefix>/${dt}/`."""
    return join_key(prefix, "${dt}") + "/"
