"""The Iceberg table's schema: the Parquet layer's columns, and how a new field becomes a column."""

from __future__ import annotations

import pytest
from pyiceberg.types import NestedField, StringType

from amp_luigi.errors import FatalError
from amp_luigi.query.iceberg_schema import (
    JSON_DOC,
    UPLOAD_DATE,
    added_type,
    columns_of,
    nameable,
    partition_spec,
    table_schema,
)
from amp_luigi.query.schema import COLUMNS, EXTRA, Column


def test_the_table_has_the_parquet_columns_extra_fields_and_upload_date() -> None:
    schema = table_schema()
    assert [field.name for field in schema.fields] == [*(c.name for c in COLUMNS), EXTRA.name, UPLOAD_DATE]
    assert all(not field.required for field in schema.fields), "Amplitude may leave any field out"
    assert str(schema.find_field("event_time").field_type) == "timestamptz"
    assert str(schema.find_field("event_properties").field_type) == "string"
    assert schema.find_field("event_properties").doc == JSON_DOC
    assert columns_of(schema) == COLUMNS


@pytest.mark.parametrize(("partition", "name"), [("day", "event_day"), ("month", "event_month")])
def test_partitioned_by_the_event_time(partition: str, name: str) -> None:
    schema = table_schema()
    spec = partition_spec(schema, partition)
    (field,) = spec.fields
    assert (field.name, str(field.transform), field.source_id) == (
        name,
        partition,
        schema.find_field("event_time").field_id,
    )


@pytest.mark.parametrize(
    ("json_types", "column_type"),
    [
        (["BIGINT"], "BIGINT"),
        (["BIGINT", "NULL"], "BIGINT"),
        (["BIGINT", "DOUBLE"], "DOUBLE"),
        (["DOUBLE"], "DOUBLE"),
        (["BOOLEAN"], "BOOLEAN"),
        (["VARCHAR"], "VARCHAR"),
        (["OBJECT"], "JSON"),
        (["ARRAY", "OBJECT"], "JSON"),
        (["VARCHAR", "BIGINT"], "JSON"),  # a mix: JSON text keeps every value as sent
        (["UBIGINT"], "JSON"),  # an integer beyond BIGINT
        (["NULL"], None),  # nothing to type by yet: the field waits for a day with values
    ],
)
def test_a_new_field_is_typed_by_all_its_values_in_the_day(
    json_types: list[str], column_type: str | None
) -> None:
    assert added_type(json_types) == column_type


@pytest.mark.parametrize(
    ("field", "ok"),
    [
        ("consent_level", True),
        ("_private", True),
        ("Consent", False),  # Glue and Athena fold case: two fields could meet in one column
        ("$new", False),
        ("a-b", False),
        ("insert_id", False),  # taken: `$insert_id`'s column
        ("upload_date", False),
        ("extra_fields", False),
        ("uuid", False),
    ],
)
def test_only_a_plain_free_name_becomes_a_column(field: str, ok: bool) -> None:
    assert nameable(field) is ok


def test_added_columns_are_read_back_with_their_types() -> None:
    from pyiceberg.types import BooleanType, DoubleType, LongType

    schema = table_schema()
    extra = [
        NestedField(200, "level", LongType(), required=False),
        NestedField(201, "ratio", DoubleType(), required=False),
        NestedField(202, "flag", BooleanType(), required=False),
        NestedField(203, "label", StringType(), required=False),
        NestedField(204, "meta", StringType(), required=False, doc=JSON_DOC),
    ]
    from pyiceberg.schema import Schema

    grown = Schema(*schema.fields, *extra)
    assert columns_of(grown)[len(COLUMNS) :] == (
        Column("level", "level", "BIGINT"),
        Column("ratio", "ratio", "DOUBLE"),
        Column("flag", "flag", "BOOLEAN"),
        Column("label", "label", "VARCHAR"),
        Column("meta", "meta", "JSON"),
    )


def test_a_column_of_a_type_amp_luigi_does_not_write_is_named() -> None:
    from pyiceberg.schema import Schema
    from pyiceberg.types import DateType

    grown = Schema(*table_schema().fields, NestedField(300, "signup_day", DateType(), required=False))
    with pytest.raises(FatalError, match="column 'signup_day' is of type date"):
        columns_of(grown)
