"""The Athena DDL: its columns are the schema's (and so the Parquet files'), its partition projection
templates are where the layout puts each day, and the raw table maps the `$` fields."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pytest

from amp_luigi.emulator import DatasetSpec, hour_lines
from amp_luigi.layout import DayLayout, ParquetLayout, parquet_location_template, raw_location_template
from amp_luigi.query.athena import parquet_table, raw_table
from amp_luigi.query.parquet import Engine, connect, convert
from amp_luigi.query.schema import COLUMNS, PARTITION, table_columns

DAY = dt.date(2024, 3, 1)


def columns(ddl: str) -> list[tuple[str, str]]:
    """The (name, type) pairs between the statement's first parentheses."""
    body = ddl.split("(\n", 1)[1].split("\n)", 1)[0]
    return [(line.split("`")[1], line.split("` ")[1].rstrip(",")) for line in body.splitlines()]


def properties(ddl: str) -> dict[str, str]:
    return dict(re.findall(r"'([^']+)' = '([^']*)'", ddl))


def test_the_ddl_columns_are_the_parquet_columns(tmp_path: Path) -> None:
    source = tmp_path / "hour.json"
    source.write_text(
        "".join(line + "\n" for line in hour_lines(DatasetSpec(events_per_hour=20), "20240301T05"))
    )
    con = connect(Engine())
    try:
        convert(con, {source: "python_import/2024-03-01/hour.json"}, tmp_path / "f.parquet")
    finally:
        con.close()
    described = duckdb.connect().execute(f"DESCRIBE SELECT * FROM '{tmp_path / 'f.parquet'}'").fetchall()
    assert [row[0] for row in described] == [column.name for column in table_columns()]
    ddl = parquet_table("b", "python_import_parquet", DAY, "`db`.`events`")
    body = ddl.split("(\n", 1)[1].split("\n)", 1)[0]
    assert [line.split("`")[1] for line in body.splitlines()] == [row[0] for row in described]
    assert "'storage.location.template' = 's3://b/python_import_parquet/dt=${dt}/'" in ddl
    assert "'projection.dt.range' = '2024-03-01,NOW'" in ddl


def test_each_table_has_the_schemas_columns_with_their_athena_types() -> None:
    parquet = parquet_table("b", "pq", DAY, "`db`.`events`")
    raw = raw_table("b", "raw", DAY, "`db`.`events_raw`")
    assert columns(parquet) == [(column.name, column.athena_type) for column in table_columns()]
    assert columns(raw) == [(column.name, column.athena_type) for column in COLUMNS], (
        "no extra_fields in NDJSON"
    )
    for ddl in (parquet, raw):
        assert f"PARTITIONED BY (`{PARTITION}` string)" in ddl


@pytest.mark.parametrize("prefix", ["python_import", "team/amp/web", "/team/amp/"])
def test_the_projection_templates_are_where_the_layout_puts_each_day(prefix: str) -> None:
    parquet_prefix = prefix.strip("/") + "_parquet"
    parquet = properties(parquet_table("b", parquet_prefix, DAY, "t"))
    raw = properties(raw_table("b", prefix, DAY, "t_raw"))
    day = DAY.isoformat()
    assert parquet["storage.location.template"] == f"s3://b/{parquet_location_template(parquet_prefix)}"
    assert raw["storage.location.template"] == f"s3://b/{raw_location_template(prefix)}"
    assert parquet["storage.location.template"].replace("${dt}", day) == (
        "s3://b/" + ParquetLayout(DAY, prefix, parquet_prefix).partition_prefix
    )
    assert raw["storage.location.template"].replace("${dt}", day) == (
        "s3://b/" + DayLayout(DAY, Path("."), prefix, keep_gzip=False).data_prefix
    )


def test_partitions_are_projected_as_days_from_the_first_date_so_markers_are_never_read() -> None:
    for ddl in (parquet_table("b", "pq", DAY, "t"), raw_table("b", "p", DAY, "t_raw")):
        found = properties(ddl)
        assert found["projection.enabled"] == "true"
        assert (found["projection.dt.type"], found["projection.dt.format"]) == ("date", "yyyy-MM-dd")
        assert found["projection.dt.range"] == "2024-03-01,NOW"
        assert (found["projection.dt.interval"], found["projection.dt.interval.unit"]) == ("1", "DAYS")
    # A marker's folder (`_verified`, ...) is never a yyyy-MM-dd day, so no projected partition reads it.
    layout = DayLayout(DAY, Path("."), "p", keep_gzip=False)
    assert not layout.verified_key.startswith(raw_location_template("p").replace("${dt}", DAY.isoformat()))


def test_the_raw_table_maps_the_dollar_fields_through_the_json_serde() -> None:
    ddl = raw_table("b", "p", DAY, "`db`.`events_raw`")
    assert "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'" in ddl
    mapped = {
        name.removeprefix("mapping."): field
        for name, field in properties(ddl).items()
        if name.startswith("mapping.")
    }
    assert mapped == {"insert_id": "$insert_id", "amplitude_schema": "$schema"}
    assert properties(ddl)["case.insensitive"] == "false"


def test_each_statement_is_one_create_if_not_exists_at_the_bucket_and_prefix() -> None:
    parquet = parquet_table("my-bucket", "/team/pq/", DAY, "`db`.`events`")
    raw = raw_table("my-bucket", "team/raw", DAY, "`db`.`events_raw`")
    assert parquet.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `db`.`events` (") and parquet.endswith(
        ");"
    )
    assert raw.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `db`.`events_raw` (") and raw.endswith(");")
    assert "STORED AS PARQUET\nLOCATION 's3://my-bucket/team/pq/'" in parquet
    assert "LOCATION 's3://my-bucket/team/raw/'" in raw
    assert parquet.count("CREATE") == raw.count("CREATE") == 1
