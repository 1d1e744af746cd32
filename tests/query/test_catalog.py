"""Where the table is and how its catalog is reached, from [iceberg]; secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from amp_luigi.errors import ConfigError
from amp_luigi.projects import checked, project
from amp_luigi.query.catalog import TableSettings, table_of
from tests.conftest import Configure

STORAGE = """
[storage]
bucket = amp-bucket
prefix = amp
"""
BASE = """
[amplitude]
api_key = k
secret_key = s
[storage]
bucket = amp-bucket
prefix = amp
"""


def test_the_default_is_an_embedded_sqlite_catalog_beside_the_staging_days(
    configure: Configure, tmp_path: Path
) -> None:
    configure(BASE + f"[staging]\ndata_dir = {tmp_path / 'data'}\n")
    table = table_of(project(""))
    assert table.catalog == "sql" and table.uri == f"sqlite:///{tmp_path / 'data' / 'iceberg-catalog.db'}"
    assert (table.identifier, table.location) == ("amplitude.events", "s3://amp-bucket/amp_iceberg/events")
    assert table.resource == "iceberg_amplitude_events"
    assert table.properties()["type"] == "sql"


def test_a_named_project_has_a_table_of_its_own(
    configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMP_WEB_APP_API_KEY", "k")
    monkeypatch.setenv("AMP_WEB_APP_SECRET_KEY", "s")
    configure(
        STORAGE + "[project.web-app]\n[iceberg]\ncatalog = glue\nregion = eu-west-1\nnamespace = product\n"
    )
    table = table_of(project("web-app"))
    assert (table.identifier, table.location) == (
        "product.events_web_app",
        "s3://amp-bucket/amp/web-app_iceberg/events_web_app",
    )
    assert table.properties()["type"] == "glue" and table.properties()["glue.region"] == "eu-west-1"


def test_secrets_stay_out_of_the_repr_and_messages(
    configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMP_ICEBERG_URI", "https://catalog.example.com")
    monkeypatch.setenv("AMP_ICEBERG_CREDENTIAL", "client:very-secret")
    configure(BASE + "[iceberg]\ncatalog = rest\n")
    table = table_of(project(""))
    assert table.properties()["credential"] == "client:very-secret"
    assert "very-secret" not in repr(table)
    monkeypatch.setenv("AMP_ICEBERG_URI", "postgresql+psycopg://user:p4ssw0rd@db/iceberg")
    configure(BASE + "[iceberg]\ncatalog = rest\n")
    with pytest.raises(ConfigError) as refused:
        checked()
    assert "needs the catalog's http(s) URL" in str(refused.value) and "p4ssw0rd" not in str(refused.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("catalog = hive", r"\[iceberg\] catalog = 'hive' is not one of sql, glue, rest"),
        ("partition = week", r"\[iceberg\] partition = 'week' is not one of day, month"),
        ("table = Events", r"\[iceberg\] table = 'Events' is not a name Glue and Athena accept"),
        ("uri = not a url", r"AMP_ICEBERG_URI \(\[iceberg\] uri\) is not a URL \(not shown here\)"),
        ("memory_limit_mib = 128", r"\[iceberg\] memory_limit_mib = 128 must be at least 160"),
    ],
)
def test_bad_settings_are_named_before_any_request(configure: Configure, options: str, message: str) -> None:
    configure(BASE + f"[iceberg]\n{options}\n")
    with pytest.raises(ConfigError, match=message):
        checked()


def test_properties_carry_the_s3_keys_of_the_pipeline() -> None:
    table = TableSettings(
        "sql",
        "sqlite:///x.db",
        "amplitude.events",
        "s3://b/p",
        "day",
        {"access-key-id": "AK", "endpoint": "http://127.0.0.1:9"},
    )
    props = table.properties()
    assert props["s3.access-key-id"] == "AK" and props["s3.endpoint"] == "http://127.0.0.1:9"
    assert props["py-io-impl"] == "pyiceberg.io.pyarrow.PyArrowFileIO"


@pytest.mark.parametrize(
    ("catalog", "refused"),
    [
        ("catalog = sql", True),  # SQLite on one host's disk
        ("catalog = sql\nuri = postgresql+psycopg://db.internal/iceberg", False),  # a shared database
        ("catalog = glue", False),
    ],
)
def test_staging_in_s3_refuses_a_catalog_on_one_hosts_disk(
    configure: Configure, catalog: str, refused: bool
) -> None:
    """Several hosts (or containers) would each keep a table history of their own in SQLite."""
    configure(
        BASE + f"[staging]\nlocation = s3://amp-bucket/amp-staging\n[iceberg]\nenabled = true\n{catalog}\n"
    )
    if not refused:
        checked()
        return
    with pytest.raises(ConfigError, match=r"catalog in SQLite on this host's disk, but AMP_STAGING_LOCATION"):
        checked()
