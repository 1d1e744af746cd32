"""ExportRange and DayBatch: every missing day from one listing, Luigi's range traps avoided, long
ranges handed to the scheduler in batches."""

from __future__ import annotations

import datetime as dt

import pytest
from luigi.execution_summary import LuigiStatusCode
from luigi.task_register import load_task

from amp_luigi.emulator import Emulator
from amp_luigi.hours import HourRange, last_available_day
from amp_luigi.ranges import DayBatch, ExportRange, ExportWindow
from amp_luigi.records import ExportedRange, ExportIndex
from amp_luigi.tasks import ExportDay, ExtractDay, IcebergDay, ParquetDay, RefreshDay, UploadDay, VerifyDay
from tests.conftest import DAY, Workspace
from tests.test_tasks import PREFIX, build, data_keys, expected_keys, mark_verified, s3_calls

__all__ = ["s3_calls"]  # a fixture, used by name


def at(day: dt.date, hour: int) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.timezone.utc).timestamp())


def test_export_range_checks_every_day_with_one_listing(
    in_process: Workspace, emulator: Emulator, s3_calls: list
) -> None:
    days = [DAY + dt.timedelta(days=n) for n in range(30)]
    for day in days:
        if day not in (days[3], days[10], days[29]):
            mark_verified(in_process, day)
    s3_calls.clear()
    now = at(days[-1] + dt.timedelta(days=1), 12)  # every one of the 30 days is available

    wrapper = ExportRange(start=DAY, now=now)
    required = [task.date for task in wrapper.requires()]

    assert required == [days[3], days[10], days[29]]
    lists = [params for operation, _, params in s3_calls if operation == "ListObjectsV2"]
    assert [params.get("prefix") for params in lists] == [f"{PREFIX}/_verified/"]
    assert len(s3_calls) == 1, s3_calls


def test_export_range_fills_the_gaps_and_skips_verified_days(
    in_process: Workspace, emulator: Emulator, s3_calls: list
) -> None:
    days = [DAY + dt.timedelta(days=n) for n in range(4)]
    mark_verified(in_process, days[1])
    mark_verified(in_process, days[3])
    s3_calls.clear()

    assert build(ExportRange(start=DAY, stop=days[-1] + dt.timedelta(days=1))) == LuigiStatusCode.SUCCESS

    requested = {r.start[:8] for r in emulator.requests if r.start}
    assert requested == {"20240301", "20240303"}
    for day in (days[0], days[2]):
        assert data_keys(in_process, day) == expected_keys(emulator, day)
        assert in_process.keys(f"{PREFIX}/_verified/{day}.json")
    touched = [call for call in s3_calls if "2024-03-02" in str(call) or "2024-03-04" in str(call)]
    # Verified days are decided by the one listing, never checked one by one; their markers are
    # read only as the neighbours the windows are sized from (amp_luigi.windows).
    assert {(operation, path) for operation, path, _ in touched} <= {
        ("GetObject", f"/{PREFIX}/_verified/{day}.json") for day in (days[1], days[3])
    }


def test_export_range_never_includes_a_day_not_yet_available(in_process: Workspace) -> None:
    for hour, newest in [(1, dt.date(2024, 3, 8)), (2, dt.date(2024, 3, 9))]:
        now = at(dt.date(2024, 3, 10), hour)
        required = [task.date for task in ExportRange(start=DAY, now=now).requires()]
        assert required[-1] == newest == last_available_day(dt.datetime(2024, 3, 10, hour), 2), (
            f"at {hour}:00 UTC"
        )
        assert required[0] == DAY and len(required) == (newest - DAY).days + 1
        # An explicit --stop in the future is capped too.
        capped = ExportRange(start=DAY, stop=dt.date(2024, 4, 1), now=now).requires()
        assert capped[-1].date == newest


def test_export_range_reaches_back_past_luigis_100_days(in_process: Workspace) -> None:
    now = at(dt.date(2024, 3, 10), 12)
    required = ExportRange(start=dt.date(2023, 1, 1), now=now).requires()
    assert required[0].date == dt.date(2023, 1, 1)
    assert len(required) == (dt.date(2024, 3, 9) - dt.date(2023, 1, 1)).days + 1


def test_a_long_range_hands_the_scheduler_batches_and_still_requires_every_missing_day(
    in_process: Workspace,
) -> None:
    days = [DAY + dt.timedelta(days=n) for n in range(7)]
    for day in (days[1], days[4]):
        mark_verified(in_process, day)
    missing = [day for day in days if day not in (days[1], days[4])]
    wrapper = ExportRange(
        start=DAY,
        stop=days[-1] + dt.timedelta(days=1),
        batch_days=2,
        now=at(days[-1] + dt.timedelta(days=1), 12),
    )

    assert [task.date for task in wrapper.requires()] == missing, "completeness means every missing day"
    batches = wrapper.deps()
    assert all(isinstance(batch, DayBatch) for batch in batches)
    assert [[task.date for task in batch.missing()] for batch in batches] == [
        missing[0:2],
        missing[2:4],
        [missing[4]],
    ]
    assert [(batch.start, batch.stop) for batch in batches] == [
        (days[0], days[3]),
        (days[3], days[6]),
        (days[6], days[6] + dt.timedelta(days=1)),
    ]
    assert not any(batch.complete() for batch in batches)


def test_a_batch_fetches_its_days_in_windows_learning_first_then_hands_them_over(
    in_process: Workspace, emulator: Emulator
) -> None:
    days = [DAY + dt.timedelta(days=n) for n in range(5)]
    batch = DayBatch(of=VerifyDay, start=days[0], stop=days[-1] + dt.timedelta(days=1))
    waves = batch.run()

    first = next(waves)
    assert first == [ExportWindow(days[0], days[0], 24)], "nothing known: one day, learnt first"
    first[0].run()
    second = next(waves)
    assert second == [
        ExportWindow(days[1], days[2], 24),
        ExportWindow(days[3], days[4], 24),
    ], "twice the days known, two windows at once (the export cap)"
    for window in second:
        window.run()
    assert [(r.start, r.end) for r in emulator.requests] == [
        ("20240301T00", "20240301T23"),
        ("20240302T00", "20240303T23"),
        ("20240304T00", "20240305T23"),
    ]
    assert next(waves) == [VerifyDay(day) for day in days], "every day fetched: handed over"
    for day in days:
        index = ExportIndex.load(ExportDay(day).layout().export_index)
        assert index.ranges == [
            ExportedRange(HourRange.day(day).label(), f"{HourRange.day(day).label()}.zip")
        ]
        mark_verified(in_process, day)
    assert list(waves) == [] and batch.complete()
    assert not (ExportDay(DAY).layout().staging_root / ".windows").exists() or not any(
        (ExportDay(DAY).layout().staging_root / ".windows").iterdir()
    ), "the batch's window records are removed once its days are done"


def test_a_short_range_hands_the_scheduler_one_batch(in_process: Workspace) -> None:
    wrapper = ExportRange(start=DAY, stop=DAY + dt.timedelta(days=2), now=at(DAY + dt.timedelta(days=2), 12))
    assert wrapper.deps() == [DayBatch(of=VerifyDay, start=DAY, stop=DAY + dt.timedelta(days=2))]
    assert wrapper.requires() == [VerifyDay(DAY), VerifyDay(DAY + dt.timedelta(days=1))]


@pytest.mark.parametrize("project", ["", "web"])
def test_every_task_luigid_may_hand_another_host_is_rebuilt_from_its_text(project: str) -> None:
    """An assistant (a worker service on another host) builds each task it is handed from the
    scheduler's text alone: every one of ours must come back the same task, None parameters too."""
    named = {"project": project} if project else {}
    tasks = [
        ExportRange(start=DAY, **named),
        ExportRange(start=DAY, stop=DAY + dt.timedelta(days=9), refresh_days=2, **named),
        DayBatch(of=VerifyDay, start=DAY, stop=DAY + dt.timedelta(days=3), **named),
        DayBatch(of=IcebergDay, of_params={}, start=DAY, stop=DAY + dt.timedelta(days=1), **named),
        ExportWindow(DAY, DAY + dt.timedelta(days=2), **named),
        ExportWindow(DAY, DAY, hours_each=6, **named),
        RefreshDay(DAY, as_of=dt.datetime(2024, 3, 5, 2, 30), **named),
        *(
            kind(DAY, **named)
            for kind in (ExportDay, ExtractDay, UploadDay, VerifyDay, ParquetDay, IcebergDay)
        ),
    ]
    for task in tasks:
        rebuilt = load_task(task.task_module, task.get_task_family(), task.to_str_params())
        assert rebuilt == task and rebuilt.task_id == task.task_id, task
