"""The project's Iceberg table in its catalog: the embedded SQLite catalog (SQLAlchemy 2, no
service), AWS Glue (the catalog Athena reads) or a REST catalog, opened by pyiceberg.

pyiceberg writes the data and metadata files itself, through its own S3 FileIO (pyarrow's), which
gets the keys, region and endpoint amp-luigi's boto3 session uses. The table is created on first
use at `<prefix>_iceberg/<table>/`, beside the raw and Parquet layers.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from amp_luigi import aws, settings
from amp_luigi.errors import ConfigError
from amp_luigi.layout import iceberg_prefix, join_key
from amp_luigi.projects import Project, checked
from amp_luigi.query.iceberg_schema import partition_spec, table_schema

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

# The catalog's name: the SQL catalog keeps it with each table, so a reader must open it by this name.
CATALOG_NAME = "amp_luigi"


@dataclass(frozen=True)
class TableSettings:
    """Where a project's table is and how to reach its catalog. Secrets stay out of repr."""

    catalog: str  # sql, glue or rest
    uri: str = field(repr=False)  # sql: SQLAlchemy URL; rest: the catalog's URL
    identifier: str  # namespace.table
    location: str  # s3://bucket/<prefix>_iceberg/<table>
    partition: str  # day or month
    aws: dict[str, str] = field(repr=False)  # amp_luigi.aws.credentials()
    credential: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    warehouse: str = ""
    region: str = ""

    @property
    def namespace(self) -> str:
        return self.identifier.split(".")[0]

    @property
    def resource(self) -> str:
        """The Luigi resource that lets one commit to the table run at a time (capacity 1)."""
        return "iceberg_" + self.identifier.replace(".", "_")

    def properties(self) -> dict[str, str]:
        """pyiceberg's catalog properties: the FileIO's S3 keys and the catalog's own."""
        props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
        props.update({f"s3.{name}": value for name, value in self.aws.items()})
        if self.catalog == "sql":
            props.update(type="sql", uri=self.uri)
        elif self.catalog == "glue":
            props["type"] = "glue"
            props.update({f"glue.{name}": value for name, value in self.aws.items() if name != "endpoint"})
            if self.region:
                props["glue.region"] = self.region
        else:
            props.update(type="rest", uri=self.uri)
            props.update({name: value for name, value in self._rest().items() if value})
        return props

    def _rest(self) -> dict[str, str]:
        return {"credential": self.credential, "token": self.token, "warehouse": self.warehouse}


def table_of(project: Project) -> TableSettings:
    """Where the project's table is ([iceberg]): `<table>` for the unnamed project, `<table>_<name>`
    for a named one, at `s3://<bucket>/<prefix>_iceberg/<table>`: a folder of its own, so removing
    the files no snapshot of the table references touches no other table's."""
    checked(project.name)
    iceberg, storage = settings.iceberg(), settings.storage()
    table = "_".join(filter(None, (iceberg.value("table"), project.name.replace("-", "_"))))
    uri = iceberg.value("uri") or f"sqlite:///{settings.staging().root() / 'iceberg-catalog.db'}"
    return TableSettings(
        catalog=iceberg.value("catalog"),
        uri=uri,
        identifier=f"{iceberg.value('namespace')}.{table}",
        location=f"s3://{project.bucket}/{join_key(iceberg_prefix(project.prefix), table)}",
        partition=iceberg.value("partition"),
        aws=aws.credentials(*storage.aws_keys()),
        credential=iceberg.value("credential"),
        token=iceberg.value("token"),
        warehouse=iceberg.value("warehouse"),
        region=iceberg.value("region"),
    )


def open_catalog(table: TableSettings) -> Catalog:
    try:
        from pyiceberg.catalog import load_catalog
    except ImportError as error:
        raise ConfigError(
            "IcebergDay needs pyiceberg: pip install 'amp-luigi[iceberg]' (or set [iceberg] enabled = false)."
        ) from error
    return load_catalog(CATALOG_NAME, **table.properties())


def open_table(table: TableSettings) -> Table:
    """The table, created (with its namespace) when the catalog has none yet: a second worker that
    creates it at the same moment loads the first one's."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError

    catalog = open_catalog(table)
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace_if_not_exists(table.namespace)
    if catalog.table_exists(table.identifier):
        return catalog.load_table(table.identifier)
    schema = table_schema()
    try:
        return catalog.create_table(
            table.identifier,
            schema=schema,
            partition_spec=partition_spec(schema, table.partition),
            location=table.location,
            properties={
                "format-version": "2",
                "write.parquet.compression-codec": "zstd",
                # A commit that lost a race is redone by amp-luigi from the deduplication on, against
                # the table as the other writer left it; pyiceberg's own retry would re-apply the
                # rows as they were (and deletes the files of the lost attempt either way).
                "commit.retry.num-retries": "0",
                # Every commit adds a manifest, and a commit's deletion reads every manifest: merged
                # once there are 10, so a commit's cost stops growing with the number of upload days.
                "commit.manifest-merge.enabled": "true",
                "commit.manifest.min-count-to-merge": "10",
            },
        )
    except TableAlreadyExistsError:
        return catalog.load_table(table.identifier)
