"""IcebergDay through the real `luigi` command, moto and the embedded SQLite catalog (Glue on moto
for the production path), read back as users read the table: through pyiceberg, to pyarrow and
DuckDB. Each test checks the table itself against the raw layer, not amp-luigi's markers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
from pyiceberg.catalog import load_catalog

from amp_luigi.emulator import Dataset, Emulator
from amp_luigi.query.catalog import CATALOG_NAME
from tests.conftest import AWS_SECRET, DAY, LUIGI, SECRETS, Workspace
from tests.expect import poll

DAYS = [DAY + dt.timedelta(days=n) for n in range(3)]
STOP = str(DAYS[-1] + dt.timedelta(days=1))
MARKER = "python_import/_iceberg/{}.json"
LOCATION = "python_import_iceberg/events/"


def s3_properties(workspace: Workspace) -> dict[str, str]:
    return {
        "s3.endpoint": workspace.env["AWS_ENDPOINT_URL_S3"],
        "s3.access-key-id": workspace.env["ACCESS_KEY"],
        "s3.secret-access-key": AWS_SECRET,
        "s3.region": "us-east-1",
    }


def table(workspace: Workspace) -> Any:
    """The table as a user opens it: pyiceberg, the catalog IcebergDay made in the staging directory."""
    uri = f"sqlite:///{workspace.data_dir / 'iceberg-catalog.db'}"
    return load_catalog(CATALOG_NAME, type="sql", uri=uri, **s3_properties(workspace)).load_table(
        "amplitude.events"
    )


def raw_events(workspace: Workspace, day: dt.date) -> list[dict[str, Any]]:
    """Upload day `day`'s events as the raw layer holds them."""
    return [
        json.loads(line)
        for key in workspace.keys(f"python_import/{day}/")
        for line in workspace.read(key).splitlines()
    ]


def assert_table_matches_raw(workspace: Workspace, days: list[dt.date]) -> Any:
    """Rows per event-time day equal the raw layer's events by event_time day; each uuid once."""
    rows = table(workspace).scan(selected_fields=("uuid", "event_time", "upload_date")).to_arrow()
    events = [event for day in days for event in raw_events(workspace, day)]
    by_day = Counter(stamp.date().isoformat() for stamp in rows.column("event_time").to_pylist())
    assert by_day == Counter(event["event_time"][:10] for event in events)
    assert len(set(rows.column("uuid").to_pylist())) == rows.num_rows == len(events)
    uploads = Counter(rows.column("upload_date").to_pylist())
    assert uploads == {day: len(raw_events(workspace, day)) for day in days}
    return rows


def luigi_ok(workspace: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    run = workspace.luigi(*args, "--local-scheduler")
    assert run.returncode == 0, run.stdout + run.stderr
    for secret in SECRETS:
        assert secret not in run.stdout + run.stderr
    return run


@pytest.fixture
def lake(workspace: Workspace) -> Workspace:
    workspace.configure("iceberg", enabled=True)
    return workspace


def test_a_backfill_then_a_refresh_replaces_one_upload_day_and_time_travel_reads_the_old_one(
    lake: Workspace, emulator: Emulator
) -> None:
    luigi_ok(lake, "ExportRange", "--start", str(DAY), "--stop", STOP)
    rows = assert_table_matches_raw(lake, DAYS)
    assert len({stamp.date() for stamp in rows.column("event_time").to_pylist()}) > len(DAYS), "late events"
    before = table(lake)
    files = {
        day: {t.file.file_path for t in before.scan(row_filter=f"upload_date = '{day}'").plan_files()}
        for day in DAYS
    }
    middle = DAYS[1]
    old_marker = json.loads(lake.read(MARKER.format(middle)))
    old_rows = old_marker["rows"]

    # Late events: the middle day grows; RefreshDay exports it again and commits it anew.
    emulator.dataset = Dataset(dataclasses.replace(emulator.dataset.spec, events_per_hour=80))
    as_of = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%S")
    luigi_ok(lake, "RefreshDay", "--date", str(middle), "--as-of", as_of)
    marker = json.loads(lake.read(MARKER.format(middle)))
    assert marker["rows"] == len(raw_events(lake, middle)) > old_rows
    assert_table_matches_raw(lake, DAYS)
    after = table(lake)
    for day in (DAYS[0], DAYS[2]):
        assert {
            t.file.file_path for t in after.scan(row_filter=f"upload_date = '{day}'").plan_files()
        } == files[day]
    old = after.scan(snapshot_id=marker["previous_snapshot_id"], row_filter=f"upload_date = '{middle}'")
    assert old.to_arrow().num_rows == old_rows, "the snapshot before the refresh is still readable"

    # DuckDB, through pyiceberg, gets the day's events by event time.
    con = after.scan().to_duckdb("events")
    day_rows = con.execute(
        f"SELECT count(*) FROM events WHERE CAST(event_time AS DATE) = DATE '{middle}'"
    ).fetchone()[0]
    events = [e for day in DAYS for e in raw_events(lake, day)]
    assert day_rows == sum(1 for e in events if e["event_time"].startswith(str(middle)))


def test_parquet_and_iceberg_together_fill_both_layers(lake: Workspace) -> None:
    lake.configure("parquet", enabled=True)
    run = luigi_ok(lake, "ExportRange", "--start", str(DAY), "--stop", str(DAY + dt.timedelta(days=1)))
    assert "IcebergDay(date=2024-03-01)" in run.stderr and "ParquetDay(date=2024-03-01)" in run.stderr
    assert lake.keys("python_import/_parquet/") and lake.keys("python_import/_iceberg/")
    assert_table_matches_raw(lake, [DAY])
    status = lake.amp_luigi("status", "--start", str(DAY), "--stop", str(DAY + dt.timedelta(days=2)))
    assert status.returncode == 0, status.stderr
    assert " pq ice" in status.stdout, status.stdout
    assert "Parquet: 1 of 1 verified days" in status.stdout
    assert "Iceberg: 1 of 1 verified days" in status.stdout


def start_killable(workspace: Workspace, tmp_path: Path, pause: str, day: dt.date) -> subprocess.Popen[str]:
    signals = tmp_path / "signals"
    signals.mkdir(exist_ok=True)
    env = {**workspace.env, "AMP_TEST_SIGNAL_DIR": str(signals), "AMP_TEST_PAUSE": pause}
    log = (tmp_path / "killed-run.log").open("w")
    args = [LUIGI, "--module", "tests.luigi_hooks", "IcebergDay", "--date", str(day), "--local-scheduler"]
    return subprocess.Popen(
        args, cwd=workspace.path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.parametrize("pause", ["iceberg:commit:1", "iceberg:committed:1"])
def test_a_run_killed_before_or_after_the_commit_leaves_each_day_once(
    lake: Workspace, tmp_path: Path, pause: str
) -> None:
    luigi_ok(lake, "IcebergDay", "--date", str(DAYS[0]))
    process = start_killable(lake, tmp_path, pause, DAYS[1])
    signal_file = tmp_path / "signals" / pause.rsplit(":", 1)[0].replace(":", "_")
    poll(lambda: signal_file.exists() and signal_file.read_text(), f"the run reached {pause}", process)
    os.kill(int(signal_file.read_text()), signal.SIGKILL)  # the worker process, mid-commit
    process.kill()
    process.wait()
    assert MARKER.format(DAYS[1]) not in lake.keys("python_import/_iceberg/")
    uploads = Counter(
        table(lake).scan(selected_fields=("upload_date",)).to_arrow().column("upload_date").to_pylist()
    )
    committed = pause == "iceberg:committed:1"
    assert (DAYS[1] in uploads) == committed, "the table holds the day exactly when the catalog committed it"

    luigi_ok(lake, "IcebergDay", "--date", str(DAYS[1]))
    assert_table_matches_raw(lake, DAYS[:2])
    maintain = lake.amp_luigi("iceberg", "maintain", "--orphan-hours", "0", "--expire-days", "0")
    assert maintain.returncode == 0, maintain.stderr
    if not committed:  # the killed attempt's data files: in S3, in no snapshot, removed by maintain
        assert re.search(r"removed [1-9]\d* file\(s\) no snapshot references", maintain.stdout), (
            maintain.stdout
        )
    assert_table_matches_raw(lake, DAYS[:2])


def test_two_workers_and_two_schedulers_committing_at_once_leave_each_day_once(lake: Workspace) -> None:
    luigi_ok(lake, "ExportRange", "--start", str(DAY), "--stop", STOP, "--of", "VerifyDay")
    # Two workers of one scheduler: the table's resource lets one commit run at a time.
    luigi_ok(lake, "IcebergDay", "--date", str(DAYS[0]), "--workers", "2")
    runs = [
        subprocess.Popen(
            [
                LUIGI,
                "--module",
                "amp_luigi",
                "RangeDaily",
                "--of",
                "IcebergDay",
                "--start",
                str(day),
                "--stop",
                str(day + dt.timedelta(days=1)),
                "--local-scheduler",
                "--workers",
                "2",
            ],
            cwd=lake.path,
            env=lake.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for day in DAYS[1:]
    ]  # two schedulers: nothing serialises them but the catalog's optimistic commit
    for run in runs:
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output
    assert_table_matches_raw(lake, DAYS)
    snapshots = table(lake).snapshots()
    assert all(s.parent_snapshot_id == p.snapshot_id for p, s in itertools.pairwise(snapshots))


def test_maintenance_expires_compacts_and_removes_unreferenced_files_keeping_every_row(
    lake: Workspace,
) -> None:
    luigi_ok(lake, "ExportRange", "--start", str(DAY), "--stop", STOP)
    luigi_ok(
        lake,
        "RefreshDay",
        "--date",
        str(DAYS[2]),
        "--as-of",
        dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%S"),
    )
    before = table(lake)
    files_before = len(list(before.scan().plan_files()))
    snapshots_before = len(before.snapshots())
    planted = f"{LOCATION}data/stray.parquet"
    lake.s3.put_object(Bucket=lake.bucket, Key=planted, Body=b"not referenced")

    kept = lake.amp_luigi("iceberg", "maintain", "--expire-days", "0")  # default grace: 24 hours
    assert kept.returncode == 0, kept.stderr
    assert planted in lake.keys(LOCATION), "a new unreferenced file may belong to a commit under way"
    after = table(lake)
    assert len(after.snapshots()) < snapshots_before
    assert len(list(after.scan().plan_files())) < files_before, kept.stdout
    assert "files -> 1" in kept.stdout
    assert_table_matches_raw(lake, DAYS)

    dry = lake.amp_luigi("iceberg", "maintain", "--dry-run", "--orphan-hours", "0")
    assert dry.returncode == 0, dry.stderr
    assert f"would remove s3://{lake.bucket}/{planted}" in dry.stdout
    assert planted in lake.keys(LOCATION), "a dry run removes nothing"
    removed = lake.amp_luigi("iceberg", "maintain", "--expire-days", "0", "--orphan-hours", "0")
    assert removed.returncode == 0, removed.stderr
    assert planted not in lake.keys(LOCATION)
    from amp_luigi.query.iceberg_maintenance import referenced

    current = table(lake)
    in_s3 = {f"s3://{lake.bucket}/{key}" for key in lake.keys(LOCATION)}
    assert in_s3 <= referenced(current) | {current.metadata_location}
    assert_table_matches_raw(lake, DAYS)


def test_the_query_hints_run_as_printed(lake: Workspace) -> None:
    luigi_ok(lake, "IcebergDay", "--date", str(DAY))
    hints = lake.amp_luigi("iceberg", "query")
    assert hints.returncode == 0, hints.stderr
    assert "[iceberg] catalog = glue" in hints.stdout  # Athena needs the Glue catalog
    snippet = hints.stdout.split("# DuckDB, through pyiceberg", 1)[1].split("\n", 1)[1].split("\n\n")[0]
    env = {**lake.env, "AWS_ACCESS_KEY_ID": lake.env["ACCESS_KEY"], "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    env["AWS_REGION"] = "us-east-1"
    run = subprocess.run(
        [sys.executable, "-c", snippet], cwd=lake.path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    on_day = sum(1 for e in raw_events(lake, DAY) if e["event_time"].startswith(str(DAY)))
    counts = [int(n) for n in re.findall(r"│\s*(\d+)\s*│$", run.stdout, re.MULTILINE)]
    assert sum(counts) == on_day, run.stdout
    for secret in SECRETS:
        assert secret not in hints.stdout


def test_the_glue_catalog_athena_reads(lake: Workspace, moto_endpoint: str) -> None:
    lake.configure("iceberg", catalog="glue", region="us-east-1")
    glue_env = {
        "AWS_ENDPOINT_URL_GLUE": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    lake.env.update(glue_env)
    luigi_ok(lake, "IcebergDay", "--date", str(DAY))
    glue = boto3.client(
        "glue",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    found = glue.get_table(DatabaseName="amplitude", Name="events")["Table"]
    assert found["Parameters"]["table_type"].upper() == "ICEBERG"
    assert found["Parameters"]["metadata_location"].startswith(f"s3://{lake.bucket}/{LOCATION}metadata/")
    catalog = load_catalog(
        "user",
        type="glue",
        **{
            "glue.endpoint": moto_endpoint,
            "glue.region": "us-east-1",
            "glue.access-key-id": "testing",
            "glue.secret-access-key": "testing",
        },
        **s3_properties(lake),
    )
    rows = catalog.load_table("amplitude.events").scan().to_arrow()
    assert rows.num_rows == len(raw_events(lake, DAY))
    hints = lake.amp_luigi("iceberg", "query")
    assert 'FROM "amplitude"."events"' in hints.stdout and "Athena (the Glue Data Catalog" in hints.stdout
