"""Each day's state, read from the S3 markers and the staging area: what `status` draws as a
calendar and `--metrics-file` writes as Prometheus gauges, in one bounded set of requests.

One listing of `_verified/` and one of `_uploaded/` (1,000 keys a page), then one GET per verified
day in the range for its counts, several at a time (and, for the volume rule, per verified day of
the weeks it looks back on); one more listing per query layer shown. Data objects are never
listed. The staging area (this host's disk, or S3's prefix) is looked at too, since a day that
failed before its upload left nothing else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import PurePath

from amp_luigi.hours import days_between
from amp_luigi.layout import (
    ICEBERG_DIR,
    PARQUET_DIR,
    UPLOADED_DIR,
    VERIFIED_DIR,
    date_named,
    marker_date,
    marker_prefix,
)
from amp_luigi.records import read_marker
from amp_luigi.s3 import Bucket
from amp_luigi.staging_area import LOCAL, StagingArea
from amp_luigi.volume import Verdict, VolumeRule, judge

DONE, EMPTY, MISSING, FAILED, NOT_YET = "done", "empty", "missing", "FAILED", "not yet"


@dataclass(frozen=True)
class Layer:
    """A query layer after VerifyDay, as `status` shows it: its markers, its mark in a day's cell, and
    the task that fills it."""

    name: str
    marker_dir: str
    mark: str
    task: str


PARQUET = Layer("Parquet", PARQUET_DIR, "pq", "ParquetDay")
ICEBERG = Layer("Iceberg", ICEBERG_DIR, "ice", "IcebergDay")


@dataclass(frozen=True)
class DayStatus:
    """One day of a project as its markers and staging show it."""

    date: dt.date
    state: str
    events: int = 0
    objects: int = 0
    reason: str = ""
    verified_at: dt.datetime | None = None  # when VerifyDay wrote the marker, for the metrics
    layers: dict[str, bool] = field(default_factory=dict)  # a shown layer's name -> the day is in it
    bytes: int = 0  # the data objects' size in S3
    volume: Verdict | None = None  # the volume rule's verdict on a verified day (amp_luigi.volume)

    @property
    def anomalous(self) -> bool:
        return self.volume is not None and self.volume.anomalous


def collect(
    bucket: Bucket,
    prefix: str,
    staging_root: PurePath,
    start: dt.date,
    stop: dt.date,
    newest: dt.date,
    layers: tuple[Layer, ...] = (),
    area: StagingArea = LOCAL,
    rule: VolumeRule | None = None,
) -> list[DayStatus]:
    """The state of every day in [start, stop); `newest` is the newest day Amplitude can export.

    For each of `layers`, one more listing (`_parquet/`, `_iceberg/`) says which done days are in it.
    With `rule`, each verified day gets its volume verdict: the markers of the weeks before `start`
    the rule looks back on are read too.
    """
    verified = {marker_date(key): key for key in bucket.listing(marker_prefix(prefix, VERIFIED_DIR))}
    uploaded = {marker_date(key) for key in bucket.listing(marker_prefix(prefix, UPLOADED_DIR))}
    staged = {date_named(name) for name in area.children(staging_root)}
    days = days_between(start, stop)
    since = start - rule.reach if rule else start
    wanted = [day for day in days_between(since, stop) if day in verified]
    markers = dict(
        zip(wanted, bucket.map(lambda day: read_marker(bucket, verified[day]), wanted), strict=True)
    )
    counts = {day: record.events for day, record in markers.items() if record is not None}
    verdicts = judge(counts, days, rule) if rule else {}
    in_layer = {
        layer.name: {marker_date(key) for key in bucket.listing(marker_prefix(prefix, layer.marker_dir))}
        for layer in layers
    }
    result = []
    for day in days:
        record = markers.get(day)
        if record is not None:
            objects, events = len(record.objects), record.events
            result.append(
                DayStatus(
                    day,
                    DONE if objects else EMPTY,
                    events,
                    objects,
                    verified_at=record.verified_at.replace(tzinfo=dt.timezone.utc)
                    if record.verified_at
                    else None,
                    layers={name: day in found for name, found in in_layer.items()},
                    bytes=record.bytes,
                    volume=verdicts.get(day),
                )
            )
        elif day in markers or day in uploaded or day in staged:
            why = [
                *(["a damaged _verified marker, now removed"] if day in markers else []),
                *(["an _uploaded marker without a _verified one"] if day in uploaded else []),
                *(["a staging directory left behind"] if day in staged else []),
            ]
            result.append(DayStatus(day, FAILED, reason=" and ".join(why)))
        elif day > newest:
            result.append(DayStatus(day, NOT_YET))
        else:
            result.append(DayStatus(day, MISSING))
    return result


def short_count(count: int) -> str:
    """A count in at most four characters and a unit: 4.96k, 1.2M."""
    for size, unit in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if count >= size:
            return f"{count / size:.3g}{unit}"
    return str(count)
