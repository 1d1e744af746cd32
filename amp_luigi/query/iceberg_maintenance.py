"""Keeping the Iceberg table cheap to read and to store: snapshot expiry, compaction of an event-time
partition's small files, and removal of the files no snapshot references.

Late events make small files: upload day U adds, besides its own day's file, a few rows to each of
the days before it, one small file per upload day in each such partition. Compaction rewrites those
small files of a partition into one, in one commit that deletes exactly them and adds exactly their
rows, so each upload day's rows stay in the table once (a later refresh of one of those days rewrites
the compacted file without that day's old rows, as pyiceberg's copy-on-write delete does). Files
holding an upload day that also has a large file in the partition are left alone: rewriting the
large one too would hold it in memory whole.

pyiceberg's snapshot expiry only edits the metadata: the files only expired snapshots referenced
stay in S3. `orphans` lists the table's location and names every file no snapshot, manifest or
metadata log entry of the table references, older than a grace period: a commit under way writes
its data files before the catalog knows them, and those must not be taken for orphans.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amp_luigi.query.iceberg_schema import (
    EVENT_TIME,
    UPLOAD_DATE,
    partition_bounds,
    partition_label,
    partition_of_value,
)

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

logger = logging.getLogger(__name__)


def expire(table: Table, older_than: dt.datetime) -> int:
    """Expire the snapshots made before `older_than` (never the current one); how many."""
    before = len(table.snapshots())
    current = table.current_snapshot()
    old = [
        snapshot.snapshot_id
        for snapshot in table.snapshots()
        if snapshot.timestamp_ms < older_than.timestamp() * 1000
        and (current is None or snapshot.snapshot_id != current.snapshot_id)
    ]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()
    return before - len(table.snapshots())


@dataclass(frozen=True)
class Compaction:
    """One partition's small files, rewritten as one."""

    partition: str  # e.g. event_day=2024-03-01
    files: int
    rows: int


def compact(table: Table, small_bytes: int, max_bytes: int) -> list[Compaction]:
    """Rewrite the small files of each event-time partition (at least two, at most `max_bytes` of
    them at a time) into one file; each rewrite is one commit. A rewrite that loses a commit race
    with IcebergDay is left for the next run."""
    from pyiceberg.exceptions import CommitFailedException

    done: list[Compaction] = []
    if table.current_snapshot() is None:
        return done
    field_id = table.schema().find_field(UPLOAD_DATE).field_id
    by_partition: dict[Any, list[DataFile]] = defaultdict(list)
    for task in table.scan().plan_files():
        by_partition[_partition_value(task.file)].append(task.file)
    for value, data_files in sorted(by_partition.items(), key=lambda item: (item[0] is None, item[0] or 0)):
        chosen = _rewritable(data_files, field_id, small_bytes, max_bytes)
        if len(chosen) < 2:
            continue
        where = _rows_of(table, value, chosen)
        rows = table.scan(row_filter=where).to_arrow()
        expected = sum(data_file.record_count for data_file in chosen)
        if rows.num_rows != expected:  # another file matched: leave the partition as it is
            logger.warning(
                "compaction of %s skipped: %d rows matched, %d expected", value, rows.num_rows, expected
            )
            continue
        try:
            with table.transaction() as tx:
                tx.overwrite(rows, overwrite_filter=where, snapshot_properties={"amp-luigi.compaction": "1"})
        except CommitFailedException:
            logger.info("compaction of %s lost a commit race; the next run does it", value)
            table.refresh()
            continue
        done.append(Compaction(_partition_label(table, value), len(chosen), rows.num_rows))
    return done


def _partition_value(data_file: DataFile) -> int | None:
    return data_file.partition[0]


def _upload_days(data_file: DataFile, field_id: int) -> tuple[dt.date, dt.date]:
    """The first and last upload_date of a file, from its column bounds."""
    from pyiceberg.conversions import from_bytes
    from pyiceberg.types import DateType

    low = from_bytes(DateType(), data_file.lower_bounds[field_id])
    high = from_bytes(DateType(), data_file.upper_bounds[field_id])
    return partition_of_value(int(low), "day"), partition_of_value(int(high), "day")  # days since 1970


def _rewritable(
    data_files: list[DataFile], field_id: int, small_bytes: int, max_bytes: int
) -> list[DataFile]:
    """The partition's small files whose upload days no large file of the partition holds, smallest
    first, up to `max_bytes` together (`field_id`: upload_date's)."""
    if any(field_id not in (data_file.lower_bounds or {}) for data_file in data_files):
        return []  # a file without the column's bounds: which days it holds is unknown
    ids = {data_file.file_path: data_file for data_file in data_files}
    days = {path: _upload_days(data_file, field_id) for path, data_file in ids.items()}
    large = [days[path] for path, data_file in ids.items() if data_file.file_size_in_bytes >= small_bytes]
    chosen, total = [], 0
    for path, data_file in sorted(ids.items(), key=lambda item: item[1].file_size_in_bytes):
        first, last = days[path]
        if data_file.file_size_in_bytes >= small_bytes or any(a <= last and first <= b for a, b in large):
            continue
        if total + data_file.file_size_in_bytes > max_bytes:
            break
        chosen.append(data_file)
        total += data_file.file_size_in_bytes
    return chosen


def _rows_of(table: Table, value: int | None, chosen: Iterable[DataFile]) -> str:
    """A row filter matching exactly the rows of the chosen files: their partition's event times and
    their upload days (no other file of the partition holds one of those days)."""
    field_id = table.schema().find_field(UPLOAD_DATE).field_id
    days = sorted({day for data_file in chosen for day in _days(*_upload_days(data_file, field_id))})
    upload = f"{UPLOAD_DATE} IN ({', '.join(repr(day.isoformat()) for day in days)})"
    if value is None:
        return f"{EVENT_TIME} IS NULL AND {upload}"
    start, stop = _partition_range(table, value)
    return f"{EVENT_TIME} >= '{start.isoformat()}' AND {EVENT_TIME} < '{stop.isoformat()}' AND {upload}"


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _partition(table: Table) -> str:
    """`day` or `month`: the table's partition transform."""
    return str(table.spec().fields[0].transform)


def _partition_range(table: Table, value: int) -> tuple[dt.datetime, dt.datetime]:
    """The event times of a partition from its value (days or months since 1970)."""
    return partition_bounds(partition_of_value(value, _partition(table)), _partition(table))


def _partition_label(table: Table, value: int | None) -> str:
    first = None if value is None else partition_of_value(value, _partition(table))
    return partition_label(first, _partition(table))


def referenced(table: Table) -> set[str]:
    """Every file the table's metadata names: metadata files (current and logged), statistics,
    and every snapshot's manifest list, manifests and data files (deleted entries included)."""
    io = table.io
    found = {table.metadata_location, *(entry.metadata_file for entry in table.metadata.metadata_log)}
    found |= {statistics.statistics_path for statistics in table.metadata.statistics}
    seen_manifests: set[str] = set()
    for snapshot in table.snapshots():
        found.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=False):
                found.add(entry.data_file.file_path)
    return found | seen_manifests


def orphans(table: Table, listed: dict[str, dt.datetime], older_than: dt.datetime) -> list[str]:
    """The URIs of `listed` (the table location's objects: URI -> written) that the table does not
    reference and that were written before `older_than`."""
    keep = referenced(table)
    return sorted(uri for uri, written in listed.items() if uri not in keep and written < older_than)
