"""commit_day against a real moto S3 server and the embedded SQLite catalog, read back through
pyiceberg (to pyarrow and DuckDB): one atomic commit per upload day, each event once, a schema that
grows, commits that take turns or retry."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pytest

from amp_luigi.errors import VerificationError
from amp_luigi.query.iceberg_maintenance import compact
from amp_luigi.query.typed import SchemaMismatchError
from tests.query.iceberg_lake import DAY, Lake, by_event_day, day_lines, events_of


def test_a_day_lands_once_partitioned_by_event_time_and_reads_in_pyarrow_and_duckdb(lake: Lake) -> None:
    lines = day_lines(DAY)
    record = lake.commit(DAY, lake.put(DAY, lines))
    events = events_of(lines)
    assert record.rows == record.source_events == len(events)
    assert len(record.event_days) > 1, "the dataset has late events, on earlier days"
    table = lake.table()
    assert [str(field.transform) for field in table.spec().fields] == ["day"]
    rows = table.scan().to_arrow()
    assert rows.num_rows == len(events)
    assert set(rows.column("upload_date").to_pylist()) == {DAY}
    assert rows.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    by_uuid = {row["uuid"]: row for row in rows.to_pylist()}
    for event in events:
        row = by_uuid[event["uuid"]]
        assert row["insert_id"] == event["$insert_id"]
        assert json.loads(row["event_properties"]) == event["event_properties"]
        assert row["event_time"].strftime("%Y-%m-%d %H:%M:%S.%f") == event["event_time"]
    con = table.scan().to_duckdb("events")
    counted = dict(
        con.execute("SELECT CAST(event_time AS DATE)::VARCHAR, count(*) FROM events GROUP BY 1").fetchall()
    )
    assert counted == by_event_day(events)
    # Partition pruning: the late events' day alone is read, and holds only them.
    late_day = min(record.event_days)
    late = table.scan(
        row_filter=f"event_time < '{dt.date.fromisoformat(late_day) + dt.timedelta(days=1)}T00:00:00+00:00'"
    )
    assert late.to_arrow().num_rows == by_event_day(events)[late_day]


def test_a_rerun_replaces_the_day_in_one_commit_and_time_travel_reads_the_one_before(lake: Lake) -> None:
    first = lake.commit(DAY, lake.put(DAY, day_lines(DAY)))
    other = DAY + dt.timedelta(days=1)
    lake.commit(other, lake.put(other, day_lines(other)))
    other_files = {
        t.file.file_path for t in lake.table().scan(row_filter=f"upload_date = '{other}'").plan_files()
    }
    more = day_lines(DAY, hours=(5, 6, 7))  # a refresh: the day grew by an hour of late-arriving events
    again = lake.commit(DAY, lake.put(DAY, more))
    rows = lake.rows()
    counts = Counter(rows.column("upload_date").to_pylist())
    assert counts[DAY] == len(events_of(more)) == again.rows
    assert counts[other] == len(events_of(day_lines(other)))
    assert len(set(rows.column("uuid").to_pylist())) == rows.num_rows
    after = {t.file.file_path for t in lake.table().scan(row_filter=f"upload_date = '{other}'").plan_files()}
    assert after == other_files, "another upload day's files are untouched"
    table = lake.table()
    ours = [s for s in table.snapshots() if s.summary and s.summary.get("amp-luigi.upload-date") == str(DAY)]
    assert ours[-1].snapshot_id == again.snapshot_id
    # One catalog commit: the snapshots it made share it, readers saw the table before or after.
    log = [entry.snapshot_id for entry in table.metadata.snapshot_log]
    assert again.previous_snapshot_id in log and again.snapshot_id == log[-1]
    old = lake.rows(again.previous_snapshot_id)
    assert Counter(old.column("upload_date").to_pylist())[DAY] == first.rows


def test_each_event_once_across_and_within_upload_days(lake: Lake) -> None:
    first = day_lines(DAY, hours=(5,))
    lake.commit(DAY, lake.put(DAY, first))
    repeated = first[5][:3]  # Amplitude sent three events again the next day
    next_day = DAY + dt.timedelta(days=1)
    lines = day_lines(next_day, hours=(1,))
    lines[1] = lines[1] + repeated + lines[1][:2]  # and two of its own twice
    record = lake.commit(next_day, lake.put(next_day, lines))
    assert record.duplicates_committed == 3
    assert record.duplicates_within_day == 2
    assert record.rows == len(lines[1]) - 5
    rows = lake.rows()
    assert rows.num_rows == len(first[5]) + record.rows
    assert len(set(rows.column("uuid").to_pylist())) == rows.num_rows
    kept = {row["uuid"]: row["upload_date"] for row in rows.to_pylist()}
    assert {kept[json.loads(line)["uuid"]] for line in repeated} == {DAY}, "the first committed copy stays"


def test_a_field_amplitude_adds_becomes_a_typed_column_and_a_wrong_type_later_fails_naming_it(
    lake: Lake,
) -> None:
    lake.commit(DAY, lake.put(DAY, day_lines(DAY, hours=(5,))))
    next_day = DAY + dt.timedelta(days=1)
    lines = day_lines(next_day, hours=(2,))
    events = [json.loads(line) for line in lines[2]]
    for n, event in enumerate(events):
        event["consent_level"] = n  # integers: BIGINT
        event["ratio"] = n + 0.5 if n % 2 else n  # a mix of integers and fractions: DOUBLE
        event["source_meta"] = {"n": n}  # objects: JSON text
        event["Odd-Name"] = "kept"  # no plain column name: stays in extra_fields
    lines[2] = [json.dumps(event) for event in events]
    record = lake.commit(next_day, lake.put(next_day, lines))
    assert sorted(record.added_columns) == ["consent_level", "ratio", "source_meta"]
    table = lake.table()
    types = {field.name: str(field.field_type) for field in table.schema().fields}
    assert (types["consent_level"], types["ratio"], types["source_meta"]) == ("long", "double", "string")
    rows = {row["uuid"]: row for row in table.scan().to_arrow().to_pylist()}
    for n, event in enumerate(events):
        row = rows[event["uuid"]]
        assert (row["consent_level"], row["ratio"]) == (n, event["ratio"])
        assert json.loads(row["source_meta"]) == {"n": n}
        assert json.loads(row["extra_fields"]) == {"Odd-Name": "kept"}
    first_rows = [row for row in rows.values() if row["upload_date"] == DAY]
    assert all(row["consent_level"] is None for row in first_rows), "older days read the new column as null"

    later = next_day + dt.timedelta(days=1)
    bad = day_lines(later, hours=(7,))
    wrong = json.loads(bad[7][4])
    wrong["consent_level"] = "high"
    bad[7][4] = json.dumps(wrong)
    objects = lake.put(later, bad)
    snapshot = lake.table().current_snapshot()
    with pytest.raises(
        SchemaMismatchError, match=r"187520_2024-03-03_7#0\.json, line 5: field 'consent_level' \(BIGINT\)"
    ):
        lake.commit(later, objects)
    assert lake.table().current_snapshot() == snapshot, "nothing of the day was committed"


def test_a_lost_commit_race_is_committed_again_not_failed(lake: Lake) -> None:
    first = lake.commit(DAY, lake.put(DAY, day_lines(DAY, hours=(5,))))
    stale = lake.table()  # loaded before another writer's commit
    other = DAY + dt.timedelta(days=1)
    lake.commit(other, lake.put(other, day_lines(other, hours=(5,))))
    opened = []

    def open_stale_first() -> Any:
        opened.append(1)
        return stale if len(opened) == 1 else lake.table()

    third = DAY + dt.timedelta(days=2)
    record = lake.commit(third, lake.put(third, day_lines(third, hours=(5,))), open_table=open_stale_first)
    assert len(opened) == 2, "the first attempt lost the race and the table was loaded again"
    counts = Counter(lake.rows().column("upload_date").to_pylist())
    assert counts == {DAY: first.rows, other: counts[other], third: record.rows} and counts[other] > 0


def test_the_commit_is_read_back_from_the_table(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    from amp_luigi.query import iceberg

    monkeypatch.setattr(iceberg, "_committed_rows", lambda table, snapshot, date: 1)
    with pytest.raises(VerificationError, match="holds 1 rows of upload day 2024-03-01"):
        lake.commit(DAY, lake.put(DAY, day_lines(DAY, hours=(5,))))


def test_a_day_without_events_commits_none_and_replaces_what_it_had(lake: Lake) -> None:
    empty = lake.commit(DAY, [])
    assert (empty.rows, empty.snapshot_id, empty.event_days) == (0, None, [])
    lake.commit(DAY, lake.put(DAY, day_lines(DAY, hours=(5,))))
    other = DAY + dt.timedelta(days=1)
    kept = lake.commit(other, lake.put(other, day_lines(other, hours=(5,))))
    emptied = lake.commit(DAY, [])  # a refresh found the day empty after all
    assert emptied.rows == 0 and emptied.snapshot_id is not None
    assert Counter(lake.rows().column("upload_date").to_pylist()) == {other: kept.rows}


def test_a_month_partitioned_table_puts_late_events_in_their_month(lake: Lake) -> None:
    lake.settings = replace(lake.settings, partition="month")
    lines = day_lines(DAY)  # 2024-03-01: its late events happened in February
    record = lake.commit(DAY, lake.put(DAY, lines))
    table = lake.table()
    assert [str(field.transform) for field in table.spec().fields] == ["month"]
    assert record.files == 2, "one file for February's late events, one for March"
    paths = sorted(task.file.file_path.split("/data/")[1].split("/")[0] for task in table.scan().plan_files())
    assert paths == ["event_month=2024-02", "event_month=2024-03"]
    february = table.scan(row_filter="event_time < '2024-03-01T00:00:00+00:00'").to_arrow()
    assert february.num_rows == sum(n for day, n in by_event_day(events_of(lines)).items() if day < "2024-03")
    next_day = DAY + dt.timedelta(days=1)
    lake.commit(next_day, lake.put(next_day, day_lines(next_day)))
    compact(lake.table(), small_bytes=1 << 30, max_bytes=1 << 30)
    rows = lake.rows()
    assert Counter(rows.column("upload_date").to_pylist())[DAY] == record.rows
    assert len(set(rows.column("uuid").to_pylist())) == rows.num_rows
