"""Amplitude's NDJSON as typed rows, by DuckDB: the one conversion the Parquet and Iceberg layers share.

`select_sql(sources, columns)` reads the files' events with every column of `columns` typed and
every other top-level field kept, as one JSON object, in `extra_fields`. A value whose JSON type is
not the column's (a string where a number belongs, a time that does not parse) raises, and
`convert()` names the object, the line and the field: DuckDB's casts alone would round 1.5 to 2 or
null a bad time without a word.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amp_luigi.errors import ConfigError, FatalError, VerificationError
from amp_luigi.layout import member_hour
from amp_luigi.query.schema import COLUMNS, EXTRA, Column
from amp_luigi.records import ExpectedObject
from amp_luigi.s3 import Bucket

_CHUNK = 1024 * 1024


class SchemaMismatchError(FatalError):
    """A line of the day does not fit the schema; the message names object, line and field."""


@dataclass(frozen=True)
class Engine:
    """DuckDB's bounds, from the layer's settings: it spills to `temp_dir` rather than pass memory_limit_mib."""

    memory_limit_mib: int = 256
    threads: int = 1
    temp_dir: Path | None = None


def connect(engine: Engine, layer: str = "ParquetDay", extra: str = "parquet") -> Any:
    """A DuckDB connection that reads times as UTC and never downloads an extension."""
    try:
        import duckdb
    except ImportError as error:
        raise ConfigError(
            f"{layer} needs DuckDB: pip install 'amp-luigi[{extra}]' (or set [{extra}] enabled = false)."
        ) from error
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")  # Amplitude's times carry no zone and are UTC
    con.execute(f"SET memory_limit = '{int(engine.memory_limit_mib)}MB'")
    con.execute(f"SET threads = {int(engine.threads)}")
    con.execute("SET preserve_insertion_order = false")  # lets DuckDB stream without holding rows
    if engine.temp_dir is not None:
        con.execute(f"SET temp_directory = {text(str(engine.temp_dir))}")
    return con


def text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def ident(value: str) -> str:
    """A SQL identifier."""
    return '"' + value.replace('"', '""') + '"'


def files(sources: Sequence[Path]) -> str:
    """A SQL list of file paths."""
    return "[" + ", ".join(text(str(path)) for path in sources) + "]"


def _raw(column: Column) -> str:
    """SQL: the field's JSON text, NULL when absent or null."""
    return f"nullif(CAST(f.{ident(column.field)} AS VARCHAR), 'null')"


def _typed(column: Column, json_type: str) -> str:
    """SQL: the field's value as the column's type, NULL when it does not fit.

    Numbers and booleans are cast from their JSON text, which accepts only the right JSON type
    (`"12"`, `1.5` as BIGINT or `1` as BOOLEAN give NULL); strings must start with a quote.
    """
    raw = _raw(column)
    if column.type == "JSON":
        return f"CAST({raw} AS {json_type})"
    if column.type == "BOOLEAN":
        return f"CASE {raw} WHEN 'true' THEN true WHEN 'false' THEN false END"
    if column.type == "BIGINT":  # a cast alone would round 1.5 to 2
        return f"CASE WHEN regexp_full_match({raw}, '-?[0-9]+') THEN TRY_CAST({raw} AS BIGINT) END"
    if column.type == "DOUBLE":
        return f"TRY_CAST({raw} AS DOUBLE)"
    value = f"CASE WHEN starts_with({raw}, '\"') THEN CAST({raw} AS JSON) ->> '$' END"
    return value if column.type == "VARCHAR" else f"TRY_CAST({value} AS {column.type})"


def _describe(column: Column) -> str:
    """SQL: `field 'x' (BIGINT) holds "abc"`, for a value that does not fit."""
    return f"{text(f'field {column.field!r} ({column.type}) holds ')} || left({_raw(column)}, 80)"


def _checked(columns: Sequence[Column]) -> list[Column]:
    return [column for column in columns if column.type != "JSON"]


def _as_json(columns: Sequence[Column]) -> str:
    """SQL: the json_transform structure reading every field of `columns` as JSON text."""
    return text(json.dumps({column.field: "JSON" for column in columns}))


def select_sql(sources: Sequence[Path], columns: Sequence[Column] = COLUMNS, json_type: str = "JSON") -> str:
    """The typed rows of NDJSON files; raises (DuckDB's error()) at a value that does not fit.

    `json_type` is the type of the JSON columns: JSON for Parquet's JSON logical type, VARCHAR where
    the consumer (pyiceberg) takes no Arrow JSON extension type.
    """
    checked = _checked(columns)
    inner = [f"{_typed(c, json_type)} AS {ident('t_' + c.name)}" for c in columns]
    inner += [f"{_raw(c)} AS {ident('r_' + c.name)}" for c in checked]
    outer = [
        f"CASE WHEN {ident('t_' + c.name)} IS NULL AND {ident('r_' + c.name)} IS NOT NULL "
        f"THEN error({text(f'field {c.field!r} ({c.type}) holds ')} || left({ident('r_' + c.name)}, 80)) "
        f"ELSE {ident('t_' + c.name)} END AS {ident(c.name)}"
        if c.type != "JSON"
        else f"{ident('t_' + c.name)} AS {ident(c.name)}"
        for c in columns
    ]
    known = "[" + ", ".join(text(column.field) for column in columns) + "]"
    known_as_null = text(json.dumps({column.field: None for column in columns}))
    # Most lines hold no field beyond the schema: only those pay for the merge patch, which, with
    # every named field set to null, removes them and leaves the rest.
    extra = (
        "CASE WHEN NOT starts_with(json, '{') THEN error('a line is not a JSON object') "
        f"WHEN NOT list_has_all({known}, json_keys(json)) "
        f"THEN CAST(json_merge_patch(json, {known_as_null}) AS {json_type}) END AS {ident('t_' + EXTRA.name)}"
    )
    return (
        f"SELECT {', '.join(outer)}, {ident('t_' + EXTRA.name)} AS {ident(EXTRA.name)} FROM ("
        f"SELECT {', '.join(inner)}, {extra} "
        f"FROM (SELECT json, json_transform(json, {_as_json(columns)}) AS f "
        f"FROM read_ndjson_objects({files(sources)})))"
    )


def copy_rows(
    con: Any,
    query: str,
    sources: dict[Path, str],
    dest: Path,
    schema: str,
    columns: Sequence[Column] = COLUMNS,
) -> int:
    """Write the rows of `query` (over the files `sources`, path -> object key) to the Parquet file
    `dest`; its rows. A value that does not fit `columns` fails naming object, line and field."""
    try:
        rows = con.execute(
            f"COPY ({query}) TO {text(str(dest))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 10000)"
        ).fetchone()[0]
    except Exception as error:  # duckdb.Error, imported lazily
        for path, key in sources.items():
            found = diagnose(con, path, columns)
            if found:
                line, problem = found
                raise SchemaMismatchError(
                    f"{key}, line {line}: {problem}, which does not fit the {schema}: the day was not "
                    "converted. Fix the object, or report the field so a new schema version can type it."
                ) from error
        raise FatalError(f"DuckDB could not convert {', '.join(sources.values())}: {error}") from error
    return int(rows)


def diagnose(con: Any, path: Path, columns: Sequence[Column] = COLUMNS) -> tuple[int, str] | None:
    """The first line of `path` that does not fit, and why; only after a conversion failed.

    The file is read as text and split at newlines, so the line number is exact.
    """
    if path.suffix == ".gz":
        plain = path.with_suffix("")
        with gzip.open(path, "rb") as source, plain.open("wb") as out:
            shutil.copyfileobj(source, out, _CHUNK)
        path = plain
    lines = "string_split(content, chr(10))"
    bad = [
        f"WHEN {_raw(c)} IS NOT NULL AND {_typed(c, 'JSON')} IS NULL THEN {_describe(c)}"
        for c in _checked(columns)
    ]
    problem = "CASE " + " ".join(bad) + " END" if bad else "NULL"
    found = con.execute(
        f"""
        SELECT n, CASE WHEN NOT json_valid(line) THEN 'it is not JSON'
                       WHEN json_type(line) <> 'OBJECT' THEN 'it is not a JSON object'
                       ELSE {problem} END AS problem
        FROM (SELECT n, line, CASE WHEN json_valid(line) AND json_type(line) = 'OBJECT'
                                   THEN json_transform(line, {_as_json(columns)}) END AS f
              FROM (SELECT unnest({lines}) AS line, generate_subscripts({lines}, 1) AS n
                    FROM read_text({text(str(path))})))
        WHERE line <> '' AND problem IS NOT NULL ORDER BY n LIMIT 1
        """
    ).fetchone()
    return (int(found[0]), str(found[1])) if found else None


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


class HourFiles:
    """A day's verified objects as one typed Parquet file per hour, made as they are iterated: per
    hour, the objects are downloaded into `work`, `convert(sources, dest)` writes `dest` (sources:
    path -> object key) and returns its rows, which must be the events the verified marker counts,
    and the downloads are removed, so disk holds one hour of NDJSON at a time. Yields (hour, file,
    rows); the caller owns the file."""

    def __init__(
        self,
        bucket: Bucket,
        objects: list[ExpectedObject],
        work: Path,
        convert: Callable[[dict[Path, str], Path], int],
        day: str,
    ) -> None:
        self.bucket, self.work, self.convert, self.day = bucket, work, convert, day
        self.by_hour = hours(objects)

    def __len__(self) -> int:
        return len(self.by_hour)

    def __iter__(self) -> Iterator[tuple[int, Path, int]]:
        for hour, hour_objects in self.by_hour.items():
            hour_dir = self.work / f"{hour:02d}"
            hour_dir.mkdir(parents=True, exist_ok=True)
            sources = {hour_dir / obj.key.rsplit("/", 1)[-1]: obj.key for obj in hour_objects}
            self.bucket.map(lambda item: self.bucket.download(item[1], item[0]), list(sources.items()))
            dest = self.work / f"{hour:02d}.parquet"
            rows = self.convert(sources, dest)
            expected = sum(obj.events for obj in hour_objects)
            if rows != expected:
                raise VerificationError(
                    f"{self.day} hour {hour}: DuckDB read {rows} events from {len(sources)} object(s), "
                    f"the verified marker counts {expected}"
                )
            shutil.rmtree(hour_dir)
            yield hour, dest, rows
