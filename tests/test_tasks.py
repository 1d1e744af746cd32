"""The four tasks in this process (emulator and moto S3 server over loopback), plus Luigi's range tools
through the real `luigi` command.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.endpoint
import luigi
import pytest
from luigi.execution_summary import LuigiStatusCode

from amp_luigi.emulator import Emulator
from amp_luigi.errors import FatalError, NotYetAvailableError, StorageError
from amp_luigi.export import check_exportable
from amp_luigi.hours import HourRange
from amp_luigi.settings import amplitude
from amp_luigi.tasks import ExportDay, ExtractDay, UploadDay, VerifyDay
from tests.conftest import DAY, Workspace

PREFIX = "python_import"
DATA = f"{PREFIX}/{DAY}/"
UPLOADED = f"{PREFIX}/_uploaded/{DAY}.json"
VERIFIED = f"{PREFIX}/_verified/{DAY}.json"


def build(*tasks: luigi.Task) -> LuigiStatusCode:
    result = luigi.build(list(tasks), local_scheduler=True, detailed_summary=True, log_level="WARNING")
    return result.status


def reconfigure(workspace: Workspace, section: str, **options: object) -> None:
    """Change an option of the in-process configuration."""
    workspace.configure(section, **options)
    luigi.configuration.get_config().read([workspace.env["LUIGI_CONFIG_PATH"]])
    luigi.task_register.Register.clear_instance_cache()


@contextlib.contextmanager
def failures() -> Iterator[list[tuple[luigi.Task, BaseException]]]:
    """Every (task, exception) that fails while the block runs."""
    seen: list[tuple[luigi.Task, BaseException]] = []

    def on_failure(task: luigi.Task, exception: BaseException) -> None:
        seen.append((task, exception))

    luigi.Task.event_handler(luigi.Event.FAILURE)(on_failure)
    try:
        yield seen
    finally:
        luigi.Task.remove_event_handler(luigi.Event.FAILURE, on_failure)


def day_members(emulator: Emulator, day: dt.date = DAY) -> list[str]:
    hours = HourRange.day(day)
    return emulator.member_names(hours.start, hours.end)


def data_keys(workspace: Workspace, day: dt.date = DAY) -> set[str]:
    return set(workspace.keys(f"{PREFIX}/{day}/"))


def expected_keys(emulator: Emulator, day: dt.date = DAY) -> set[str]:
    return {f"{PREFIX}/{day}/{name.rsplit('/', 1)[-1][: -len('.gz')]}" for name in day_members(emulator, day)}


def mark_verified(workspace: Workspace, day: dt.date) -> None:
    body = json.dumps({"date": day.isoformat(), "objects": [], "events": 0}).encode()
    workspace.s3.put_object(Bucket=workspace.bucket, Key=f"{PREFIX}/_verified/{day}.json", Body=body)


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """Every request any botocore client of this process sends: (operation, URL path, query)."""
    calls: list[tuple[str, str, dict[str, Any]]] = []
    send = botocore.endpoint.Endpoint.make_request

    def record(self: Any, operation_model: Any, request_dict: dict[str, Any]) -> Any:
        query = dict(request_dict.get("query_string") or {})
        calls.append((operation_model.name, request_dict.get("url_path", ""), query))
        return send(self, operation_model, request_dict)

    monkeypatch.setattr(botocore.endpoint.Endpoint, "make_request", record)
    return calls


# Completeness is output existence


def test_a_day_lands_and_each_task_is_complete_exactly_when_its_output_exists(
    in_process: Workspace, emulator: Emulator
) -> None:
    reconfigure(in_process, "staging", keep=True)
    tasks = [ExportDay(date=DAY), ExtractDay(date=DAY), UploadDay(date=DAY), VerifyDay(date=DAY)]
    assert [task.complete() for task in tasks] == [False] * 4

    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS

    assert [task.complete() for task in tasks] == [True] * 4
    assert data_keys(in_process) == expected_keys(emulator)
    verified = json.loads(in_process.read(VERIFIED))
    assert verified["events"] == emulator.day_event_count(DAY)
    assert verified["object_count"] == len(day_members(emulator))
    for task in tasks:
        output = task.output()
        path = getattr(output, "path", "")
        assert task.complete() == output.exists(), path


def test_a_verified_marker_alone_makes_the_day_complete_without_any_request(
    in_process: Workspace, emulator: Emulator
) -> None:
    mark_verified(in_process, DAY)
    assert VerifyDay(date=DAY).complete()
    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS
    assert emulator.requests == []
    assert data_keys(in_process) == set()


def test_staging_is_removed_after_success_and_the_day_stays_complete(
    in_process: Workspace, emulator: Emulator
) -> None:
    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS
    assert not (in_process.data_dir / DAY.isoformat()).exists()
    assert not ExportDay(date=DAY).complete()
    emulator.reset_requests()
    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS
    assert emulator.requests == []


# Resuming


def test_a_day_that_stopped_after_extract_resumes_at_upload_without_amplitude(
    in_process: Workspace, emulator: Emulator
) -> None:
    assert build(ExtractDay(date=DAY)) == LuigiStatusCode.SUCCESS
    emulator.stop()  # any request to Amplitude would now fail

    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS

    assert data_keys(in_process) == expected_keys(emulator)
    assert in_process.keys(VERIFIED)


def test_a_lost_upload_marker_reuploads_from_staging_without_amplitude(
    in_process: Workspace, emulator: Emulator
) -> None:
    reconfigure(in_process, "staging", keep=True)
    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS
    some_key = sorted(data_keys(in_process))[0]
    for key in (UPLOADED, VERIFIED, some_key):
        in_process.s3.delete_object(Bucket=in_process.bucket, Key=key)
    emulator.stop()

    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS

    assert data_keys(in_process) == expected_keys(emulator)
    assert in_process.keys(VERIFIED) and in_process.keys(UPLOADED)


# Days that cannot or need not be exported


def test_a_day_not_yet_available_fails_before_any_request(in_process: Workspace, emulator: Emulator) -> None:
    today = dt.datetime.now(dt.timezone.utc).date()
    with failures() as failed:
        assert build(VerifyDay(date=today)) == LuigiStatusCode.FAILED
    [(task, error)] = failed
    assert isinstance(task, ExportDay) and isinstance(error, NotYetAvailableError)
    assert "cannot be exported yet" in str(error) and "availability_lag_hours" in str(error)
    assert emulator.requests == []
    assert in_process.keys() == {}
    assert not ExportDay(date=today).complete()


@pytest.mark.parametrize(
    ("now", "ok"),
    [
        (dt.datetime(2024, 3, 2, 1, 59), False),
        (dt.datetime(2024, 3, 2, 2, 0), True),
    ],
)
def test_a_day_is_exportable_only_after_the_availability_lag(
    in_process: Workspace, now: dt.datetime, ok: bool
) -> None:
    settings = amplitude()
    if ok:
        check_exportable(DAY, settings.first_date, settings.availability_lag_hours, now)
    else:
        with pytest.raises(NotYetAvailableError, match="2024-03-02 02:00 UTC"):
            check_exportable(DAY, settings.first_date, settings.availability_lag_hours, now)


def test_a_day_before_first_date_is_refused_as_a_typo(in_process: Workspace, emulator: Emulator) -> None:
    with pytest.raises(FatalError, match="first_date"):
        ExportDay(date=dt.date(2002, 3, 1)).run()
    assert emulator.requests == []


def test_a_day_without_data_completes_empty_and_is_not_requested_again(
    in_process: Workspace, emulator: Emulator
) -> None:
    emulator.add_fault("status", times=None, match=DAY, status=404, body="No data available")

    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS

    assert [(r.start, r.end, r.status) for r in emulator.requests] == [("20240301T00", "20240301T23", 404)]
    assert data_keys(in_process) == set()
    verified = json.loads(in_process.read(VERIFIED))
    assert (verified["events"], verified["object_count"], verified["objects"]) == (0, 0, [])
    emulator.reset_requests()
    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS
    assert emulator.requests == []


def test_an_empty_manifest_is_written_for_a_day_without_data(
    in_process: Workspace, emulator: Emulator
) -> None:
    emulator.add_fault("status", times=None, match=DAY, status=404)
    assert build(ExtractDay(date=DAY)) == LuigiStatusCode.SUCCESS
    manifest = json.loads(Path(ExtractDay(date=DAY).output().path).read_text())
    assert manifest["members"] == [] and manifest["events"] == 0


# Verification failures and repair


def test_an_extra_object_fails_verification_by_name_and_the_rerun_repairs_the_day(
    in_process: Workspace, emulator: Emulator
) -> None:
    assert build(UploadDay(date=DAY)) == LuigiStatusCode.SUCCESS
    stray = f"{DATA}187520_2024-03-01_0#99.json"
    in_process.s3.put_object(Bucket=in_process.bucket, Key=stray, Body=b'{"old": 1}\n')

    with failures() as failed:
        assert build(VerifyDay(date=DAY)) == LuigiStatusCode.FAILED
    [(task, error)] = failed
    assert isinstance(task, VerifyDay)
    assert f"extra {stray}" in str(error)
    assert not in_process.keys(UPLOADED), "the upload marker is removed so the next run uploads again"
    assert not in_process.keys(VERIFIED)

    emulator.reset_requests()
    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS
    assert data_keys(in_process) == expected_keys(emulator), "UploadDay deleted the stray object"
    assert emulator.requests == []


def test_a_changed_object_fails_verification_by_name(in_process: Workspace, emulator: Emulator) -> None:
    assert build(UploadDay(date=DAY)) == LuigiStatusCode.SUCCESS
    victim = sorted(data_keys(in_process))[0]
    missing = sorted(data_keys(in_process))[1]
    in_process.s3.put_object(Bucket=in_process.bucket, Key=victim, Body=b"{}\n")
    in_process.s3.delete_object(Bucket=in_process.bucket, Key=missing)

    with failures() as failed:
        assert build(VerifyDay(date=DAY)) == LuigiStatusCode.FAILED
    message = str(failed[0][1])
    assert f"size of {victim} is 3 bytes" in message
    assert f"missing {missing}" in message

    assert build(VerifyDay(date=DAY)) == LuigiStatusCode.SUCCESS
    assert data_keys(in_process) == expected_keys(emulator)


# Gap filling


def test_bulk_complete_accepts_a_partial_and_a_one_shot_iterator(in_process: Workspace) -> None:
    import functools

    mark_verified(in_process, DAY)
    in_process.s3.put_object(Bucket=in_process.bucket, Key=f"{PREFIX}/_verified/notes.txt", Body=b"")
    days = iter([DAY, DAY + dt.timedelta(days=1)])
    assert VerifyDay.bulk_complete.__func__(functools.partial(VerifyDay), days) == [DAY]  # type: ignore[attr-defined]


def test_luigis_range_tools_fill_a_gap_and_skip_completed_days(
    workspace: Workspace, emulator: Emulator
) -> None:
    """RangeDailyBase (one check per day) and RangeDaily (bulk) through the real luigi command."""
    mark_verified(workspace, dt.date(2024, 3, 1))
    mark_verified(workspace, dt.date(2024, 3, 5))

    run = workspace.luigi(
        "RangeDailyBase",
        "--of",
        "VerifyDay",
        "--start",
        "2024-03-01",
        "--stop",
        "2024-03-06",
        "--local-scheduler",
        "--lock-pid-dir",
        str(workspace.path / "locks"),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    gap = [dt.date(2024, 3, d) for d in (2, 3, 4)]
    assert {r.start[:8] for r in emulator.requests if r.start} == {"20240302", "20240303", "20240304"}
    for day in gap:
        assert data_keys(workspace, day) == expected_keys(emulator, day)
        assert workspace.keys(f"{PREFIX}/_verified/{day}.json")

    emulator.reset_requests()
    mark_verified(workspace, dt.date(2024, 3, 7))
    run = workspace.luigi(
        "RangeDaily",
        "--of",
        "VerifyDay",
        "--start",
        "2024-03-01",
        "--stop",
        "2024-03-08",
        "--local-scheduler",
        "--lock-pid-dir",
        str(workspace.path / "locks"),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert {r.start[:8] for r in emulator.requests if r.start} == {"20240306"}
    assert data_keys(workspace, dt.date(2024, 3, 6)) == expected_keys(emulator, dt.date(2024, 3, 6))
    assert data_keys(workspace, dt.date(2024, 3, 1)) == set(), "a day marked verified is never touched"


def test_a_missing_bucket_is_named_when_completeness_is_checked(
    in_process: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A HEAD of a marker answers a bare 404 for a missing key and a missing bucket alike.
    monkeypatch.setenv("AWS_BUCKET_NAME", "amp-no-such-bucket-0815")
    for task in (VerifyDay(date=DAY), UploadDay(date=DAY)):
        with pytest.raises(StorageError, match="'amp-no-such-bucket-0815' does not exist"):
            task.complete()
    monkeypatch.setenv("AWS_BUCKET_NAME", in_process.bucket)
    luigi.task_register.Register.clear_instance_cache()  # tasks keep their targets: new settings, new tasks
    assert not VerifyDay(date=DAY).complete()


def test_a_task_pickles_without_its_s3_targets_for_a_spawned_worker(in_process: Workspace) -> None:
    task = VerifyDay(date=DAY)
    assert not task.complete()  # builds and caches its marker target, with the process's S3 client
    copy = pickle.loads(pickle.dumps(task))
    assert copy == task and copy.layout() == task.layout()
    assert not copy.complete(), "the copy builds its own target"
