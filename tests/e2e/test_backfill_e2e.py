"""Backfill through the real `luigi` command: parallel days within Amplitude's concurrency limit, and
the exit code and execution summary cron sees when a day fails."""

from __future__ import annotations

import datetime as dt

from tests.conftest import DAY, Workspace
from tests.expect import run_holding

SIX_DAYS = [DAY + dt.timedelta(days=n) for n in range(6)]


def after_the_first_day(start: dt.datetime, end: dt.datetime) -> bool:
    """The requests after the first day's, which goes alone: nothing is known until it is answered."""
    return start.date() > DAY


def test_more_workers_never_exceed_the_amplitude_export_resource(workspace: Workspace, emulator) -> None:
    workspace.configure(
        "amplitude", max_window_days=1
    )  # a request a day, so there are several to run at once
    gate = emulator.gate(times=2, match=after_the_first_day)  # held until both are in flight
    stop = SIX_DAYS[-1] + dt.timedelta(days=1)
    run = run_holding(
        gate,
        2,
        lambda: workspace.luigi(
            "ExportRange", "--start", str(DAY), "--stop", str(stop), "--workers", "4", "--local-scheduler"
        ),
    )
    assert run.returncode == 0, run.stderr
    assert gate.held == 2, "two days' exports were in flight at once"
    days = sorted(record.start for record in emulator.requests)
    assert days == [f"{day:%Y%m%d}T00" for day in SIX_DAYS]
    assert {record.status for record in emulator.requests} == {200}  # no 429
    # luigi.cfg: [resources] amplitude_export = 2. Two at once proves the days did run in parallel.
    assert emulator.peak_in_flight == 2
    assert sorted(workspace.keys("python_import/_verified/")) == [
        f"python_import/_verified/{day}.json" for day in SIX_DAYS
    ]


def test_a_raised_cap_lets_more_exports_run_at_once(workspace: Workspace, emulator) -> None:
    workspace.configure("resources", amplitude_export=4)
    workspace.configure("amplitude", max_window_days=1)
    gate = emulator.gate(times=4, match=after_the_first_day)
    stop = SIX_DAYS[-1] + dt.timedelta(days=1)
    run = run_holding(
        gate,
        4,
        lambda: workspace.luigi(
            "ExportRange", "--start", str(DAY), "--stop", str(stop), "--workers", "6", "--local-scheduler"
        ),
    )
    assert run.returncode == 0, run.stderr
    assert gate.held == 4
    assert emulator.peak_in_flight == 4


def test_a_failed_day_exits_non_zero_naming_it_and_the_others_still_land(
    workspace: Workspace, emulator
) -> None:
    bad = DAY + dt.timedelta(days=1)
    emulator.add_fault("status", times=None, match=bad, status=500)
    stop = DAY + dt.timedelta(days=3)
    run = workspace.luigi("ExportRange", "--start", str(DAY), "--stop", str(stop), "--local-scheduler")
    assert run.returncode == 30, run.stderr  # [retcode] task_failed
    summary = run.stderr[run.stderr.index("===== Luigi Execution Summary =====") :]
    assert "* 1 failed:\n    - 1 ExportDay(date=2024-03-02)" in summary
    assert "had failed dependencies" in summary and "VerifyDay(date=2024-03-02)" in summary
    assert "This progress looks :( because there were failed tasks" in summary
    assert sorted(workspace.keys("python_import/_verified/")) == [
        "python_import/_verified/2024-03-01.json",
        "python_import/_verified/2024-03-03.json",
    ]

    emulator.faults.clear()
    emulator.reset_requests()
    again = workspace.luigi("ExportRange", "--start", str(DAY), "--stop", str(stop), "--local-scheduler")
    assert again.returncode == 0, again.stderr
    assert [record.start for record in emulator.requests] == ["20240302T00"]


def test_a_long_range_goes_to_the_scheduler_in_batches_and_a_failed_day_blocks_only_its_own(
    workspace: Workspace, emulator
) -> None:
    """Over more than `batch_days` missing days ExportRange yields batches (dynamic dependencies), so
    Luigi's pending set stays small; a failed day in the first batch leaves the later ones to land."""
    days = [DAY + dt.timedelta(days=n) for n in range(5)]
    emulator.add_fault("status", times=None, match=days[0], status=500)
    stop = str(days[-1] + dt.timedelta(days=1))
    args = ("ExportRange", "--start", str(DAY), "--stop", stop, "--batch-days", "2", "--local-scheduler")
    run = workspace.luigi(*args, "--workers", "2")
    assert run.returncode == 30, run.stderr  # [retcode] task_failed
    assert "DayBatch(" in run.stderr, "the days went to the scheduler in batches"
    assert sorted(workspace.keys("python_import/_verified/")) == [
        f"python_import/_verified/{day}.json" for day in days[1:]
    ]

    emulator.faults.clear()
    emulator.reset_requests()
    again = workspace.luigi(*args)
    assert again.returncode == 0, again.stderr
    assert [record.start for record in emulator.requests] == [f"{days[0]:%Y%m%d}T00"]
    assert len(workspace.keys("python_import/_verified/")) == 5
