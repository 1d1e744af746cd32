"""Upload day U's verified events committed to the project's Iceberg table, partitioned by event time.

The table answers "the events of March 1st" by the day they happened (`event_time`), where the raw
and Parquet layers hold them by the day Amplitude received them (`upload_date`, a column here).
`commit_day` reads the objects VerifyDay's marker lists from S3, never staging, so any day ever
verified converts, in three passes:

1. Per hour, DuckDB types the hour's NDJSON by the table's columns (amp_luigi.query.typed) into a
   local Parquet file; the hour's rows must be the events the verified marker counts.
2. Fields the day holds that the table has no column for (Amplitude adds one now and then) are
   typed from all their values in the day and become columns (iceberg_schema). Each event once: a
   `uuid` repeated within the day is kept once (the first received), and a `uuid` another upload
   day already committed (looked up in the event-time partitions the day touches only) is not added
   again. The rows go, sorted by event time, into one local Parquet file.
3. DuckDB writes the rows as one Parquet file per event-time partition (memory bounded by its
   limit; pyiceberg's own writer would hold the day in Arrow several times over), each uploaded
   with its CRC32 proven, under the table's `data/`. One transaction: the new columns, the deletion
   of whatever U committed before (a rerun, a refresh, a crash after an earlier commit), and the
   files, added in one snapshot. The catalog commits it atomically: a reader sees the table before it or after it, and
   U's rows exactly once, never half of them. A commit that lost a race with another writer (a
   second host with its own scheduler) is redone from pass 2 against the table as it now is.

After the commit the day's rows are counted in the table itself, in the commit's snapshot, before
IcebergDay writes its marker. Files a killed run wrote but never committed are referenced by no
snapshot: `python -m amp_luigi iceberg maintain` removes them.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amp_luigi import checksum
from amp_luigi.errors import RetriableError, VerificationError
from amp_luigi.query.iceberg_schema import (
    EVENT_TIME,
    UPLOAD_DATE,
    added_type,
    columns_of,
    doc,
    iceberg_type,
    nameable,
    partition_bounds,
    partition_label,
    partition_start,
)
from amp_luigi.query.schema import EXTRA, Column
from amp_luigi.query.typed import Engine, HourFiles, connect, copy_rows, files, ident, select_sql, text
from amp_luigi.records import ExpectedObject, IcebergRecord
from amp_luigi.s3 import Bucket

if TYPE_CHECKING:
    from pyiceberg.table import Table

logger = logging.getLogger(__name__)
COMMIT_ATTEMPTS = 5
_ROW_GROUP_ROWS = 10_000  # a row group is buffered whole: ~20 MB of events, within DuckDB's limit


@dataclass(frozen=True)
class Commit:
    """What a commit put in the table, before it is read back."""

    snapshot_id: int | None  # None: the table is still empty (a day without events, first)
    previous_snapshot_id: int | None
    rows: int
    files: int  # the data files it added
    within_day: int
    committed_before: int
    event_days: list[dt.date]
    added: list[Column]


def commit_day(
    open_table: Callable[[], Table],
    bucket: Bucket,
    date: dt.date,
    objects: list[ExpectedObject],
    engine: Engine,
    work: Path,
    on_step: Callable[[str, float], None] = lambda message, percent: None,
) -> IcebergRecord:
    """Commit upload day `date` (its verified `objects`) to the table; returns IcebergDay's marker."""
    con = connect(
        Engine(engine.memory_limit_mib, engine.threads, work / "duckdb-spill"), "IcebergDay", "iceberg"
    )
    try:
        table = open_table()
        columns = columns_of(table.schema())
        hour_paths = _typed_hours(con, bucket, date, objects, columns, work, on_step)
        events = sum(obj.events for obj in objects)
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            if columns_of(table.schema()) != columns:  # another writer added a column meanwhile
                columns = columns_of(table.schema())
                hour_paths = _typed_hours(con, bucket, date, objects, columns, work, on_step)
            try:
                commit = _commit(con, table, bucket, date, hour_paths, events, columns, work, on_step)
                break
            except Exception as error:
                if not _lost_race(error):
                    raise
                if attempt == COMMIT_ATTEMPTS:
                    raise RetriableError(
                        f"{date}: another writer committed to {_name(table)} before each of "
                        f"{COMMIT_ATTEMPTS} attempts; the next run commits the day"
                    ) from error
                logger.info("%s: lost a commit race to another writer (%s); committing again", date, error)
                table = open_table()
        on_step("reading the committed rows back from the table", 95.0)
        found = _committed_rows(table, commit.snapshot_id, date)
        if found != commit.rows:
            raise VerificationError(
                f"{date}: the table's snapshot {commit.snapshot_id} holds {found} rows of upload day "
                f"{date}, the commit wrote {commit.rows}. Run again to commit the day anew."
            )
        return IcebergRecord(
            date=date,
            table=_name(table),
            snapshot_id=commit.snapshot_id,
            previous_snapshot_id=commit.previous_snapshot_id,
            rows=commit.rows,
            files=commit.files,
            source_events=events,
            duplicates_within_day=commit.within_day,
            duplicates_committed=commit.committed_before,
            event_days=[day.isoformat() for day in commit.event_days],
            added_columns=[column.name for column in commit.added],
            committed_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )
    finally:
        con.close()


def _name(table: Table) -> str:
    return ".".join(table.name())


def _lost_race(error: Exception) -> bool:
    """A commit another writer's commit made stale (the catalog's optimistic check), or SQLite busy."""
    from pyiceberg.exceptions import CommitFailedException

    return isinstance(error, CommitFailedException) or "database is locked" in str(error)


def _typed_hours(
    con: Any,
    bucket: Bucket,
    date: dt.date,
    objects: list[ExpectedObject],
    columns: Sequence[Column],
    work: Path,
    on_step: Callable[[str, float], None],
) -> list[Path]:
    """Pass 1: one local Parquet file per hour, typed by `columns` (JSON as text)."""
    schema = f"Iceberg table's column types ({', '.join(c.name for c in columns[-3:])}, ...)"

    def convert(sources: dict[Path, str], dest: Path) -> int:
        return copy_rows(con, select_sql(list(sources), columns, "VARCHAR"), sources, dest, schema, columns)

    hour_paths = []
    converted = HourFiles(bucket, objects, work / "hours", convert, str(date))
    for hour, path, _ in converted:
        hour_paths.append(path)
        on_step(
            f"typed hour {hour} ({len(hour_paths)} of {len(converted)})",
            60.0 * len(hour_paths) / len(converted),
        )
    return hour_paths


def _new_columns(con: Any, rows: str, columns: Sequence[Column]) -> list[Column]:
    """Fields of the day's `extra_fields` that become columns, typed by all their values in the day."""
    taken = {column.name for column in columns}
    value = "json_extract(extra_fields, '/' || replace(replace(k, '~', '~0'), '/', '~1'))"
    # json_type says UBIGINT for every integer >= 0: BIGINT where the value fits one.
    kind = (
        f"CASE WHEN json_type({value}) = 'UBIGINT' AND TRY_CAST(CAST({value} AS VARCHAR) AS BIGINT) IS NOT NULL "
        f"THEN 'BIGINT' ELSE json_type({value}) END"
    )
    found = con.execute(
        f"""
        SELECT k, list(DISTINCT {kind})
        FROM (SELECT extra_fields, unnest(json_keys(extra_fields)) AS k FROM {rows} WHERE extra_fields IS NOT NULL)
        GROUP BY k ORDER BY k
        """
    ).fetchall()
    added = []
    for field, json_types in found:
        column_type = added_type(json_types)
        if column_type is not None and nameable(field) and field not in taken:
            added.append(Column(field, field, column_type))
    return added


def _extracted(column: Column) -> str:
    """SQL: an added column's value, out of `extra_fields`; its type fits every value of the day."""
    value = f"json_extract({ident(EXTRA.name)}, {text('/' + column.field)})"
    if column.type == "JSON":
        return f"nullif(CAST({value} AS VARCHAR), 'null')"
    string = f"json_extract_string({ident(EXTRA.name)}, {text('/' + column.field)})"
    return string if column.type == "VARCHAR" else f"CAST({string} AS {column.type})"


def _event_days(con: Any, rows: str) -> tuple[list[dt.date], bool]:
    """The UTC days of the day's event times, and whether some event has none."""
    days = [
        row[0]
        for row in con.execute(
            f"SELECT DISTINCT CAST({EVENT_TIME} AS DATE) AS d FROM {rows} WHERE d IS NOT NULL ORDER BY d"
        ).fetchall()
    ]
    missing = bool(con.execute(f"SELECT count(*) FROM {rows} WHERE {EVENT_TIME} IS NULL").fetchone()[0])
    return days, missing


def _runs(days: list[dt.date]) -> Iterator[tuple[dt.date, dt.date]]:
    """Consecutive days as (first, last) runs."""
    first = previous = None
    for day in days:
        if previous is not None and day != previous + dt.timedelta(days=1):
            yield first, previous  # type: ignore[misc]
            first = day
        first = first or day
        previous = day
    if previous is not None:
        yield first, previous  # type: ignore[misc]


def _others_in(days: list[dt.date], missing: bool, date: dt.date) -> str:
    """A row filter: rows of other upload days in the event-time days `days` (and without an event time)."""

    def midnight(day: dt.date) -> str:
        return f"'{day.isoformat()}T00:00:00+00:00'"

    within = [
        f"({EVENT_TIME} >= {midnight(first)} AND {EVENT_TIME} < {midnight(last + dt.timedelta(days=1))})"
        for first, last in _runs(days)
    ]
    if missing:
        within.append(f"{EVENT_TIME} IS NULL")
    return f"({' OR '.join(within)}) AND {_upload_day(date, '!=')}"


def _upload_day(date: dt.date, operator: str = "=") -> str:
    """A row filter on the upload_date column."""
    return f"{UPLOAD_DATE} {operator} '{date.isoformat()}'"


def _committed_uuids(table: Table, days: list[dt.date], missing: bool, date: dt.date, dest: Path) -> None:
    """The uuids other upload days committed in the same event-time partitions, as a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("uuid", pa.string())])
    with pq.ParquetWriter(dest, schema) as writer:
        if table.current_snapshot() is None or not (days or missing):
            return
        scan = table.scan(row_filter=_others_in(days, missing, date), selected_fields=("uuid",))
        for batch in scan.to_arrow_batch_reader():
            writer.write_batch(batch.select(["uuid"]).cast(schema))


def _commit(
    con: Any,
    table: Table,
    bucket: Bucket,
    date: dt.date,
    hour_paths: list[Path],
    events: int,
    columns: Sequence[Column],
    work: Path,
    on_step: Callable[[str, float], None],
) -> Commit:
    """Passes 2 and 3 against the table as loaded: one transaction, committed by the catalog.
    `events`: the rows of `hour_paths`, each hour's proven equal to the verified marker's (HourFiles)."""
    rows = (
        f"read_parquet({files(hour_paths)}, union_by_name = true, filename = true, file_row_number = true)"
        if hour_paths
        else None
    )
    added = _new_columns(con, rows, columns) if rows else []
    days, missing = _event_days(con, rows) if rows else ([], False)
    on_step(f"looking up the uuids other upload days committed on {len(days)} event day(s)", 65.0)
    committed = work / "committed.parquet"
    _committed_uuids(table, days, missing, date, committed)
    within = _keep(con, rows, committed) if rows else 0
    previous = table.current_snapshot()
    on_step(f"uploading upload day {date}'s rows, one file per event-time partition", 75.0)
    uploaded, written = (
        _upload_partitions(
            con, bucket, table, f"SELECT {_select(table, added, date)} FROM {rows}", days, missing, work
        )
        if rows
        else ([], 0)
    )
    on_step(f"committing {written} rows of upload day {date}", 85.0)
    try:
        with warnings.catch_warnings(), table.transaction() as tx:
            # pyiceberg warns when the deletion matches nothing: a day's first commit.
            warnings.filterwarnings("ignore", "Delete operation did not match any records")
            if added:
                with tx.update_schema() as update:
                    for column in added:
                        update.add_column(column.name, iceberg_type(column), doc=doc(column))
            tx.delete(_upload_day(date))
            if uploaded:
                # Our own file names, new for every attempt: no look-up of the table's files needed.
                properties = {"amp-luigi.upload-date": date.isoformat(), "amp-luigi.rows": str(written)}
                tx.add_files(uploaded, snapshot_properties=properties, check_duplicate_files=False)
    except BaseException:
        # Not committed (or not known to be): the files are no snapshot's. A commit that did land
        # after all (a lost answer) keeps them: its rows are found when the day is read back.
        if table.refresh().current_snapshot() == previous:
            bucket.delete([_key(bucket, uri) for uri in uploaded])
        raise
    snapshot = table.current_snapshot()
    return Commit(
        snapshot_id=snapshot.snapshot_id if snapshot else None,
        previous_snapshot_id=previous.snapshot_id if previous else None,
        rows=written,
        files=len(uploaded),
        within_day=within,
        committed_before=events - within - written,
        event_days=days,
        added=added,
    )


def _keep(con: Any, rows: str, committed: Path) -> int:
    """Which of the day's rows go in (the temporary table `kept`, by file and row number): each uuid
    once (the first received) and none another upload day committed. Only those narrow columns are
    sorted, so DuckDB's memory holds a fraction of the day. Returns the uuids repeated within the day."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE kept AS
        SELECT filename, file_row_number FROM (
            SELECT filename, file_row_number, uuid,
                   row_number() OVER (PARTITION BY uuid ORDER BY server_upload_time, insert_id) AS nth
            FROM {rows}
        ) AS day
        ANTI JOIN read_parquet({text(str(committed))}) AS committed USING (uuid)
        WHERE uuid IS NULL OR nth = 1
        """
    )
    return int(con.execute(f"SELECT count(uuid) - count(DISTINCT uuid) FROM {rows}").fetchone()[0])


def _select(table: Table, added: list[Column], date: dt.date) -> str:
    """SQL: a kept row in the table's column order, added columns taken out of extra_fields."""
    by_name = {column.name: _extracted(column) for column in added}
    rest = "{" + ", ".join(f'"{column.field}": null' for column in added) + "}"
    extra = ident(EXTRA.name)
    by_name[EXTRA.name] = (
        f"nullif(CAST(json_merge_patch({extra}, {text(rest)}) AS VARCHAR), '{{}}')" if added else extra
    )
    by_name[UPLOAD_DATE] = f"DATE {text(date.isoformat())}"
    names = [field.name for field in table.schema().fields] + [column.name for column in added]
    return ", ".join(f"{by_name.get(name, ident(name))} AS {ident(name)}" for name in names)


def _key(bucket: Bucket, uri: str) -> str:
    return uri.removeprefix(f"s3://{bucket.name}/")


def _upload_partitions(
    con: Any, bucket: Bucket, table: Table, select: str, days: list[dt.date], missing: bool, work: Path
) -> tuple[list[str], int]:
    """The kept rows of `select` as one Parquet file per event-time partition, written by DuckDB
    (within its memory limit: pyiceberg's own writer holds a partitioned day in Arrow several times
    over) and uploaded, each proven by its CRC32, under the table's `data/`; their URIs, and the rows."""
    partition = str(table.spec().fields[0].transform)
    wanted: list[tuple[dt.date | None, str]] = []
    for start_day in sorted({partition_start(day, partition) for day in days}):
        start, stop = partition_bounds(start_day, partition)
        wanted.append(
            (start_day, f"{EVENT_TIME} >= '{start.isoformat()}' AND {EVENT_TIME} < '{stop.isoformat()}'")
        )
    if missing:
        wanted.append((None, f"{EVENT_TIME} IS NULL"))
    attempt = uuid.uuid4().hex
    location = table.location().rstrip("/")
    uris, written = [], 0
    for n, (first, where) in enumerate(wanted):
        local = work / f"part-{n}.parquet"
        rows = con.execute(
            f"COPY ({select} SEMI JOIN kept USING (filename, file_row_number) WHERE {where}) "
            f"TO {text(str(local))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {_ROW_GROUP_ROWS})"
        ).fetchone()[0]
        if rows:
            uri = f"{location}/data/{partition_label(first, partition)}/{attempt}-{n:05d}.parquet"
            bucket.upload(_key(bucket, uri), checksum.file_chunks(local), checksum.file_crc32(local), {})
            uris.append(uri)
            written += int(rows)
        local.unlink()
    return uris, written


def _committed_rows(table: Table, snapshot_id: int | None, date: dt.date) -> int:
    """Upload day `date`'s rows in the snapshot, read from the table (its smallest column)."""
    if snapshot_id is None:
        return 0
    scan = table.scan(snapshot_id=snapshot_id, row_filter=_upload_day(date), selected_fields=(UPLOAD_DATE,))
    return sum(batch.num_rows for batch in scan.to_arrow_batch_reader())
