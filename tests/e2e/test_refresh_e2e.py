"""Late data: `ExportRange --refresh-days N` re-exports the newest complete days on every run and
leaves S3 holding exactly the new export of each, without duplicates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from amp_luigi.emulator import Dataset
from amp_luigi.hours import HourRange
from tests.conftest import DAY, SECRETS, Workspace
from tests.expect import requested_days

DAYS = [DAY + dt.timedelta(days=n) for n in range(3)]
STOP = str(DAYS[-1] + dt.timedelta(days=1))


def expected_objects(emulator, day: dt.date) -> dict[str, list[dict]]:
    hours = HourRange.day(day)
    return {
        f"python_import/{day}/{name.rsplit('/', 1)[-1][:-3]}": events
        for name, events in emulator.expected_events(hours.start, hours.end)
    }


def assert_s3_holds_exactly(workspace: Workspace, emulator, day: dt.date) -> None:
    expected = expected_objects(emulator, day)
    assert sorted(workspace.keys(f"python_import/{day}/")) == sorted(expected)
    for key, events in expected.items():
        assert [json.loads(line) for line in workspace.read(key).splitlines()] == events
    verified = json.loads(workspace.read(f"python_import/_verified/{day}.json"))
    assert verified["events"] == emulator.day_event_count(day)


def test_refresh_days_re_exports_the_newest_days_and_replaces_their_objects_exactly(
    workspace: Workspace, emulator
) -> None:
    first = workspace.luigi("ExportRange", "--start", str(DAY), "--stop", STOP, "--local-scheduler")
    assert first.returncode == 0, first.stderr
    before = {day: expected_objects(emulator, day) for day in DAYS}

    # Late events: every hour now holds twice as many, so the days have more objects (25 events each).
    emulator.dataset = Dataset(dataclasses.replace(emulator.dataset.spec, events_per_hour=80))
    emulator.reset_requests()
    plain = workspace.luigi("ExportRange", "--start", str(DAY), "--stop", STOP, "--local-scheduler")
    assert plain.returncode == 0, plain.stderr
    assert emulator.requests == [], "without --refresh-days a complete day is never exported again"

    refresh = workspace.luigi(
        "ExportRange", "--start", str(DAY), "--stop", STOP, "--refresh-days", "2", "--local-scheduler"
    )
    assert refresh.returncode == 0, refresh.stderr
    assert sorted(record.start for record in emulator.requests) == ["20240302T00", "20240303T00"]
    for day in DAYS[1:]:
        assert len(expected_objects(emulator, day)) > len(before[day])
        assert_s3_holds_exactly(workspace, emulator, day)
    assert sorted(workspace.keys(f"python_import/{DAY}/")) == sorted(before[DAY]), "older days untouched"
    assert "RefreshDay(date=2024-03-02" in refresh.stderr

    # Every run refreshes again; fewer late events than before shrink the days back, strays deleted.
    emulator.dataset = Dataset(dataclasses.replace(emulator.dataset.spec, events_per_hour=40))
    emulator.reset_requests()
    again = workspace.luigi(
        "ExportRange", "--start", str(DAY), "--stop", STOP, "--refresh-days", "2", "--local-scheduler"
    )
    assert again.returncode == 0, again.stderr
    assert sorted(record.start for record in emulator.requests) == ["20240302T00", "20240303T00"]
    for day in DAYS:
        assert_s3_holds_exactly(workspace, emulator, day)
    assert not list(workspace.data_dir.glob("2024-*")), "staging is cleaned up after the refresh"
    for secret in SECRETS:
        assert secret not in refresh.stderr + again.stderr


def test_refresh_days_with_a_missing_day_exports_it_once(workspace: Workspace, emulator) -> None:
    run = workspace.luigi(
        "ExportRange", "--start", str(DAY), "--stop", STOP, "--refresh-days", "2", "--local-scheduler"
    )
    assert run.returncode == 0, run.stderr
    asked = sorted(day for record in emulator.requests for day in requested_days(record.start, record.end))
    assert asked == DAYS, "each day asked for once (several in one window)"
    for day in DAYS:
        assert_s3_holds_exactly(workspace, emulator, day)


def test_export_range_requires_refresh_only_for_the_newest_complete_days(in_process: Workspace) -> None:
    from amp_luigi.ranges import ExportRange, RefreshDay
    from amp_luigi.tasks import VerifyDay

    for day in ("2024-03-01", "2024-03-02", "2024-03-04"):  # 03-03 is missing
        in_process.s3.put_object(
            Bucket=in_process.bucket,
            Key=f"python_import/_verified/{day}.json",
            Body=json.dumps({"date": day, "objects": [], "verified_at": "2024-03-05T03:00:00+00:00"}),
        )
    now = int(dt.datetime(2024, 3, 10, 12, 0, 7, tzinfo=dt.timezone.utc).timestamp())
    wrapper = ExportRange(start=DAY, stop=dt.date(2024, 3, 5), refresh_days=3, now=now)
    required = wrapper.requires()
    assert [task for task in required if isinstance(task, VerifyDay)] == [VerifyDay(dt.date(2024, 3, 3))]
    refresh = [task for task in required if isinstance(task, RefreshDay)]
    assert [(task.date, task.as_of) for task in refresh] == [
        (dt.date(2024, 3, 2), dt.datetime(2024, 3, 10, 12, 0, 7)),
        (dt.date(2024, 3, 4), dt.datetime(2024, 3, 10, 12, 0, 7)),
    ]
    assert not refresh[0].complete(), "verified before the run started"
    assert RefreshDay(dt.date(2024, 3, 2), as_of=dt.datetime(2024, 3, 5, 3, 0)).complete()
    assert not RefreshDay(dt.date(2024, 3, 3), as_of=dt.datetime(2024, 3, 1)).complete(), "no marker"
    assert ExportRange(start=DAY, stop=dt.date(2024, 3, 5), now=now).requires() == [
        VerifyDay(dt.date(2024, 3, 3))
    ]
