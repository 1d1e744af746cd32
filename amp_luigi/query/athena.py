"""`python -m amp_luigi athena`: CREATE EXTERNAL TABLE statements for both layers, from the schema.

Both tables use partition projection on `dt` (a date from [amplitude] first_date to NOW), so Athena
needs no `MSCK REPAIR` or crawler and reads only the partitions a query names. Their columns come
from schema.COLUMNS, the list the converter writes, so the DDL cannot drift from the files.
The raw NDJSON table reads `<prefix>/<YYYY-MM-DD>/` with the OpenX JSON SerDe (which maps
`$insert_id` and `$schema` to legal column names); the markers (`_verified/` ...) are outside both
templates, so no table reads them.
"""

from __future__ import annotations

import datetime as dt

from amp_luigi.errors import ConfigError
from amp_luigi.layout import join_key, parquet_location_template, raw_location_template
from amp_luigi.query.schema import COLUMNS, PARTITION, SCHEMA_VERSION, Column, table_columns


def _columns(columns: tuple[Column, ...]) -> str:
    return ",\n".join(f"  `{column.name}` {column.athena_type}" for column in columns)


def _projection(first_date: dt.date, template: str) -> str:
    return (
        "  'projection.enabled' = 'true',\n"
        f"  'projection.{PARTITION}.type' = 'date',\n"
        f"  'projection.{PARTITION}.format' = 'yyyy-MM-dd',\n"
        f"  'projection.{PARTITION}.range' = '{first_date.isoformat()},NOW',\n"
        f"  'projection.{PARTITION}.interval' = '1',\n"
        f"  'projection.{PARTITION}.interval.unit' = 'DAYS',\n"
        f"  'storage.location.template' = '{template}'"
    )


def parquet_table(bucket: str, parquet_prefix: str, first_date: dt.date, table: str) -> str:
    location = f"s3://{bucket}/{join_key(parquet_prefix)}/"
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {table} (\n{_columns(table_columns())}\n)\n"
        f"COMMENT 'amp-luigi Parquet schema version {SCHEMA_VERSION}'\n"
        f"PARTITIONED BY (`{PARTITION}` string)\n"
        "STORED AS PARQUET\n"
        f"LOCATION '{location}'\n"
        "TBLPROPERTIES (\n"
        f"{_projection(first_date, f's3://{bucket}/' + parquet_location_template(parquet_prefix))}\n);"
    )


def raw_table(bucket: str, prefix: str, first_date: dt.date, table: str) -> str:
    mappings = ",\n".join(
        f"  'mapping.{column.name}' = '{column.field}'" for column in COLUMNS if column.name != column.field
    )
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {table} (\n{_columns(COLUMNS)}\n)\n"
        f"PARTITIONED BY (`{PARTITION}` string)\n"
        "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\n"
        # case.insensitive=false: Amplitude's keys are lower case already; mapping keeps `$`.
        f"WITH SERDEPROPERTIES (\n  'case.insensitive' = 'false',\n{mappings}\n)\n"
        f"LOCATION 's3://{bucket}/{join_key(prefix)}/'\n"
        "TBLPROPERTIES (\n"
        f"{_projection(first_date, f's3://{bucket}/' + raw_location_template(prefix))}\n);"
    )


def statements(database: str, table: str, project: str | None = None) -> str:
    """Both statements for each configured project (`project` alone when given), with the bucket and
    prefixes read like the `luigi` command does; a named project's tables are `<table>_<name>` (a `-`
    in the name becomes `_`: Athena's names are letters, digits and underscores)."""
    from amp_luigi import projects

    chosen = projects.each(project)
    stems = {each.name: f"{table}_{each.name.replace('-', '_')}" if each.name else table for each in chosen}
    owners: dict[str, str] = {}
    for each, stem in stems.items():
        for name in (stem, f"{stem}_raw"):
            other = owners.setdefault(name, each)
            if other != each:
                raise ConfigError(
                    f"Projects {other} and {each} would both get the Athena table {name}: print them one at a "
                    "time (--project) with different --table names."
                )
    parts = []
    for settings in chosen:
        bucket, first, stem = settings.bucket, settings.first_date, stems[settings.name]
        about = f" of {settings.label()}" if settings.name else ""
        parts.append(
            f"-- query-ready Parquet{about}, one partition per UTC day (ParquetDay)\n"
            f"{parquet_table(bucket, settings.parquet_prefix, first, f'`{database}`.`{stem}`')}\n\n"
            f"-- the raw NDJSON archive{about} as amp-luigi landed it (VerifyDay)\n"
            f"{raw_table(bucket, settings.prefix, first, f'`{database}`.`{stem}_raw`')}\n"
        )
    return "\n".join(parts)
