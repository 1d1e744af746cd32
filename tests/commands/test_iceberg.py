"""`iceberg query`: how to read the table for each catalog, with no secret in it."""

from __future__ import annotations

import pytest

from amp_luigi.commands import iceberg
from amp_luigi.query.catalog import CATALOG_NAME, TableSettings

AWS = {
    "access-key-id": "AKIA-SECRET-ID",
    "secret-access-key": "very-secret",
    "endpoint": "http://127.0.0.1:9000",
}


def settings(catalog: str, uri: str = "") -> TableSettings:
    return TableSettings(
        catalog, uri, "amplitude.events", "s3://b/p_iceberg/events", "day", AWS, credential="id:cred-secret"
    )


def test_athena_sql_names_the_glue_table_and_the_event_time_partition() -> None:
    sql = iceberg._athena(settings("glue"))
    assert 'FROM "amplitude"."events"' in sql and "WHERE event_time >= TIMESTAMP" in sql
    assert "\nSELECT event_type" in sql, "runnable as printed, not commented out"


@pytest.mark.parametrize("catalog", ["sql", "rest"])
def test_without_glue_athena_is_pointed_at_the_setting(catalog: str) -> None:
    assert "set [iceberg] catalog = glue" in iceberg._athena(settings(catalog, "https://x"))


@pytest.mark.parametrize(
    ("catalog", "uri", "shown"),
    [
        ("sql", "sqlite:////data/iceberg-catalog.db", 'uri="sqlite:////data/iceberg-catalog.db"'),
        ("sql", "postgresql://user:pw@db/iceberg", 'uri="<[iceberg] uri>"'),  # may hold a password
        ("glue", "", 'type="glue"'),
        ("rest", "https://user:pw@catalog", 'uri="<[iceberg] uri>"'),
    ],
)
def test_the_duckdb_snippet_opens_the_catalog_by_its_name_and_shows_no_secret(
    catalog: str, uri: str, shown: str
) -> None:
    snippet = iceberg._duckdb(settings(catalog, uri))
    assert f'load_catalog("{CATALOG_NAME}", ' in snippet and shown in snippet
    assert '"s3.endpoint": "http://127.0.0.1:9000"' in snippet
    for secret in ("pw", "very-secret", "AKIA-SECRET-ID", "cred-secret"):
        assert secret not in snippet
    compile(snippet, "snippet", "exec")
