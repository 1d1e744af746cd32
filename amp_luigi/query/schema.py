"""The Parquet table's schema, versioned: one list that the converter and the Athena DDL both read.

Each column names the Amplitude Export API field it comes from, its name in the table and its type.
The fields and types are Amplitude's documented export schema (the Export API's "Response Schema"):
times are UTC strings such as `2024-03-01 10:00:00.123000` (sometimes without the fraction) and
become TIMESTAMP WITH TIME ZONE (Parquet `isAdjustedToUTC=true`), ids become BIGINT, flags BOOLEAN,
the property objects JSON. `$insert_id` and `$schema` become `insert_id` and `amplitude_schema`:
Hive, Athena and Spark refuse `$` in a column name. Every top-level field this list does not name
(Amplitude adds fields now and then) is kept, as one JSON object, in `extra_fields`: no event field
is lost, and a later schema version can promote one to a column of its own.

Change the list only with a new SCHEMA_VERSION: the version is in every Parquet marker, so a day
converted under an older one can be found and converted again.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1

# Athena (Hive DDL) types of the Parquet columns. JSON is a string there: query it with
# json_extract_scalar(event_properties, '$.screen.name').
ATHENA_TYPES = {
    "VARCHAR": "string",
    "BIGINT": "bigint",
    "DOUBLE": "double",
    "BOOLEAN": "boolean",
    "TIMESTAMPTZ": "timestamp",
    "JSON": "string",
}


@dataclass(frozen=True)
class Column:
    field: str  # the top-level field of the Amplitude event
    name: str  # the column in the Parquet files and the Athena table
    type: str  # a DuckDB type, a key of ATHENA_TYPES

    @property
    def athena_type(self) -> str:
        return ATHENA_TYPES[self.type]


def _columns(spec: str) -> tuple[Column, ...]:
    rows = (line.split() for line in spec.strip().splitlines())
    return tuple(Column(row[0], row[1] if len(row) == 3 else row[0], row[-1]) for row in rows)


# field [column] type
COLUMNS = _columns(
    """
    $insert_id insert_id VARCHAR
    uuid VARCHAR
    event_id BIGINT
    event_type VARCHAR
    amplitude_event_type VARCHAR
    event_time TIMESTAMPTZ
    client_event_time TIMESTAMPTZ
    client_upload_time TIMESTAMPTZ
    server_upload_time TIMESTAMPTZ
    server_received_time TIMESTAMPTZ
    processed_time TIMESTAMPTZ
    user_creation_time TIMESTAMPTZ
    user_id VARCHAR
    device_id VARCHAR
    amplitude_id BIGINT
    session_id BIGINT
    app BIGINT
    $schema amplitude_schema BIGINT
    platform VARCHAR
    os_name VARCHAR
    os_version VARCHAR
    device_type VARCHAR
    device_family VARCHAR
    device_brand VARCHAR
    device_manufacturer VARCHAR
    device_model VARCHAR
    device_carrier VARCHAR
    country VARCHAR
    city VARCHAR
    region VARCHAR
    dma VARCHAR
    language VARCHAR
    location_lat DOUBLE
    location_lng DOUBLE
    ip_address VARCHAR
    library VARCHAR
    version_name VARCHAR
    start_version VARCHAR
    paying BOOLEAN
    adid VARCHAR
    idfa VARCHAR
    is_attribution_event BOOLEAN
    sample_rate DOUBLE
    data_type VARCHAR
    partner_id VARCHAR
    source_id VARCHAR
    amplitude_attribution_ids JSON
    event_properties JSON
    user_properties JSON
    group_properties JSON
    groups JSON
    global_user_properties JSON
    data JSON
    plan JSON
    """
)
# The fields COLUMNS does not name, as one JSON object (NULL when there are none).
EXTRA = Column("*", "extra_fields", "JSON")
# Hive-style partition column of the Parquet layout (`dt=YYYY-MM-DD/`), the UTC day of the export.
PARTITION = "dt"


def table_columns() -> tuple[Column, ...]:
    """Every column of the Parquet files, in file order (the partition column is in the path)."""
    return (*COLUMNS, EXTRA)
