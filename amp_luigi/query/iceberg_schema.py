"""The Iceberg table's schema: the Parquet layer's columns (schema.COLUMNS, one list for both),
`extra_fields`, and `upload_date`, the day Amplitude received the events; partitioned by the event
time, by day or by month.

A top-level field Amplitude adds later becomes a column of the table (schema evolution), typed by
the JSON values the day that first holds it has: BIGINT when all are integers, DOUBLE when some have
a fraction, BOOLEAN, VARCHAR for strings, and JSON text for objects, arrays or a mix. From then on
the column is typed like the others: a value of another type fails the day, naming object, line and
field. A field whose name is no plain lower-case column name (Glue and Athena fold case and refuse
`$`), or is one already taken, stays in `extra_fields`, as in Parquet: no field is ever lost.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from amp_luigi.errors import FatalError
from amp_luigi.query.schema import COLUMNS, EXTRA, Column

if TYPE_CHECKING:
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.types import IcebergType

UPLOAD_DATE = "upload_date"
EVENT_TIME = "event_time"
# The doc of a string column holding JSON text (the JSON type of DuckDB has no Iceberg counterpart).
JSON_DOC = "JSON text"
_COLUMN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,127}")
_TAKEN = (
    {column.name for column in COLUMNS} | {column.field for column in COLUMNS} | {EXTRA.name, UPLOAD_DATE}
)


def _types() -> dict[str, IcebergType]:
    from pyiceberg.types import BooleanType, DoubleType, LongType, StringType, TimestamptzType

    return {
        "VARCHAR": StringType(),
        "BIGINT": LongType(),
        "DOUBLE": DoubleType(),
        "BOOLEAN": BooleanType(),
        "TIMESTAMPTZ": TimestamptzType(),
        "JSON": StringType(),
    }


def table_schema() -> Schema:
    """The schema of a new table: COLUMNS, extra_fields and upload_date, ids from 1."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import DateType, NestedField

    types = _types()
    fields = [
        NestedField(i, column.name, types[column.type], required=False, doc=doc(column))
        for i, column in enumerate((*COLUMNS, EXTRA), 1)
    ]
    fields.append(
        NestedField(
            len(fields) + 1, UPLOAD_DATE, DateType(), required=False, doc="the day Amplitude received it"
        )
    )
    return Schema(*fields)


def doc(column: Column) -> str | None:
    """The column's doc in the table: JSON_DOC for JSON text."""
    return JSON_DOC if column.type == "JSON" else None


def partition_spec(schema: Schema, partition: str) -> PartitionSpec:
    """By the event time's day (`event_day`) or month (`event_month`)."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform, MonthTransform

    transform: DayTransform | MonthTransform = DayTransform() if partition == "day" else MonthTransform()
    source = schema.find_field(EVENT_TIME).field_id
    return PartitionSpec(PartitionField(source, 1000, transform, f"event_{partition}"))


def columns_of(schema: Schema) -> tuple[Column, ...]:
    """The typed columns a day's rows are read into: COLUMNS, then every column added since, in the
    table's order (extra_fields and upload_date are not read from a field of the event)."""
    types = {column.name for column in COLUMNS} | {EXTRA.name, UPLOAD_DATE}
    added = tuple(
        Column(field.name, field.name, _column_type(field.name, field.field_type, field.doc))
        for field in schema.fields
        if field.name not in types
    )
    return (*COLUMNS, *added)


def _column_type(name: str, field_type: IcebergType, doc: str | None) -> str:
    """The type an added column is read as: its Iceberg type, and for a string whether it holds JSON."""
    types = _types()
    if field_type == types["VARCHAR"]:
        return "JSON" if doc == JSON_DOC else "VARCHAR"
    for kind in ("BIGINT", "DOUBLE", "BOOLEAN"):
        if field_type == types[kind]:
            return kind
    raise FatalError(
        f"The table's column {name!r} is of type {field_type}, which amp-luigi does not write: it was added "
        "by another tool. Drop it, or give it one of the types string, long, double or boolean."
    )


def nameable(field: str) -> bool:
    """Whether a new top-level field can become a column of its own name."""
    return bool(_COLUMN_NAME.fullmatch(field)) and field not in _TAKEN


def added_type(json_types: Iterable[str]) -> str | None:
    """The column type of a new field from the JSON types of its values in a day (DuckDB's json_type
    names); None while it held nothing but null."""
    seen = set(json_types) - {"NULL"}
    if not seen:
        return None
    if seen <= {"BIGINT"}:
        return "BIGINT"
    if seen <= {"BIGINT", "DOUBLE"}:
        return "DOUBLE"
    if seen in ({"BOOLEAN"}, {"VARCHAR"}):
        return seen.pop()
    return "JSON"  # objects, arrays, integers beyond BIGINT, or a mix


def iceberg_type(column: Column) -> IcebergType:
    return _types()[column.type]


_EPOCH = dt.date(1970, 1, 1)


def partition_start(day: dt.date, partition: str) -> dt.date:
    """The first day of the partition (`day` or `month`) that holds `day`."""
    return day if partition == "day" else day.replace(day=1)


def partition_of_value(value: int, partition: str) -> dt.date:
    """The first day of a partition from Iceberg's value (days, or months, since 1970)."""
    if partition == "day":
        return _EPOCH + dt.timedelta(days=value)
    return dt.date(1970 + value // 12, value % 12 + 1, 1)


def partition_bounds(first: dt.date, partition: str) -> tuple[dt.datetime, dt.datetime]:
    """The event times [start, stop) of the partition that starts on `first`, in UTC."""
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.timezone.utc)
    if partition == "day":
        return start, start + dt.timedelta(days=1)
    following = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start, dt.datetime.combine(following, dt.time(), tzinfo=dt.timezone.utc)


def partition_label(first: dt.date | None, partition: str) -> str:
    """`event_day=2024-03-01`, `event_month=2024-03`, or `event_day=null` for events without a time."""
    if first is None:
        return f"event_{partition}=null"
    return f"event_{partition}=" + (first.isoformat() if partition == "day" else f"{first:%Y-%m}")
