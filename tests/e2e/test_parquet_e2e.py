"""ParquetDay through the real `luigi` command, read back by real consumers: pyarrow's S3FileSystem
(a Hive-partitioned dataset) and DuckDB (the same analysis over Parquet and over the raw NDJSON)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs
import pytest

from amp_luigi.layout import ParquetLayout
from amp_luigi.query.parquet import Engine, SchemaMismatchError, convert_day
from amp_luigi.records import DayRecord
from amp_luigi.s3 import Bucket
from amp_luigi.testing.local import s3_client
from tests.conftest import AWS_SECRET, DAY, SECRETS, Workspace
from tests.expect import expected_objects

PARQUET = "python_import_parquet/dt=2024-03-01/"
MARKER = "python_import/_parquet/2024-03-01.json"


def source_events(emulator) -> list[dict]:
    return [json.loads(line) for body in expected_objects(emulator).values() for line in body.splitlines()]


def run_parquet_day(workspace: Workspace) -> None:
    run = workspace.luigi("ParquetDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert run.returncode == 0, run.stderr
    for secret in SECRETS:
        assert secret not in run.stdout + run.stderr


def test_pyarrow_reads_the_day_as_a_hive_partitioned_dataset(workspace: Workspace, emulator) -> None:
    run_parquet_day(workspace)
    events = source_events(emulator)
    s3 = pyarrow.fs.S3FileSystem(
        access_key=workspace.env["ACCESS_KEY"],
        secret_key=AWS_SECRET,
        endpoint_override=workspace.env["AWS_ENDPOINT_URL_S3"],
        scheme="http",
        region="us-east-1",
    )
    dataset = ds.dataset(
        f"{workspace.bucket}/python_import_parquet", filesystem=s3, format="parquet", partitioning="hive"
    )
    table = dataset.to_table()
    assert "dt" in dataset.partitioning.schema.names
    assert set(table.column("dt").to_pylist()) == {"2024-03-01"} or set(
        map(str, table.column("dt").to_pylist())
    ) == {"2024-03-01"}
    assert table.num_rows == len(events) == emulator.day_event_count(DAY)
    assert len(set(table.column("uuid").to_pylist())) == len({e["uuid"] for e in events})
    assert pa.types.is_timestamp(table.schema.field("event_time").type)
    assert table.schema.field("event_time").type.tz == "UTC"
    assert pa.types.is_int64(table.schema.field("session_id").type)
    by_uuid = {row["uuid"]: row for row in table.to_pylist()}
    for event in events:
        row = by_uuid[event["uuid"]]
        assert row["insert_id"] == event["$insert_id"]
        assert json.loads(row["event_properties"]) == event["event_properties"]
        assert json.loads(row["user_properties"]) == event["user_properties"]
        assert row["event_time"].strftime("%Y-%m-%d %H:%M:%S.%f") == event["event_time"]
        assert row["extra_fields"] is None
    marker = json.loads(workspace.read(MARKER))
    assert marker["rows"] == len(events) and marker["schema_version"] == 1
    assert marker["files"] == len(workspace.keys(PARQUET)) and marker["bytes"] == sum(
        workspace.keys(PARQUET).values()
    )

    # A rerun does nothing: no request to Amplitude, the same objects.
    before = Bucket(s3_client(workspace.env), workspace.bucket).listing("")
    emulator.reset_requests()
    run_parquet_day(workspace)
    assert emulator.requests == []
    after = Bucket(s3_client(workspace.env), workspace.bucket).listing("")
    assert after == before


HOURLY = """
    SELECT event_type, date_trunc('hour', CAST(event_time AS TIMESTAMPTZ)) AS hour, count(*) AS n
    FROM {source} GROUP BY ALL ORDER BY ALL
"""


def test_duckdb_gets_the_same_answer_from_parquet_and_from_raw_ndjson(
    workspace: Workspace, emulator, tmp_path: Path
) -> None:
    run_parquet_day(workspace)
    for kind, prefix in (("parquet", PARQUET), ("raw", "python_import/2024-03-01/")):
        for key in workspace.keys(prefix):
            dest = tmp_path / kind / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(workspace.read(key))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    parquet = f"read_parquet('{tmp_path}/parquet/**/*.parquet', hive_partitioning = true)"
    raw = f"read_json('{tmp_path}/raw/python_import/2024-03-01/*.json', columns = {{'event_type': 'VARCHAR', 'event_time': 'VARCHAR'}})"
    answer = con.execute(HOURLY.format(source=parquet)).fetchall()
    assert answer == con.execute(HOURLY.format(source=raw)).fetchall()
    assert sum(row[2] for row in answer) == emulator.day_event_count(DAY)
    assert con.execute(f"SELECT DISTINCT typeof(dt) FROM {parquet}").fetchall() == [("DATE",)]


def test_unknown_fields_are_kept_strays_removed_and_a_bad_line_fails_naming_it(
    workspace: Workspace, emulator, tmp_path: Path
) -> None:
    run_parquet_day(workspace)
    client = s3_client(workspace.env)
    bucket = Bucket(client, workspace.bucket)
    objects = DayRecord.from_json(
        json.loads(workspace.read("python_import/_verified/2024-03-01.json")), "marker"
    ).objects
    layout = ParquetLayout(DAY, "python_import", "python_import_parquet")
    target = objects[0]
    lines = workspace.read(target.key).decode().split("\n")
    event = json.loads(lines[1])
    event["brand_new_field"] = {"nested": [1, None, "ü"]}
    lines[1] = json.dumps(event, ensure_ascii=False)
    client.put_object(Bucket=workspace.bucket, Key=target.key, Body="\n".join(lines).encode())
    client.put_object(Bucket=workspace.bucket, Key=PARQUET + "stray.parquet", Body=b"old")

    record = convert_day(bucket, layout, objects, Engine(), tmp_path / "work")
    assert PARQUET + "stray.parquet" not in workspace.keys(PARQUET)
    assert record.to_json()["rows"] == emulator.day_event_count(DAY)
    con = duckdb.connect()
    local = tmp_path / "hour.parquet"
    hour_key = next(
        key
        for key in workspace.keys(PARQUET)
        if key.endswith(f"T{int(target.key.split('_')[-1].split('#')[0]):02d}.parquet")
    )
    local.write_bytes(workspace.read(hour_key))
    found = con.execute(f"SELECT extra_fields FROM '{local}' WHERE uuid = ?", [event["uuid"]]).fetchone()
    assert json.loads(found[0]) == {"brand_new_field": {"nested": [1, None, "ü"]}}

    event["session_id"] = "not-a-number"
    lines[1] = json.dumps(event, ensure_ascii=False)
    client.put_object(Bucket=workspace.bucket, Key=target.key, Body="\n".join(lines).encode())
    with pytest.raises(
        SchemaMismatchError,
        match=rf"{target.key}, line 2: field 'session_id' \(BIGINT\) holds \"not-a-number\"",
    ):
        convert_day(bucket, layout, objects, Engine(), tmp_path / "work2")


def test_export_range_with_parquet_enabled_converts_and_status_and_athena_show_it(
    workspace: Workspace, emulator
) -> None:
    workspace.configure("parquet", enabled=True)
    run = workspace.luigi("ExportRange", "--start", "2024-03-01", "--stop", "2024-03-02", "--local-scheduler")
    assert run.returncode == 0, run.stderr
    assert json.loads(workspace.read(MARKER))["rows"] == emulator.day_event_count(DAY)

    def command(*args: str) -> str:
        done = workspace.amp_luigi(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        for secret in SECRETS:
            assert secret not in done.stdout + done.stderr
        return done.stdout

    status = command("status", "--start", "2024-03-01", "--stop", "2024-03-03")
    assert " pq" in status and "Parquet: 1 of 1 verified days" in status
    ddl = command("athena", "--database", "analytics")
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `analytics`.`events` (" in ddl
    assert f"'storage.location.template' = 's3://{workspace.bucket}/python_import_parquet/dt=${{dt}}/'" in ddl
    assert "org.openx.data.jsonserde.JsonSerDe" in ddl and "'mapping.insert_id' = '$insert_id'" in ddl
    assert "'mapping.amplitude_schema' = '$schema'" in ddl
    assert f"'storage.location.template' = 's3://{workspace.bucket}/python_import/${{dt}}/'" in ddl
