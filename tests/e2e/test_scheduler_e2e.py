"""Against a real `luigid`: progress and status in its JSON API, no secrets there, overlapping runs.

Each test starts its own scheduler (free port, state file and logs in tmp) and drives the real `luigi`
command with `--scheduler-host/--scheduler-port`, as a deployment with a central scheduler does.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from amp_luigi.testing.local import Luigid, clean_environment
from tests.conftest import DAY, LUIGI, REPO, SECRETS, Workspace
from tests.expect import poll, requested_days

FAMILIES = {"ExportDay", "ExtractDay", "UploadDay", "VerifyDay"}


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[Luigid]:
    # luigid applies [resources] from its own configuration: the project's luigi.cfg, as deployed.
    env = {**clean_environment(), "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}
    with Luigid(tmp_path / "luigid", env=env) as scheduler:
        yield scheduler


def luigid_args(luigid: Luigid) -> list[str]:
    return ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid.port)]


def start(workspace: Workspace, luigid: Luigid, *args: str) -> subprocess.Popen[str]:
    """The real `luigi` command against `luigid`, in the background."""
    return subprocess.Popen(
        [LUIGI, "--module", "amp_luigi", *args, *luigid_args(luigid)],
        cwd=workspace.path,
        env=workspace.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # a hung run must not outlive the test
        process.communicate()
        raise
    return process.returncode, output


def tasks(luigid: Luigid, status: str) -> dict[str, dict]:
    return luigid.api("task_list", status=status, upstream_status="", search="")


def test_every_stage_reports_progress_and_status_to_luigid_without_secrets(
    workspace: Workspace, emulator, luigid: Luigid
) -> None:
    # Amplitude thinking before the first byte: the first day's export (its window: nothing is known
    # yet, so it goes alone) is held until the test has looked at luigid, where the window must show
    # as running and say what it waits for.
    gate = emulator.gate(match=DAY)
    stop = DAY + dt.timedelta(days=2)
    process = start(
        workspace, luigid, "ExportRange", "--start", str(DAY), "--stop", str(stop), "--workers", "2"
    )
    try:
        poll(lambda: gate.held, "the first day's window to ask Amplitude for it", process)
        # The worker sends its status message to luigid before the request, so it is there by now.
        running = [
            task
            for task in tasks(luigid, "RUNNING").values()
            if task["name"] == "ExportWindow"
            and task["params"]["first"] == task["params"]["last"] == str(DAY)
        ]
        assert len(running) == 1, tasks(luigid, "RUNNING")
        assert running[0]["status_message"] == f"requesting {DAY} from Amplitude, waiting for the first byte"
        assert running[0]["progress_percentage"] == 0
    finally:
        gate.release()
        code, output = finish(process)
    assert code == 0, output

    done = tasks(luigid, "DONE")
    assert {task["name"] for task in done.values()} == FAMILIES | {"ExportRange", "DayBatch", "ExportWindow"}
    for family in FAMILIES:
        finished = [task for task in done.values() if task["name"] == family]
        assert sorted(task["params"]["date"] for task in finished) == [
            str(DAY),
            str(DAY + dt.timedelta(days=1)),
        ]
        for task in finished if family != "ExportDay" else []:  # each ExportDay was done by its window
            assert task["progress_percentage"] == 100, task
            assert task["status_message"], task
    windows = [task for task in done.values() if task["name"] == "ExportWindow"]
    # The first day alone (nothing known), then the second (all that is left).
    assert sorted((task["params"]["first"], task["params"]["last"]) for task in windows) == [
        (str(day), str(day)) for day in (DAY, DAY + dt.timedelta(days=1))
    ]
    for task in windows:
        assert task["progress_percentage"] == 100 and task["status_message"] == "exported 1 of 1 day(s)", task
    messages = {task["name"]: task["status_message"] for task in done.values()}
    assert messages["ExtractDay"].startswith("extracted ")
    assert messages["UploadDay"].startswith("uploaded ")
    assert messages["VerifyDay"].startswith("verified ")
    for task in done.values():
        assert set(task["params"]) <= {
            "date",
            "start",
            "stop",
            "of",
            "of_params",
            "reverse",
            "task_limit",
        } | {
            "now",
            "param_name",
            "days_back",
            "days_forward",
            "refresh_days",
            "first",
            "last",
            "hours_each",
        }, task["params"]

    answers = [
        json.dumps(done),
        json.dumps(luigid.api("worker_list")),
        json.dumps(luigid.api("resource_list")),
    ]
    for task_id in done:
        answers.append(json.dumps(luigid.api("dep_graph", task_id=task_id)))
        answers.append(json.dumps(luigid.api("get_task_status_message", task_id=task_id)))
    for secret in SECRETS:
        assert all(secret not in answer for answer in answers)
        assert secret not in output


def test_overlapping_runs_of_one_day_export_it_once_and_both_exit_0(
    workspace: Workspace, emulator, luigid: Luigid
) -> None:
    gate = emulator.gate()  # the first run's export is held until the second run has ended
    first = start(workspace, luigid, "VerifyDay", "--date", str(DAY))
    try:
        poll(lambda: gate.held, "the first run to ask Amplitude for the day", first)
        # A different command line: Luigi's pid lock would refuse an identical one outright.
        second = start(workspace, luigid, "VerifyDay", "--date", str(DAY), "--workers", "2")
        second_code, second_output = finish(second)
    finally:
        gate.release()
        first_code, first_output = finish(first)
    assert first_code == 0, first_output
    assert second_code == 0, second_output
    assert "were being run by another worker" in second_output
    assert [(r.start, r.end) for r in emulator.requests] == [("20240301T00", "20240301T23")]
    landed = workspace.keys("python_import/_verified/")
    assert list(landed) == ["python_import/_verified/2024-03-01.json"]


def test_a_failed_day_still_exits_non_zero_against_the_scheduler(
    workspace: Workspace, emulator, luigid: Luigid
) -> None:
    emulator.add_fault("status", times=None, status=401)
    code, output = finish(start(workspace, luigid, "VerifyDay", "--date", str(DAY)))
    assert code == 30, output  # [retcode] task_failed
    assert "failed" in output and "ExportDay(date=2024-03-01)" in output
    failed = tasks(luigid, "FAILED")
    assert [task["name"] for task in failed.values()] == ["ExportDay"]
    for secret in SECRETS:
        assert secret not in output + json.dumps(failed)


def test_two_workers_on_one_scheduler_share_a_backfill_and_export_each_day_once(
    workspace: Workspace, emulator, luigid: Luigid, tmp_path: Path
) -> None:
    """The multi-machine shape: one luigid, two worker processes (two hosts: their own pid-lock
    directories), one shared staging directory, started at the same time over the same ten days."""
    emulator.latency_seconds = 0.3
    days = [DAY + dt.timedelta(days=n) for n in range(10)]
    stop = str(days[-1] + dt.timedelta(days=1))
    workers = [
        start(
            workspace,
            luigid,
            *("ExportRange", "--start", str(DAY), "--stop", stop, "--workers", "2"),
            *("--lock-pid-dir", str(tmp_path / f"host-{n}")),
        )
        for n in range(2)
    ]
    results = [finish(worker, timeout=300) for worker in workers]
    for code, output in results:
        assert code == 0, output
    asked = [day for record in emulator.requests for day in requested_days(record.start, record.end)]
    assert sorted(asked) == days, "each day asked for once, by whichever host ran its window"
    assert {record.status for record in emulator.requests} == {200}
    assert emulator.peak_in_flight <= 2  # luigid's [resources] amplitude_export, across both hosts
    assert sorted(workspace.keys("python_import/_verified/")) == [
        f"python_import/_verified/{day}.json" for day in days
    ]
    done = tasks(luigid, "DONE")
    assert sum(task["name"] == "VerifyDay" for task in done.values()) == 10
    ran = [output.count(" done      ") for _, output in results]
    windows = sum(task["name"] == "ExportWindow" for task in done.values())
    # A range is one task per run start (its `now`, to the second): the two hosts' are one, or two
    # when they started in different seconds; their batch is one all the same.
    ranges = sum(task["name"] == "ExportRange" for task in done.values())
    assert ranges in (1, 2) and sum(task["name"] == "DayBatch" for task in done.values()) == 1
    # Each task once, whichever host ran it: the ranges, the batch, its windows and three tasks a day
    # (each ExportDay was done by its window before it was scheduled).
    assert sum(ran) == ranges + 1 + windows + 3 * len(days), ran
