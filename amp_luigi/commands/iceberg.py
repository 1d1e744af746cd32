"""`python -m amp_luigi iceberg query|maintain`: how to read the Iceberg table, and its upkeep.

`query` prints, per project, how to query the table: from Athena (the Glue catalog), from DuckDB
through pyiceberg (any catalog; DuckDB's own iceberg extension is downloaded at run time, pyiceberg
is already installed), and the current metadata file for tools that read one directly.

`maintain` expires snapshots older than --expire-days (time travel reaches back that far), compacts
each event-time partition's small files, then removes the files under the table's location that no
snapshot references and that are older than --orphan-hours (those of an expired snapshot, of a
compaction's replaced files once expired, of a commit a killed run never finished). Run it daily or
weekly from cron, like the pipeline; it is safe beside a running IcebergDay (see
amp_luigi.query.iceberg_maintenance).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, TextIO

from amp_luigi.projects import Project, each
from amp_luigi.query.catalog import CATALOG_NAME, TableSettings, table_of

if TYPE_CHECKING:
    from pyiceberg.table import Table

_MIB = 1024 * 1024


def query(project: str | None, out: TextIO) -> int:
    for settings in each(project):
        table = table_of(settings)
        print(f"# {settings.where()}: table {table.identifier} at {table.location}/", file=out)
        print(_athena(table), file=out)
        print(_duckdb(table), file=out)
        metadata = _metadata_location(table)
        if metadata:
            print(f"-- Its current metadata file (for tools that read one): {metadata}\n", file=out)
    return 0


def _athena(table: TableSettings) -> str:
    namespace, name = table.identifier.split(".")
    sql = (
        f'SELECT event_type, count(*) AS events\nFROM "{namespace}"."{name}"\n'
        "WHERE event_time >= TIMESTAMP '2024-03-01 00:00:00 UTC'\n"
        "  AND event_time < TIMESTAMP '2024-03-02 00:00:00 UTC'  -- the events that happened on March 1st\n"
        "GROUP BY 1 ORDER BY 2 DESC;"
    )
    if table.catalog != "glue":
        return (
            "-- Athena reads Iceberg tables from the AWS Glue Data Catalog: set [iceberg] catalog = glue "
            "to query this one there, e.g.\n" + "\n".join(f"-- {line}" for line in sql.splitlines()) + "\n"
        )
    return f"-- Athena (the Glue Data Catalog, database {namespace}):\n{sql}\n"


def _duckdb(table: TableSettings) -> str:
    uri = table.uri if table.catalog == "sql" and table.uri.startswith("sqlite:") else "<[iceberg] uri>"
    catalog = {
        "sql": f'type="sql", uri="{uri}"',
        "glue": 'type="glue"',
        "rest": 'type="rest", uri="<[iceberg] uri>"',
    }
    endpoint = table.aws.get("endpoint")
    s3 = f', **{{"s3.endpoint": "{endpoint}"}}' if endpoint else ""
    return (
        "# DuckDB, through pyiceberg (installed with amp-luigi[iceberg]; S3 keys from the AWS chain or s3.* properties):\n"
        "from pyiceberg.catalog import load_catalog\n"
        f'table = load_catalog("{CATALOG_NAME}", {catalog[table.catalog]}{s3}).load_table("{table.identifier}")\n'
        "scan = table.scan(row_filter=\"event_time >= '2024-03-01T00:00:00+00:00' AND event_time < '2024-03-02T00:00:00+00:00'\")\n"
        'con = scan.to_duckdb("events")\n'
        'print(con.sql("SELECT event_type, count(*) AS events FROM events GROUP BY ALL ORDER BY 2 DESC"))\n'
    )


def _metadata_location(table: TableSettings) -> str | None:
    from amp_luigi.query.catalog import open_catalog

    catalog = open_catalog(table)
    if not catalog.table_exists(table.identifier):
        return None
    return str(catalog.load_table(table.identifier).metadata_location)


def maintain(
    project: str | None,
    out: TextIO,
    *,
    expire_days: float,
    orphan_hours: float,
    small_file_mib: int,
    max_compaction_mib: int,
    dry_run: bool,
) -> int:
    from amp_luigi.query.catalog import open_catalog
    from amp_luigi.query.iceberg_maintenance import compact, expire, orphans

    now = dt.datetime.now(dt.timezone.utc)
    for settings in each(project):
        table_settings = table_of(settings)
        catalog = open_catalog(table_settings)
        if not catalog.table_exists(table_settings.identifier):
            print(f"{table_settings.identifier}: no table yet (IcebergDay creates it)", file=out)
            continue
        table = catalog.load_table(table_settings.identifier)
        files_before = _data_files(table)
        if dry_run:
            expired, compacted = 0, []
        else:
            expired = expire(table, now - dt.timedelta(days=expire_days))
            compacted = compact(table, small_file_mib * _MIB, max_compaction_mib * _MIB)
        removed = orphans(table, _listed(settings, table_settings), now - dt.timedelta(hours=orphan_hours))
        if removed and not dry_run:
            bucket = settings.open_bucket()
            bucket.delete([uri.removeprefix(f"s3://{bucket.name}/") for uri in removed])
        verb = "would remove" if dry_run else "removed"
        print(
            f"{table_settings.identifier}: {expired} snapshot(s) expired (older than {expire_days:g} days), "
            f"{sum(c.files for c in compacted)} small file(s) in {len(compacted)} partition(s) compacted, "
            f"{verb} {len(removed)} file(s) no snapshot references (older than {orphan_hours:g} hours); "
            f"data files {files_before} -> {_data_files(table)}",
            file=out,
        )
        for compaction in compacted:
            print(
                f"  {compaction.partition}: {compaction.files} files -> 1 ({compaction.rows} rows)", file=out
            )
        for uri in removed:
            print(f"  {verb} {uri}", file=out)
    return 0


def _data_files(table: Table) -> int:
    return len(list(table.scan().plan_files())) if table.current_snapshot() else 0


def _listed(settings: Project, table: TableSettings) -> dict[str, dt.datetime]:
    """The objects under the table's location, as URIs with the time each was written."""
    bucket = settings.open_bucket()
    prefix = table.location.removeprefix(f"s3://{bucket.name}/").rstrip("/") + "/"
    return {f"s3://{bucket.name}/{key}": written for key, written in bucket.modified(prefix).items()}
