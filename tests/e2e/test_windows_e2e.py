"""Right-sized requests through the real `luigi` command: several days in one request, a heavy day
split up front, and every guarantee of a day exported alone kept (amp_luigi.windows, DayBatch,
ExportWindow)."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import threading

import pytest

from amp_luigi.emulator import Emulator
from tests.conftest import DAY, LUIGI, SMALL, Workspace
from tests.expect import PREFIX, assert_days_exact, output, poll, requested_days

pytestmark = pytest.mark.e2e

FIVE = [DAY + dt.timedelta(days=n) for n in range(5)]
STOP = str(FIVE[-1] + dt.timedelta(days=1))


def export_range(
    workspace: Workspace, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return workspace.luigi(
        "ExportRange", "--start", str(DAY), "--stop", STOP, "--local-scheduler", *args, env=env
    )


def spans(emulator: Emulator) -> list[tuple[str, str]]:
    return [(record.start or "", record.end or "") for record in emulator.requests]


def test_a_windowed_backfill_is_byte_for_byte_the_days_exported_one_at_a_time(
    workspace: Workspace, emulator: Emulator
) -> None:
    run = export_range(workspace)
    assert run.returncode == 0, output(run)[-3000:]
    # Nothing known: the first day alone, then windows of twice the days known, two at once.
    assert spans(emulator) == [
        ("20240301T00", "20240301T23"),
        ("20240302T00", "20240303T23"),
        ("20240304T00", "20240305T23"),
    ]
    # Each window a task of its own, named for its days.
    assert re.search(r"running\s+ExportWindow\(first=2024-03-02, last=2024-03-03, ", output(run))
    windowed = {key[len(PREFIX) :]: workspace.read(key) for key in workspace.keys(PREFIX)}
    assert_days_exact(workspace, emulator, FIVE)

    alone = "one_at_a_time/"
    for day in FIVE:
        single = workspace.luigi(
            "VerifyDay", "--date", str(day), "--local-scheduler", env={"AMP_S3_PREFIX": alone.rstrip("/")}
        )
        assert single.returncode == 0, output(single)[-3000:]
    # The markers name the objects' keys: under the other prefix, the same keys otherwise.
    singles = {
        key[len(alone) :]: workspace.read(key).replace(alone.encode(), PREFIX.encode())
        for key in workspace.keys(alone)
    }
    assert sorted(windowed) == sorted(singles)
    for key, body in windowed.items():
        if "/_verified/" in f"/{key}":  # the moment of verification differs, nothing else
            assert {**json.loads(body), "verified_at": ""} == {
                **json.loads(singles[key]),
                "verified_at": "",
            }, key
        else:
            assert body == singles[key], key


@pytest.mark.parametrize("emulator", [{**SMALL, "empty_dates": frozenset({FIVE[2]})}], indirect=True)
def test_a_day_without_data_inside_a_window_completes_empty(workspace: Workspace, emulator: Emulator) -> None:
    run = export_range(workspace)
    assert run.returncode == 0, output(run)[-3000:]
    assert ("20240302T00", "20240303T23") in spans(emulator), "the empty day was inside a window"
    assert_days_exact(workspace, emulator, FIVE)
    verified = json.loads(workspace.read(f"{PREFIX}_verified/{FIVE[2]}.json"))
    assert verified["objects"] == [] and verified["events"] == 0


def test_a_heavy_day_is_split_up_front_on_the_next_run(workspace: Workspace, emulator: Emulator) -> None:
    emulator.max_range_hours_before_timeout = 6  # 12 hours time out (504), 6 hours fit
    first = workspace.luigi("VerifyDay", "--date", str(DAY), "--local-scheduler")
    assert first.returncode == 0, output(first)[-3000:]
    assert [record.status for record in emulator.requests].count(504) == 3  # the day, then both halves

    emulator.reset_requests()
    later = export_range(workspace, env=None)
    assert later.returncode == 0, output(later)[-3000:]
    assert {record.status for record in emulator.requests} == {200}, "nothing refused after the first day"
    assert all(
        (dt.datetime.strptime(end, "%Y%m%dT%H") - dt.datetime.strptime(start, "%Y%m%dT%H")).total_seconds()
        == 5 * 3600
        for start, end in spans(emulator)
    ), "every later day asked for in 6-hour ranges from the start"
    assert_days_exact(workspace, emulator, FIVE)


def test_a_window_killed_mid_download_marks_no_day_exported_and_the_rerun_is_exact(
    workspace: Workspace, emulator: Emulator
) -> None:
    gate = emulator.gate(times=1, match=lambda start, end: start.date() > DAY)  # the first window of days
    process = subprocess.Popen(
        [
            LUIGI,
            "--module",
            "amp_luigi",
            "ExportRange",
            "--start",
            str(DAY),
            "--stop",
            STOP,
            "--local-scheduler",
        ],
        cwd=workspace.path,
        env=workspace.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        poll(lambda: gate.held >= 1, "a window's request held", process)
        staging = workspace.data_dir
        assert not [
            path for path in staging.glob("*/export/parts.json") if path.parent.parent.name != str(DAY)
        ]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        gate.release()
    poll(lambda: emulator.in_flight == 0, "the held answer ended")
    exported = {path.parent.parent.name for path in workspace.data_dir.glob("*/export/parts.json")}
    emulator.reset_requests()
    again = export_range(workspace)
    assert again.returncode == 0, output(again)[-3000:]
    asked = sorted(day for start, end in spans(emulator) for day in requested_days(start, end))
    assert asked == [day for day in FIVE if str(day) not in exported], "the days not exported, asked again"
    assert_days_exact(workspace, emulator, FIVE)


def test_a_window_leaves_out_a_day_another_run_verified_meanwhile(
    workspace: Workspace, emulator: Emulator
) -> None:
    gate = emulator.gate(times=1, match=DAY)  # the first day's answer waits while the other run lands day 3
    result: dict[str, subprocess.CompletedProcess[str]] = {}
    thread = threading.Thread(target=lambda: result.setdefault("range", export_range(workspace)))
    thread.start()
    try:
        poll(lambda: gate.held >= 1, "the first day's request held")
        other = workspace.luigi(
            "VerifyDay",
            "--date",
            str(FIVE[2]),
            "--local-scheduler",
            "--lock-pid-dir",
            str(workspace.path / "other"),
        )
        assert other.returncode == 0, output(other)[-3000:]
    finally:
        gate.release()
        thread.join(timeout=180)
    assert result["range"].returncode == 0, output(result["range"])[-3000:]
    asked = [day for start, end in spans(emulator) for day in requested_days(start, end)]
    assert sorted(asked) == FIVE, "each day asked for once: the verified one by its own run alone"
    assert_days_exact(workspace, emulator, FIVE)


def test_a_window_with_a_damaged_member_is_discarded_naming_it_and_its_days_fetched_again(
    workspace: Workspace, emulator: Emulator
) -> None:
    window = ("20240302T00", "20240303T23")
    emulator.add_fault("zip_crc", match=window)
    run = export_range(workspace)
    assert run.returncode == 0, output(run)[-3000:]
    assert re.search(r"20240302T00-20240303T23.*\.json\.gz.*The days are exported one by one", output(run))
    assert spans(emulator).count(window) == 1
    assert ("20240302T00", "20240302T23") in spans(emulator) and ("20240303T00", "20240303T23") in spans(
        emulator
    )
    assert_days_exact(workspace, emulator, FIVE)


@pytest.mark.parametrize(
    ("kind", "options"), [("rate_limit", {"retry_after": 0}), ("status", {"status": 503})]
)
def test_a_window_answered_429_or_5xx_is_retried_and_lands(
    workspace: Workspace, emulator: Emulator, kind: str, options: dict[str, int]
) -> None:
    workspace.configure("amplitude", backoff_seconds=0.01, max_backoff_seconds=0.05)
    emulator.add_fault(kind, times=2, match=("20240302T00", "20240303T23"), **options)
    run = export_range(workspace)
    assert run.returncode == 0, output(run)[-3000:]
    assert spans(emulator).count(("20240302T00", "20240303T23")) == 3, "two refusals, then the answer"
    assert_days_exact(workspace, emulator, FIVE)


def test_the_plan_names_the_requests_the_run_then_makes(workspace: Workspace, emulator: Emulator) -> None:
    plan = workspace.amp_luigi("plan", "--start", str(DAY), "--stop", STOP, "--latency", "30")
    assert plan.returncode == 0, plan.stderr
    assert emulator.requests == [], "the plan asks Amplitude nothing"
    assert "5 missing" in plan.stdout and "requests to Amplitude: 3" in plan.stdout
    planned = re.findall(r"^\s+\d+\. (\d{4}-\d{2}-\d{2})(?:\.\.(\d{4}-\d{2}-\d{2}))?", plan.stdout, re.M)
    assert "unknown: grows from one day" in plan.stdout
    assert "2 wait(s) for a first byte in a row: at 30 s each, ~1.0 min" in plan.stdout

    run = export_range(workspace)
    assert run.returncode == 0, output(run)[-3000:]
    made = [(start[:8], end[:8]) for start, end in spans(emulator)]
    assert made == [(first.replace("-", ""), (last or first).replace("-", "")) for first, last in planned]


def test_the_plan_only_reads_s3_a_damaged_or_newer_neighbour_tells_nothing_and_stays(
    workspace: Workspace, emulator: Emulator
) -> None:
    damaged, newer = f"{PREFIX}_verified/2024-02-28.json", f"{PREFIX}_verified/2024-02-29.json"
    workspace.s3.put_object(Bucket=workspace.bucket, Key=damaged, Body=b'{"date": "2024-02-2')
    workspace.s3.put_object(
        Bucket=workspace.bucket, Key=newer, Body=json.dumps({"version": 99, "date": "2024-02-29"}).encode()
    )
    before = {key: workspace.read(key) for key in workspace.keys(PREFIX)}
    plan = workspace.amp_luigi("plan", "--start", str(DAY), "--stop", STOP)
    assert plan.returncode == 0, plan.stderr
    assert "unknown: grows from one day" in plan.stdout, "neither marker told a size"
    assert {key: workspace.read(key) for key in workspace.keys(PREFIX)} == before
    assert emulator.requests == []
