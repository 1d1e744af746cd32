"""A verified day's NDJSON objects as typed Parquet, one file per hour, converted by DuckDB.

The conversion reads S3 only (the objects the verified marker lists), never staging, so any day
VerifyDay ever verified converts, however long ago. Per hour it downloads that hour's objects into
a temporary directory, lets DuckDB turn them into one zstd Parquet file (typed by
schema.COLUMNS, every other field kept in `extra_fields`), uploads it under a deterministic
key with its CRC32 and removes the hour's files: memory is bounded by DuckDB's memory_limit, disk by
one hour of NDJSON plus its Parquet. Afterwards strays under the day's partition are deleted, and
each file's row count is read back from its footer in S3 and compared with the verified events.

A value whose JSON type is not the column's (a string where a number belongs, a time that does not
parse) fails the day, naming the object, the line and the field: DuckDB's casts alone would round
1.5 to 2 or null a bad time without a word.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amp_luigi import checksum
from amp_luigi.errors import ConfigError, FatalError, VerificationError
from amp_luigi.layout import ParquetLayout, member_hour
from amp_luigi.query.schema import COLUMNS, EXTRA, SCHEMA_VERSION, Column
from amp_luigi.records import ExpectedObject, ParquetFile, ParquetRecord
from amp_luigi.s3 import Bucket
from amp_luigi.verify import differences

_CHUNK = 1024 * 1024


class SchemaMismatchError(FatalError):
    """A line of the day does not fit the Parquet schema; the message names object, line and field."""


@dataclass(frozen=True)
class Engine:
    """DuckDB's bounds, from [parquet]: it spills to `temp_dir` rather than pass memory_limit_mib."""

    memory_limit_mib: int = 256
    threads: int = 1
    temp_dir: Path | None = None


def connect(engine: Engine) -> Any:
    """A DuckDB connection that reads times as UTC and never downloads an extension."""
    try:
        import duckdb
    except ImportError as error:
        raise ConfigError(
            "ParquetDay needs DuckDB: pip install 'amp-luigi[parquet]' (or set [parquet] enabled = false)."
        ) from error
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")  # Amplitude's times carry no zone and are UTC
    con.execute(f"SET memory_limit = '{int(engine.memory_limit_mib)}MB'")
    con.execute(f"SET threads = {int(engine.threads)}")
    con.execute("SET preserve_insertion_order = false")  # lets DuckDB stream without holding rows
    if engine.temp_dir is not None:
        con.execute(f"SET temp_directory = {_text(str(engine.temp_dir))}")
    return con


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _raw(column: Column) -> str:
    """SQL: the field's JSON text, NULL when absent or null."""
    return f"nullif(CAST(f.{_ident(column.field)} AS VARCHAR), 'null')"


def _typed(column: Column) -> str:
    """SQL: the field's value as the column's type, NULL when it does not fit.

    Numbers and booleans are cast from their JSON text, which accepts only the right JSON type
    (`"12"`, `1.5` as BIGINT or `1` as BOOLEAN give NULL); strings must start with a quote.
    """
    raw = _raw(column)
    if column.type == "JSON":
        return f"CAST({raw} AS JSON)"
    if column.type == "BOOLEAN":
        return f"CASE {raw} WHEN 'true' THEN true WHEN 'false' THEN false END"
    if column.type == "BIGINT":  # a cast alone would round 1.5 to 2
        return f"CASE WHEN regexp_full_match({raw}, '-?[0-9]+') THEN TRY_CAST({raw} AS BIGINT) END"
    if column.type == "DOUBLE":
        return f"TRY_CAST({raw} AS DOUBLE)"
    value = f"CASE WHEN starts_with({raw}, '\"') THEN CAST({raw} AS JSON) ->> '$' END"
    return value if column.type == "VARCHAR" else f"TRY_CAST({value} AS {column.type})"


def _bad(column: Column) -> str:
    """SQL true when the line has a value for the column that does not fit it."""
    return f"({_raw(column)} IS NOT NULL AND {_typed(column)} IS NULL)"


def _describe(column: Column) -> str:
    """SQL: `field 'x' (BIGINT) holds "abc"`, for a value that does not fit."""
    return f"{_text(f'field {column.field!r} ({column.type}) holds ')} || left({_raw(column)}, 80)"


_CHECKED = [column for column in COLUMNS if column.type != "JSON"]
_AS_JSON = _text(json.dumps({column.field: "JSON" for column in COLUMNS}))
_KNOWN = "[" + ", ".join(_text(column.field) for column in COLUMNS) + "]"
_KNOWN_AS_NULL = _text(json.dumps({column.field: None for column in COLUMNS}))


def _problem() -> str:
    """SQL: what is wrong with the first field of a line that does not fit, else NULL."""
    return "CASE " + " ".join(f"WHEN {_bad(c)} THEN {_describe(c)}" for c in _CHECKED) + " END"


def select_sql(sources: list[Path]) -> str:
    """The typed rows of NDJSON files; raises (DuckDB's error()) at a value that does not fit."""
    files = "[" + ", ".join(_text(str(path)) for path in sources) + "]"
    inner = [f"{_typed(c)} AS {_ident('t_' + c.name)}" for c in COLUMNS]
    inner += [f"{_raw(c)} AS {_ident('r_' + c.name)}" for c in _CHECKED]
    outer = [
        f"CASE WHEN {_ident('t_' + c.name)} IS NULL AND {_ident('r_' + c.name)} IS NOT NULL "
        f"THEN error({_text(f'field {c.field!r} ({c.type}) holds ')} || left({_ident('r_' + c.name)}, 80)) "
        f"ELSE {_ident('t_' + c.name)} END AS {_ident(c.name)}"
        if c.type != "JSON"
        else f"{_ident('t_' + c.name)} AS {_ident(c.name)}"
        for c in COLUMNS
    ]
    # Most lines hold no field beyond the schema: only those pay for the merge patch, which, with
    # every named field set to null, removes them and leaves the rest.
    extra = (
        "CASE WHEN NOT starts_with(json, '{') THEN error('a line is not a JSON object') "
        f"WHEN NOT list_has_all({_KNOWN}, json_keys(json)) "
        f"THEN json_merge_patch(json, {_KNOWN_AS_NULL}) END AS {_ident('t_' + EXTRA.name)}"
    )
    return (
        f"SELECT {', '.join(outer)}, {_ident('t_' + EXTRA.name)} AS {_ident(EXTRA.name)} FROM ("
        f"SELECT {', '.join(inner)}, {extra} "
        f"FROM (SELECT json, json_transform(json, {_AS_JSON}) AS f FROM read_ndjson_objects({files})))"
    )


def convert(con: Any, sources: dict[Path, str], dest: Path) -> int:
    """Write the events of the files `sources` (path -> object key) to one Parquet file; its rows."""
    try:
        rows = con.execute(
            f"COPY ({select_sql(list(sources))}) TO {_text(str(dest))} "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 10000)"
        ).fetchone()[0]
    except Exception as error:  # duckdb.Error, imported lazily
        for path, key in sources.items():
            found = diagnose(con, path)
            if found:
                line, problem = found
                raise SchemaMismatchError(
                    f"{key}, line {line}: {problem}, which does not fit the Parquet schema (version "
                    f"{SCHEMA_VERSION}): the day was not converted. Fix the object, or report the field "
                    "so a new schema version can type it."
                ) from error
        raise FatalError(f"DuckDB could not convert {', '.join(sources.values())}: {error}") from error
    return int(rows)


def diagnose(con: Any, path: Path) -> tuple[int, str] | None:
    """The first line of `path` that does not fit, and why; only after a conversion failed.

    The file is read as text and split at newlines, so the line number is exact.
    """
    if path.suffix == ".gz":
        plain = path.with_suffix("")
        with gzip.open(path, "rb") as source, plain.open("wb") as out:
            shutil.copyfileobj(source, out, _CHUNK)
        path = plain
    lines = "string_split(content, chr(10))"
    found = con.execute(
        f"""
        SELECT n, CASE WHEN NOT json_valid(line) THEN 'it is not JSON'
                       WHEN json_type(line) <> 'OBJECT' THEN 'it is not a JSON object'
                       ELSE {_problem()} END AS problem
        FROM (SELECT n, line, CASE WHEN json_valid(line) AND json_type(line) = 'OBJECT'
                                   THEN json_transform(line, {_AS_JSON}) END AS f
              FROM (SELECT unnest({lines}) AS line, generate_subscripts({lines}, 1) AS n
                    FROM read_text({_text(str(path))})))
        WHERE line <> '' AND problem IS NOT NULL ORDER BY n LIMIT 1
        """
    ).fetchone()
    return (int(found[0]), str(found[1])) if found else None


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
            f"SELECT sum(num_rows) FROM parquet_file_metadata({_text(str(scratch))})"
        ).fetchone()[0]
    finally:
        scratch.unlink(missing_ok=True)
    return int(rows or 0)


def hours(objects: list[ExpectedObject]) -> dict[int, list[ExpectedObject]]:
    """The day's objects by the hour in their names."""
    by_hour: dict[int, list[ExpectedObject]] = {}
    for obj in objects:
        hour = member_hour(obj.key)
        if hour is None:
            raise FatalError(
                f"{obj.key}: the hour cannot be read from the name (Amplitude names members "
                "<project>_<YYYY-MM-DD>_<H>#<n>.json.gz), so the object has no Parquet file to go to"
            )
        by_hour.setdefault(hour, []).append(obj)
    return dict(sorted(by_hour.items()))


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        yield from iter(lambda: source.read(_CHUNK), b"")


def _file_crc32(path: Path) -> str:
    value = 0
    for chunk in _file_chunks(path):
        value = checksum.crc32(chunk, value)
    return checksum.crc32_text(value)


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
        by_hour = hours(objects)
        written: list[ParquetFile] = []
        for done, (hour, hour_objects) in enumerate(by_hour.items(), 1):
            hour_dir = work / f"{hour:02d}"
            hour_dir.mkdir(parents=True, exist_ok=True)
            sources = {hour_dir / obj.key.rsplit("/", 1)[-1]: obj.key for obj in hour_objects}
            bucket.map(lambda item: bucket.download(item[1], item[0]), list(sources.items()))
            dest = work / f"{hour:02d}.parquet"
            rows = convert(con, sources, dest)
            expected = sum(obj.events for obj in hour_objects)
            if rows != expected:
                raise VerificationError(
                    f"{layout.date} hour {hour}: DuckDB read {rows} events from {len(sources)} object(s), "
                    f"the verified marker counts {expected}"
                )
            key = layout.hour_key(hour)
            crc32 = _file_crc32(dest)
            metadata = {"events": str(rows), "schema-version": str(SCHEMA_VERSION)}
            etag = bucket.upload(key, _file_chunks(dest), crc32, metadata)
            written.append(ParquetFile(key, dest.stat().st_size, crc32, rows, etag))
            shutil.rmtree(hour_dir)
            dest.unlink()
            on_hour(done, len(by_hour))
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
