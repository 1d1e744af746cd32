"""The Parquet table's one column list: names Athena, Hive and Spark accept, every type mapped for
Athena, every field of an Amplitude event a column, and everything else in `extra_fields`."""

from __future__ import annotations

import json
import re

from amp_luigi.emulator import DatasetSpec, hour_lines
from amp_luigi.query.schema import ATHENA_TYPES, COLUMNS, EXTRA, PARTITION, table_columns


def test_column_names_are_unique_legal_names_and_fields_unique() -> None:
    names = [column.name for column in table_columns()]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in names), names
    fields = [column.field for column in COLUMNS]
    assert len(fields) == len(set(fields))


def test_the_dollar_fields_get_names_without_the_dollar_and_the_rest_keep_their_field_name() -> None:
    renamed = {column.field: column.name for column in COLUMNS if column.name != column.field}
    assert renamed == {"$insert_id": "insert_id", "$schema": "amplitude_schema"}


def test_every_column_has_an_athena_type() -> None:
    assert {column.athena_type for column in table_columns()} <= set(ATHENA_TYPES.values())
    by_name = {column.name: column for column in table_columns()}
    assert (by_name["event_time"].type, by_name["event_time"].athena_type) == ("TIMESTAMPTZ", "timestamp")
    assert (by_name["event_properties"].type, by_name["event_properties"].athena_type) == ("JSON", "string")
    assert (by_name["session_id"].type, by_name["paying"].type) == ("BIGINT", "BOOLEAN")


def test_the_file_columns_are_the_event_columns_then_extra_fields_and_never_the_partition() -> None:
    assert table_columns() == (*COLUMNS, EXTRA)
    assert (EXTRA.name, EXTRA.type) == ("extra_fields", "JSON")
    assert PARTITION not in {column.name for column in table_columns()}, "dt is in the path"


def test_every_field_of_an_amplitude_event_has_a_column_of_its_own() -> None:
    # The emulator's events carry the Export API's documented fields.
    fields = {
        field
        for line in hour_lines(DatasetSpec(events_per_hour=20), "20240301T05")
        for field in json.loads(line)
    }
    assert fields <= {column.field for column in COLUMNS}, fields - {column.field for column in COLUMNS}
