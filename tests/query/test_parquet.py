"""NDJSON hour files into typed Parquet with DuckDB in process, read back with pyarrow: the schema's
columns and types, JSON objects as text, unknown fields kept in `extra_fields`, and a value that does
not fit refused naming the object, the line and the field. Then a whole day on in-process moto:
one file per hour, strays removed, rows checked against the verified counts and the footers."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amp_luigi.emulator import DatasetSpec, hour_lines
from amp_luigi.errors import VerificationError
from amp_luigi.layout import ParquetLayout
from amp_luigi.query.parquet import (
    Engine,
    SchemaMismatchError,
    connect,
    convert,
    convert_day,
    footer_rows,
)
from amp_luigi.query.schema import SCHEMA_VERSION, table_columns
from amp_luigi.records import ExpectedObject
from amp_luigi.s3 import Bucket
from tests.conftest import MOCK_BUCKET, crc32_of

DAY = dt.date(2024, 3, 1)
KEY = "python_import/2024-03-01/187520_2024-03-01_5#0.json"
UTC = dt.timezone.utc
# Real-looking events: the emulator's, which carry the Export API's documented fields.
LINES = hour_lines(DatasetSpec(events_per_hour=20), "20240301T05")
EVENT = json.loads(LINES[0])


@pytest.fixture
def con() -> Iterator[Any]:
    connection = connect(Engine())
    yield connection
    connection.close()


def ndjson(path: Path, lines: list[str]) -> Path:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def converted(con: Any, tmp_path: Path, *events: dict[str, Any]) -> list[dict[str, Any]]:
    source = ndjson(tmp_path / "hour.json", [json.dumps(event, ensure_ascii=False) for event in events])
    assert convert(con, {source: KEY}, tmp_path / "hour.parquet") == len(events)
    return pq.read_table(tmp_path / "hour.parquet").to_pylist()


def test_amplitude_events_become_typed_rows_in_the_schemas_column_order(con: Any, tmp_path: Path) -> None:
    source = ndjson(tmp_path / "hour.json", LINES)
    rows = convert(con, {source: KEY}, tmp_path / "hour.parquet")
    table = pq.read_table(tmp_path / "hour.parquet")
    assert rows == table.num_rows == len(LINES)
    assert table.schema.names == [column.name for column in table_columns()]
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("session_id").type == pa.int64()
    assert table.schema.field("paying").type == pa.bool_()
    assert table.schema.field("location_lat").type == pa.float64()
    assert table.schema.field("city").type == pa.string()
    by_id = {row["insert_id"]: row for row in table.to_pylist()}
    for event in map(json.loads, LINES):
        row = by_id[event["$insert_id"]]
        assert row["event_time"].strftime("%Y-%m-%d %H:%M:%S.%f") == event["event_time"]
        assert (row["session_id"], row["city"], row["is_attribution_event"]) == (
            event["session_id"],
            event["city"],
            event["is_attribution_event"],
        )
        assert json.loads(row["event_properties"]) == event["event_properties"]
        assert json.loads(row["user_properties"]) == event["user_properties"]
        assert row["extra_fields"] is None, "every field of the event has its column"


def test_json_fields_are_kept_as_json_text_whatever_they_hold(con: Any, tmp_path: Path) -> None:
    properties = {"screen": {"path": ["a", "ü", None]}, "n": 1.5, "text": 'tab\t"quoted"\nnewline'}
    [row] = converted(con, tmp_path, {**EVENT, "event_properties": properties, "groups": [1, 2], "plan": "x"})
    assert json.loads(row["event_properties"]) == properties
    assert (json.loads(row["groups"]), json.loads(row["plan"])) == ([1, 2], "x")


def test_fields_beyond_the_schema_are_kept_in_extra_fields(con: Any, tmp_path: Path) -> None:
    new = {"brand_new_field": {"nested": [1, None, "ü"]}, "also_new": None}
    with_new, without = converted(con, tmp_path, {**EVENT, **new}, EVENT)
    assert json.loads(with_new["extra_fields"]) == new
    assert without["extra_fields"] is None
    assert with_new["insert_id"] == EVENT["$insert_id"], "the known fields stay in their columns"


def test_times_with_or_without_a_fraction_are_utc_and_absent_or_null_values_are_null(
    con: Any, tmp_path: Path
) -> None:
    event = {
        "$insert_id": "t",
        "event_time": "2024-03-01 10:00:00",
        "client_event_time": "2024-03-01 10:00:00.5",
    }
    [row] = converted(con, tmp_path, {**event, "session_id": None, "paying": None})
    assert row["event_time"] == dt.datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert row["client_event_time"] == dt.datetime(2024, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert row["session_id"] is None and row["paying"] is None and row["event_properties"] is None
    assert row["amplitude_schema"] is None


def test_the_dollar_fields_land_in_their_renamed_columns(con: Any, tmp_path: Path) -> None:
    [row] = converted(con, tmp_path, {"$insert_id": "abc", "$schema": 12})
    assert (row["insert_id"], row["amplitude_schema"]) == ("abc", 12)


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("session_id", "not-a-number", "field 'session_id' (BIGINT) holds \"not-a-number\""),
        ("session_id", 1.5, "field 'session_id' (BIGINT) holds 1.5"),  # never rounded to 2
        ("amplitude_id", "12", "field 'amplitude_id' (BIGINT) holds \"12\""),
        ("location_lat", "north", "field 'location_lat' (DOUBLE) holds \"north\""),
        ("location_lat", True, "field 'location_lat' (DOUBLE) holds true"),
        ("paying", 1, "field 'paying' (BOOLEAN) holds 1"),
        ("user_id", 12, "field 'user_id' (VARCHAR) holds 12"),
        ("event_time", "yesterday", "field 'event_time' (TIMESTAMPTZ) holds \"yesterday\""),
        ("$insert_id", 5, "field '$insert_id' (VARCHAR) holds 5"),
    ],
)
def test_a_value_that_does_not_fit_its_column_names_the_object_the_line_and_the_field(
    con: Any, tmp_path: Path, field: str, value: object, shown: str
) -> None:
    with pytest.raises(SchemaMismatchError) as raised:
        converted(con, tmp_path, EVENT, {**EVENT, field: value})
    assert str(raised.value).startswith(
        f"{KEY}, line 2: {shown}, which does not fit the Parquet schema (version {SCHEMA_VERSION}): "
        "the day was not converted."
    )


@pytest.mark.parametrize(
    ("line", "why"), [("[1, 2]", "it is not a JSON object"), ("not JSON {", "it is not JSON")]
)
def test_a_line_that_is_not_an_event_object_is_named(con: Any, tmp_path: Path, line: str, why: str) -> None:
    source = ndjson(tmp_path / "hour.json", [LINES[0], LINES[1], line])
    with pytest.raises(SchemaMismatchError, match=rf"^{KEY}, line 3: {why}, "):
        convert(con, {source: KEY}, tmp_path / "hour.parquet")


def test_gzip_objects_convert_and_the_bad_one_among_several_is_named(con: Any, tmp_path: Path) -> None:
    first = ndjson(tmp_path / "a.json.gz", LINES[:4])
    second = ndjson(tmp_path / "b.json.gz", LINES[4:])
    sources = {first: "p/2024-03-01/a.json.gz", second: "p/2024-03-01/b.json.gz"}
    assert convert(con, sources, tmp_path / "hour.parquet") == len(LINES)

    ndjson(second, [LINES[4], json.dumps({**EVENT, "paying": "yes"})])
    with pytest.raises(SchemaMismatchError, match=r"^p/2024-03-01/b\.json\.gz, line 2: field 'paying'"):
        convert(con, sources, tmp_path / "again.parquet")


def test_the_connection_reads_times_as_utc_spills_where_told_and_never_downloads_an_extension(
    tmp_path: Path,
) -> None:
    connection = connect(Engine(memory_limit_mib=64, threads=1, temp_dir=tmp_path / "spill"))
    try:
        settings = dict(
            connection.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('TimeZone', 'threads', 'temp_directory', 'autoinstall_known_extensions')"
            ).fetchall()
        )
    finally:
        connection.close()
    assert settings == {
        "TimeZone": "UTC",
        "threads": "1",
        "temp_directory": str(tmp_path / "spill"),
        "autoinstall_known_extensions": "false",
    }


# A whole day, on in-process moto.

LAYOUT = ParquetLayout(DAY, "python_import", "python_import_parquet")


@pytest.fixture
def bucket(mock_s3_client: Any) -> Bucket:
    return Bucket(mock_s3_client, MOCK_BUCKET, threads=2)


def verified_day(bucket: Bucket, counts: dict[str, int] | None = None) -> list[ExpectedObject]:
    """Three objects over two hours, uploaded as VerifyDay leaves them; `counts` overrides events."""
    parts = {"5#0": LINES[:5], "5#1": LINES[5:9], "17#0": LINES[9:]}
    objects = []
    for part, lines in parts.items():
        key = f"python_import/2024-03-01/187520_2024-03-01_{part}.json"
        body = "".join(line + "\n" for line in lines).encode()
        etag = bucket.upload(key, iter([body]), crc32_of(body), {})
        events = (counts or {}).get(part, len(lines))
        objects.append(ExpectedObject(key, len(body), crc32_of(body), events, key + ".gz", etag))
    return objects


def test_a_day_becomes_one_file_per_hour_and_strays_of_the_partition_are_deleted(
    bucket: Bucket, tmp_path: Path
) -> None:
    objects = verified_day(bucket)
    bucket.client.put_object(Bucket=MOCK_BUCKET, Key=LAYOUT.partition_prefix + "stray.parquet", Body=b"old")
    seen: list[tuple[int, int]] = []

    record = convert_day(
        bucket, LAYOUT, objects, Engine(), tmp_path / "work", lambda *done: seen.append(done)
    )

    assert sorted(bucket.listing(LAYOUT.partition_prefix)) == [LAYOUT.hour_key(5), LAYOUT.hour_key(17)]
    assert [(item.key, item.rows) for item in record.files] == [
        (LAYOUT.hour_key(5), 9),
        (LAYOUT.hour_key(17), len(LINES) - 9),
    ]
    assert record.to_json()["rows"] == record.source_events == len(LINES)
    assert record.schema_version == SCHEMA_VERSION
    head = bucket.client.head_object(Bucket=MOCK_BUCKET, Key=LAYOUT.hour_key(5))
    assert head["Metadata"] == {"events": "9", "schema-version": str(SCHEMA_VERSION)}
    assert seen == [(1, 2), (2, 2)]
    assert not [path for path in (tmp_path / "work").rglob("*") if path.is_file()], (
        "each hour's files removed"
    )
    local = tmp_path / "five.parquet"
    local.write_bytes(bucket.read_bytes(LAYOUT.hour_key(5)))
    assert sorted(pq.read_table(local).column("insert_id").to_pylist()) == sorted(
        json.loads(line)["$insert_id"] for line in LINES[:9]
    )


def test_a_count_that_differs_from_the_verified_marker_fails_the_hour_before_its_upload(
    bucket: Bucket, tmp_path: Path
) -> None:
    objects = verified_day(bucket, counts={"17#0": 1})
    with pytest.raises(
        VerificationError, match=r"hour 17: DuckDB read .* events from 1 object.*the verified marker counts 1"
    ):
        convert_day(bucket, LAYOUT, objects, Engine(), tmp_path / "work")
    assert LAYOUT.hour_key(17) not in bucket.listing(LAYOUT.partition_prefix)


def test_the_row_count_is_read_from_the_footer_in_s3(bucket: Bucket, con: Any, tmp_path: Path) -> None:
    source = ndjson(tmp_path / "hour.json", LINES)
    convert(con, {source: KEY}, tmp_path / "hour.parquet")
    data = (tmp_path / "hour.parquet").read_bytes()
    bucket.client.put_object(Bucket=MOCK_BUCKET, Key="pq/hour.parquet", Body=data)
    assert footer_rows(con, bucket, "pq/hour.parquet", len(data), tmp_path / "footer") == len(LINES)
    assert not (tmp_path / "footer").exists()

    bucket.client.put_object(Bucket=MOCK_BUCKET, Key="pq/not.parquet", Body=b"x" * 100)
    with pytest.raises(VerificationError, match=r"pq/not\.parquet does not end like a Parquet file"):
        footer_rows(con, bucket, "pq/not.parquet", 100, tmp_path / "footer")
