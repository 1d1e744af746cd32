"""Every fault the emulator and S3 can produce, run through the whole task graph in process.

Within the retry budget a fault is survived and the day lands exactly; beyond it the run fails with a
message that says what happened and what to do, and no stage of the day is marked complete. Hostile
archives are refused by member name, write nothing outside staging, and keep memory bounded; bad
parameters fail before any request reaches Amplitude.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest
from luigi.execution_summary import LuigiStatusCode

from amp_luigi import aws, projects
from amp_luigi.emulator import FAULT_KINDS, Emulator
from amp_luigi.settings import storage
from amp_luigi.tasks import ExportDay, ExtractDay, UploadDay, VerifyDay
from tests.conftest import DAY, Workspace
from tests.expect import assert_days_exact, data_prefix, poll
from tests.luigi_hooks import S3Faults, s3_faults

ATTEMPTS = 3  # [amplitude] max_attempts and, in tests, [storage] max_attempts


@pytest.fixture(autouse=True)
def fresh_s3_clients() -> Iterator[None]:
    """Sessions and clients are cached per process; each test gets its own, with its own fault hooks."""
    projects.reset()
    yield
    projects.reset()


def configure(section: str, **options: object) -> None:
    """Set options for in-process runs (the `in_process` fixture read the files already)."""
    config = luigi.configuration.get_config()
    for option, value in options.items():
        config.set(section, option, str(value))
    luigi.task_register.Register.clear_instance_cache()


def run_day(caplog: pytest.LogCaptureFixture, task: luigi.Task | None = None) -> tuple[bool, str]:
    """Run the day's graph with the local scheduler; (succeeded, everything logged incl. tracebacks)."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = luigi.build([task or VerifyDay(DAY)], local_scheduler=True, detailed_summary=True)
    return result.status in (LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY), caplog.text


def assert_nothing_complete(workspace: Workspace, *, from_stage: int = 0) -> None:
    """No stage from `from_stage` on is complete (earlier ones may be: a rerun resumes after them)."""
    for task in (ExportDay(DAY), ExtractDay(DAY), UploadDay(DAY), VerifyDay(DAY))[from_stage:]:
        assert not task.complete(), f"{task} is marked complete after a failure"
    listed = workspace.keys()
    assert not [key for key in listed if "/_" in key], "no marker may exist"


# Amplitude: (fault kind, options). 504 is answered by splitting the range, the rest by retrying.
AMPLITUDE_FAULTS = {
    "429 with Retry-After": ("rate_limit", {"retry_after": 1}),
    "500": ("status", {"status": 500}),
    "502": ("status", {"status": 502}),
    "503": ("status", {"status": 503, "headers": {"Retry-After": "0"}}),
    "dropped connection": ("drop", {}),
    "reset mid-body": ("drop_mid_body", {"fraction": 0.3}),
    "truncated body": ("truncate", {"fraction": 0.5}),
    "slow first byte": ("slow_first_byte", {"seconds": 2.0}),
}


def test_every_connection_and_status_fault_of_the_emulator_is_covered() -> None:
    covered = {kind for kind, _ in AMPLITUDE_FAULTS.values()} | set(ARCHIVE_FAULTS) | {"broken_zip"}
    assert covered == set(FAULT_KINDS)


@pytest.mark.parametrize("fault", AMPLITUDE_FAULTS, ids=list(AMPLITUDE_FAULTS))
def test_an_amplitude_fault_within_the_retry_budget_is_survived(
    in_process: Workspace, emulator: Emulator, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    kind, options = AMPLITUDE_FAULTS[fault]
    configure("amplitude", read_timeout=1.0)
    emulator.add_fault(kind, times=ATTEMPTS - 1, **options)
    ok, log = run_day(caplog)
    assert ok, log
    poll(lambda: len(emulator.requests) >= ATTEMPTS, "the emulator to record every attempt")
    assert sorted(str(request.fault) for request in emulator.requests) == sorted([kind, kind, "None"])
    assert_days_exact(in_process, emulator)


@pytest.mark.parametrize("fault", AMPLITUDE_FAULTS, ids=list(AMPLITUDE_FAULTS))
def test_an_amplitude_fault_beyond_the_retry_budget_fails_clearly_and_marks_nothing(
    in_process: Workspace, emulator: Emulator, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    kind, options = AMPLITUDE_FAULTS[fault]
    configure("amplitude", read_timeout=1.0, max_backoff_seconds=0.05)
    emulator.add_fault(kind, times=None, **options)
    ok, log = run_day(caplog)
    assert not ok
    poll(lambda: len(emulator.requests) >= ATTEMPTS, "the emulator to record every attempt")
    assert len(emulator.requests) == ATTEMPTS
    assert "Amplitude export 20240301T00-20240301T23 failed after 3 attempts" in log
    assert "Run again later, or raise [amplitude] max_attempts" in log
    assert_nothing_complete(in_process)
    assert not list(in_process.data_dir.rglob("*.partial")), "a failed download leaves no partial file"


def test_a_504_is_answered_by_splitting_and_a_persistent_one_points_to_the_s3_export(
    in_process: Workspace, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_fault("status", times=2, status=504)
    ok, log = run_day(caplog)
    assert ok, log
    assert_days_exact(in_process, emulator)

    landed = in_process.keys()
    in_process.s3.delete_objects(
        Bucket=in_process.bucket, Delete={"Objects": [{"Key": key} for key in landed]}
    )
    emulator.faults.clear()
    emulator.add_fault("status", times=None, status=504)
    ok, log = run_day(caplog)
    assert not ok
    assert "use Amplitude's Amazon S3 export" in log
    assert_nothing_complete(in_process)


# S3, through botocore's own parsing and retries.


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> S3Faults:
    faults = S3Faults()
    monkeypatch.setattr(aws, "session_and_config", s3_faults(faults))
    return faults


@pytest.mark.parametrize(
    ("operation", "status", "code"),
    [
        ("PutObject", 503, "SlowDown"),
        ("HeadObject", 500, "InternalError"),
        ("ListObjectsV2", 503, "ServiceUnavailable"),
        ("GetObject", 500, "InternalError"),
    ],
)
def test_s3_throttling_and_transient_errors_are_retried_by_botocore(
    in_process: Workspace,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    s3: S3Faults,
    operation: str,
    status: int,
    code: str,
) -> None:
    s3.add(operation, status, code, times=ATTEMPTS - 1)
    ok, log = run_day(caplog)
    assert ok, log
    assert s3.injected[operation] == ATTEMPTS - 1
    assert_days_exact(in_process, emulator)


def test_s3_errors_beyond_the_retry_budget_fail_naming_the_error(
    in_process: Workspace, emulator: Emulator, caplog: pytest.LogCaptureFixture, s3: S3Faults
) -> None:
    # InternalError, not SlowDown: botocore's adaptive mode would also slow this process down for
    # tens of seconds after persistent throttling, which proves nothing more.
    s3.add("PutObject", 500, "InternalError", times=None)
    ok, log = run_day(caplog)
    assert not ok
    assert (
        f"S3 upload of s3://{in_process.bucket}/{data_prefix(DAY)}" in log and "failed: InternalError" in log
    )
    assert max(s3.calls.values()) >= ATTEMPTS
    assert_nothing_complete(in_process, from_stage=2)


@pytest.mark.parametrize(
    ("operation", "permission"),
    [
        ("PutObject", "s3:PutObject"),
        ("ListObjectsV2", "s3:ListBucket"),
        ("HeadObject", "s3:GetObject"),
    ],
)
def test_access_denied_fails_fast_naming_the_bucket_and_the_permission(
    in_process: Workspace,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    s3: S3Faults,
    operation: str,
    permission: str,
) -> None:
    s3.add(operation, 403, "AccessDenied", times=None)
    ok, log = run_day(caplog)
    assert not ok
    assert f"grant the credentials {permission} on bucket {in_process.bucket!r}" in log, log
    assert s3.injected[operation] == s3.calls[operation], "AccessDenied is not retried"
    if operation == "PutObject":  # only uploads started before the first refusal, not all 43 members
        assert s3.calls[operation] <= 4 * storage().upload_threads < 43, dict(s3.calls)
    else:
        assert s3.injected[operation] == 1, "one refusal is enough to stop"
    s3.rules.clear()
    assert_nothing_complete(in_process, from_stage=2)


def test_a_missing_bucket_fails_before_any_request_naming_the_bucket(
    in_process: Workspace,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_BUCKET_NAME", "amp-no-such-bucket")
    ok, log = run_day(caplog)
    assert not ok
    assert "S3 bucket 'amp-no-such-bucket' does not exist (NoSuchBucket)" in log
    assert emulator.requests == []


# Hostile or broken archives, answered 200 by the emulator.


def test_a_body_that_is_not_a_zip_is_retried_as_a_bad_download_then_fails_clearly(
    in_process: Workspace, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy's HTML error page with status 200 is caught before it is saved: retried like a 5xx."""
    emulator.add_fault("broken_zip", times=ATTEMPTS - 1)
    ok, log = run_day(caplog)
    assert ok, log
    assert_days_exact(in_process, emulator)

    landed = in_process.keys()
    for key in landed:
        in_process.s3.delete_object(Bucket=in_process.bucket, Key=key)
    emulator.add_fault("broken_zip", times=None)
    ok, log = run_day(caplog)
    assert not ok
    assert "failed after 3 attempts: the body for 20240301T00-20240301T23 is not a readable zip" in log
    assert_nothing_complete(in_process)


ARCHIVE_FAULTS = {
    "zip_crc": "member 187520/187520_2024-03-01_0#0.json.gz",
    "bad_gzip_crc": "member 187520_2024-03-01_0#0.json.gz: gzip data is corrupt",
    "non_json_line": "member 187520_2024-03-01_0#0.json.gz, line 2 is not JSON",
    "evil_name": "member '../../evil.json.gz' has an unsafe path",
    "absolute_name": "member '/tmp/evil.json.gz' has an unsafe path",
    "symlink_member": "member '187520/187520_2024-03-01_0#99.json.gz' is a symbolic link",
    "gzip_bomb": "member 187520_2024-03-01_0#99.json.gz inflates more than 200 times its size",
}


def files_outside(root: Path, staging: Path) -> set[Path]:
    return {path for path in root.rglob("*") if staging not in path.parents and path != staging}


@pytest.mark.parametrize("kind", ARCHIVE_FAULTS)
def test_a_hostile_archive_is_refused_by_member_writes_only_staging_and_the_rerun_recovers(
    in_process: Workspace, emulator: Emulator, caplog: pytest.LogCaptureFixture, kind: str, tmp_path: Path
) -> None:
    configure("staging", max_line_mib=1)
    emulator.add_fault(
        kind, times=1, **({"size": 256 * 1024**2, "fill": b"{}\n"} if kind == "gzip_bomb" else {})
    )
    before = files_outside(tmp_path, in_process.data_dir)
    evil = Path("/tmp/evil.json.gz")
    evil_before = evil.stat().st_mtime_ns if evil.exists() else None

    ok, log = run_day(caplog)
    assert not ok
    assert ARCHIVE_FAULTS[kind] in log, log
    assert "The download was discarded; the next run fetches it again." in log
    assert files_outside(tmp_path, in_process.data_dir) == before
    assert not any(path.name == "evil.json.gz" for path in in_process.data_dir.rglob("*"))
    assert (evil.stat().st_mtime_ns if evil.exists() else None) == evil_before
    assert not (in_process.data_dir / DAY.isoformat() / "export").exists(), "the bad download is gone"
    assert_nothing_complete(in_process)

    ok, log = run_day(caplog)
    assert ok, log
    assert_days_exact(in_process, emulator)


@pytest.mark.parametrize("fill", [b" ", b"{}\n"], ids=["one endless line", "valid tiny events"])
def test_a_multi_gigabyte_bomb_is_refused_in_bounded_memory(
    in_process: Workspace, emulator: Emulator, caplog: pytest.LogCaptureFixture, fill: bytes
) -> None:
    """4 GiB inflated from ~4 MiB: refused by the line limit or the inflate ratio, long before the end."""
    emulator.add_fault("gzip_bomb", times=1, size=4 * 1024**3, fill=fill)
    ExportDay(DAY).run()  # download outside the measurement: the emulator builds the bomb in this process
    tracemalloc.start()
    try:
        ok, log = run_day(caplog, ExtractDay(DAY))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not ok
    assert "member 187520_2024-03-01_0#99.json.gz" in log
    assert peak < 64 * 1024**2, f"peak {peak / 1024**2:.0f} MiB while refusing a 4 GiB bomb"
    assert_nothing_complete(in_process)


# Bad parameters: refused before any request to Amplitude.


def test_an_invalid_date_is_refused_by_the_command_line(workspace: Workspace, emulator: Emulator) -> None:
    run = workspace.luigi("VerifyDay", "--date", "2024-13-01", "--local-scheduler")
    assert run.returncode != 0
    assert "2024-13-01" in run.stderr
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("date", "settings_", "message"),
    [
        (dt.date(2019, 12, 31), {"first_date": "2020-01-01"}, "is before the project's first day 2020-01-01"),
        (dt.date.today() + dt.timedelta(days=1), {}, "cannot be exported yet"),
        (dt.date.today(), {}, "exporting it now would mark a partial day complete"),
        (DAY, {"region": "mars"}, "Unknown Amplitude region 'mars'"),
    ],
    ids=["before first_date", "future day", "today", "bad region"],
)
def test_bad_parameters_fail_before_any_request(
    in_process: Workspace,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    date: dt.date,
    settings_: dict[str, str],
    message: str,
) -> None:
    if "region" in settings_:
        monkeypatch.delenv("AMP_EXPORT_URL")
    configure("amplitude", **settings_)
    ok, log = run_day(caplog, VerifyDay(date))
    assert not ok
    assert message in log, log
    assert emulator.requests == []
    assert not in_process.data_dir.exists() or not list(in_process.data_dir.rglob("*.json"))


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/api/2/export", "analytics.eu.amplitude.com", "http://"])
def test_a_bad_url_fails_before_any_request(
    in_process: Workspace,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
) -> None:
    monkeypatch.setenv("AMP_EXPORT_URL", url)
    ok, log = run_day(caplog)
    assert not ok
    assert "is not an http(s) URL" in log, log
    assert emulator.requests == []
    assert os.environ["AMP_EXPORT_URL"] == url
