"""A verified day's NDJSON objects as typed Parquet, one file per hour, converted by DuckDB.

The conversion reads S3 only (the objects the verified marker lists), never staging, so any day
VerifyDay ever verified converts, however long ago. Per hour it downloads that hour's objects into
a temporary directory, lets DuckDB turn them into one zstd Parquet file (typed by
schema.COLUMNS, every other field kept in `extra_fields`: amp_luigi.query.typed), uploads it under a deterministic
key with its CRC32 and removes the hour's files: memory is bounded by DuckDB's memory_limit, disk by
one hour of NDJSON plus its Parquet. Afterwards strays under the day's partition are deleted, and
each file's row count is read back from its footer in S3 and compared with the verified events.

A value whose JSON type is not the column's (a string where a number belongs, a time that does not
parse) fails the day, naming the object, the line and the field: DuckDB's casts alone would round
1.5 to 2 or null a bad time without a word.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amp_luigi import checksum
from amp_luigi.errors import VerificationError
from amp_luigi.layout import ParquetLayout
from amp_luigi.query.schema import SCHEMA_VERSION
from amp_luigi.query.typed import (
    Engine,
    HourFiles,
    SchemaMismatchError,
    connect,
    copy_rows,
    select_sql,
    text,
)
from amp_luigi.records import ExpectedObject, ParquetFile, ParquetRecord
from amp_luigi.s3 import Bucket
from amp_luigi.verify import differences

__all__ = ["Engine", "SchemaMismatchError", "connect", "convert", "convert_day"]

_CHUNK = 1024 * 1024


def convert(con: Any, sources: dict[Path, str], dest: Path) -> int:
    """Write the events of the files `sources` (path -> object key) to one Parquet file; its rows."""
    return copy_rows(
        con, select_sql(list(sources)), sources, dest, f"Parquet schema (version {SCHEMA_VERSION})"
    )


def footer_rows(con: Any, bucket: Bucket, key: str, size: int, scratch: Path) -> int:
    """The row count in the footer of the Parquet object `key`, from two ranged GETs (no full read)."""
    tail = bucket.read_bytes(key, f"bytes={size - 8}-")
    if len(tail) != 8 or tail[4:] != b"PAR1":
        raise VerificationError(f"s3://{bucket.name}/{key} does not end like a Parquet file")
    length = struct.unpack("<I", tail[:4])[0]
    footer = bucket.read_bytes(key, f"bytes={size - 8 - length}-")
    # The footer alone, behind the leading magic, is a file DuckDB reads the metadata of.
    scratch.write_bytes(b"PAR1" + footer)
    try:
        rows = con.execute(
            f"SELECT sum(num_rows) FROM parquet_file_metadata({text(str(scratch))})"
        ).fetchone()[0]
    finally:
        scratch.unlink(missing_ok=True)
    return int(rows or 0)


def convert_day(
    bucket: Bucket,
    layout: ParquetLayout,
    objects: list[ExpectedObject],
    engine: Engine,
    work: Path,
    on_hour: Callable[[int, int], None] = lambda done, total: None,
) -> ParquetRecord:
    """Convert the verified `objects` of a day into `layout`'s partition; returns the marker.

    Idempotent: the keys depend on the hours only, and whatever else is under the partition is
    deleted, so a rerun after any failure ends with exactly the files of this run.
    """
    con = connect(Engine(engine.memory_limit_mib, engine.threads, work / "duckdb-spill"))
    try:
        written: list[ParquetFile] = []
        converted = HourFiles(
            bucket, objects, work, lambda sources, dest: convert(con, sources, dest), str(layout.date)
        )
        for hour, dest, rows in converted:
            key = layout.hour_key(hour)
            crc32 = checksum.file_crc32(dest)
            metadata = {"events": str(rows), "schema-version": str(SCHEMA_VERSION)}
            etag = bucket.upload(key, checksum.file_chunks(dest), crc32, metadata)
            written.append(ParquetFile(key, dest.stat().st_size, crc32, rows, etag))
            dest.unlink()
            on_hour(len(written), len(converted))
        keys = {item.key for item in written}
        strays = sorted(set(bucket.listing(layout.partition_prefix)) - keys)
        if strays:
            bucket.delete(strays)
        uploaded = [
            ExpectedObject(item.key, item.bytes, item.crc32, item.rows, "", item.etag) for item in written
        ]
        problems = differences(bucket, layout.partition_prefix, uploaded)
        for item in written:
            found = footer_rows(con, bucket, item.key, item.bytes, work / "footer.parquet")
            if found != item.rows:
                problems.append(f"{item.key} holds {found} rows in its footer, not {item.rows}")
        verified_events = sum(obj.events for obj in objects)
        if sum(item.rows for item in written) != verified_events:
            problems.append(
                f"the files hold {sum(item.rows for item in written)} rows, not {verified_events}"
            )
        if problems:
            raise VerificationError(
                f"{layout.date}: the Parquet files under s3://{bucket.name}/{layout.partition_prefix} do "
                "not match the verified day: " + "; ".join(problems) + ". Run again to convert it anew."
            )
        return ParquetRecord(layout.date, SCHEMA_VERSION, written, verified_events)
    finally:
        con.close()
