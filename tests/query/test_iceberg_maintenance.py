"""Expiry, compaction and unreferenced files on a real table (moto, SQLite catalog): every upload
day's rows stay in the table exactly once, and no file a snapshot needs is touched."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from amp_luigi.query.iceberg_maintenance import compact, expire, orphans, referenced
from tests.query.iceberg_lake import DAY, Lake, day_lines

DAYS = [DAY + dt.timedelta(days=n) for n in range(4)]


def backfill(lake: Lake) -> Counter[dt.date]:
    for day in DAYS:
        lake.commit(day, lake.put(day, day_lines(day)))
    return Counter(lake.rows().column("upload_date").to_pylist())


def test_compaction_rewrites_a_partitions_small_files_as_one_keeping_each_upload_days_rows(
    lake: Lake,
) -> None:
    per_day = backfill(lake)
    table = lake.table()
    by_partition = Counter(task.file.partition[0] for task in table.scan().plan_files())
    crowded = {value for value, files in by_partition.items() if files > 1}
    assert crowded, "late events leave files of several upload days in one partition"
    done = compact(table, small_bytes=1 << 30, max_bytes=1 << 30)
    assert {c.files for c in done} and all(c.files >= 2 for c in done)
    after = Counter(task.file.partition[0] for task in lake.table().scan().plan_files())
    assert all(after[value] == 1 for value in crowded)
    rows = lake.rows()
    assert Counter(rows.column("upload_date").to_pylist()) == per_day
    assert len(set(rows.column("uuid").to_pylist())) == rows.num_rows

    # A later refresh of one compacted upload day still replaces exactly its rows.
    refreshed = lake.commit(DAYS[1], lake.put(DAYS[1], day_lines(DAYS[1], hours=(5,))))
    counts = Counter(lake.rows().column("upload_date").to_pylist())
    assert counts == {**per_day, DAYS[1]: refreshed.rows}


def test_a_small_file_of_a_day_with_a_large_file_in_the_partition_is_left_alone(lake: Lake) -> None:
    backfill(lake)
    table = lake.table()
    sizes = sorted(task.file.file_size_in_bytes for task in table.scan().plan_files())
    # Every file is "small" but the largest: the upload days of the large ones are not rewritten.
    done = compact(table, small_bytes=sizes[-1], max_bytes=1 << 30)
    largest = [t.file for t in lake.table().scan().plan_files() if t.file.file_size_in_bytes == sizes[-1]]
    assert largest, "the large file is still in the table, not rewritten"
    assert all(c.rows > 0 for c in done)


def test_expiry_then_orphans_removes_only_what_no_snapshot_references(lake: Lake) -> None:
    backfill(lake)
    table = lake.table()
    compact(table, small_bytes=1 << 30, max_bytes=1 << 30)
    bucket = lake.bucket
    prefix = lake.settings.location.removeprefix(f"s3://{bucket.name}/") + "/"
    stray = prefix + "data/stray.parquet"
    bucket.client.put_object(Bucket=bucket.name, Key=stray, Body=b"x")

    def listed() -> dict[str, dt.datetime]:
        return {f"s3://{bucket.name}/{key}": at for key, at in bucket.modified(prefix).items()}

    now = dt.datetime.now(dt.timezone.utc)
    later = now + dt.timedelta(minutes=1)
    assert orphans(table, listed(), now - dt.timedelta(hours=24)) == [], "young files are kept"
    assert f"s3://{bucket.name}/{stray}" in orphans(table, listed(), later)
    snapshots = len(table.snapshots())
    assert expire(table, later) == snapshots - 1  # all but the current
    assert len(table.snapshots()) == 1
    gone = orphans(table, listed(), later)
    keep = referenced(table)
    assert gone and not set(gone) & keep
    bucket.delete([uri.removeprefix(f"s3://{bucket.name}/") for uri in gone])
    rows = lake.rows()
    assert rows.num_rows == sum(Counter(rows.column("upload_date").to_pylist()).values())
    assert len(set(rows.column("uuid").to_pylist())) == rows.num_rows
