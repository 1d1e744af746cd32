"""Every failure path through the real `luigi` command, as cron runs it: the emulator's faults, a moto
S3 server, and the exit code, output, S3 and staging directory a user would look at afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from amp_luigi.emulator import Emulator
from amp_luigi.hours import HourRange
from tests.conftest import DAY, Workspace
from tests.expect import assert_days_exact, files_under, no_secrets, output, run_day

TASK_FAILED = 30  # luigi.cfg [retcode]
PREFIX = "python_import"
VERIFIED = f"{PREFIX}/_verified/{DAY}.json"


def test_bad_credentials_fail_at_once_naming_credentials_and_region(
    workspace: Workspace, emulator: Emulator
) -> None:
    run = run_day(workspace, AMP_SECRET_KEY="wrong-secret-0000")
    assert run.returncode == TASK_FAILED, output(run)
    text = output(run)
    assert "401" in text and "AMP_API_KEY" in text and "AMP_SECRET_KEY" in text and "region" in text
    assert "wrong-secret-0000" not in text
    no_secrets(run)
    assert [r.status for r in emulator.requests] == [401], "no retry of a credentials failure"
    assert workspace.keys() == {}


def test_a_day_without_data_completes_empty_and_is_not_requested_again(
    workspace: Workspace, emulator: Emulator
) -> None:
    emulator.add_fault("status", times=None, match=DAY, status=404, body="No data available")
    run = run_day(workspace)
    assert run.returncode == 0, output(run)
    assert set(workspace.keys()) == {f"{PREFIX}/_uploaded/{DAY}.json", VERIFIED}
    assert json.loads(workspace.read(VERIFIED))["events"] == 0

    emulator.reset_requests()
    again = run_day(workspace)
    assert again.returncode == 0, output(again)
    assert emulator.requests == []


def test_a_day_too_large_for_one_export_is_split_and_lands_exactly_once(
    workspace: Workspace, emulator: Emulator
) -> None:
    emulator.max_range_bytes = 400_000  # a few hours of this dataset: the day is halved, some halves again
    run = run_day(workspace)
    assert run.returncode == 0, output(run)
    statuses = [r.status for r in emulator.requests]
    assert statuses[0] == 400 and statuses.count(400) >= 2 and 200 in statuses
    assert_days_exact(workspace, emulator)


def test_transient_faults_are_retried_within_the_same_run(workspace: Workspace, emulator: Emulator) -> None:
    emulator.add_fault("status", status=503)
    emulator.add_fault("truncate")
    run = run_day(workspace)
    assert run.returncode == 0, output(run)
    assert [r.fault for r in emulator.requests] == ["status", "truncate", None]
    assert_days_exact(workspace, emulator)
    no_secrets(run)


def test_a_body_truncated_every_time_fails_after_max_attempts_leaving_nothing(
    workspace: Workspace, emulator: Emulator
) -> None:
    emulator.add_fault("truncate", times=None)
    run = run_day(workspace)
    assert run.returncode == TASK_FAILED, output(run)
    assert "failed after 3 attempts" in output(run)
    assert len(emulator.requests) == 3
    assert workspace.keys() == {}
    assert not [path for path in files_under(workspace.data_dir) if path.suffix in (".zip", ".partial")]


def test_a_day_not_yet_over_fails_before_any_request(workspace: Workspace, emulator: Emulator) -> None:
    today = dt.datetime.now(dt.timezone.utc).date()
    run = run_day(workspace, today)
    assert run.returncode == TASK_FAILED, output(run)
    assert "cannot be exported yet" in output(run)
    assert emulator.requests == []
    assert workspace.keys() == {}


def test_a_missing_bucket_fails_clearly_before_asking_amplitude(
    workspace: Workspace, emulator: Emulator
) -> None:
    run = run_day(workspace, AWS_BUCKET_NAME="amp-no-such-bucket-4711")
    assert run.returncode != 0, output(run)
    assert "'amp-no-such-bucket-4711' does not exist" in output(run)
    assert emulator.requests == []
    no_secrets(run)


def test_a_corrupt_archive_is_discarded_and_downloaded_again_next_run(
    workspace: Workspace, emulator: Emulator
) -> None:
    export_index = workspace.data_dir / DAY.isoformat() / "export" / "parts.json"
    first_member = sorted(emulator.member_names(*HourRange.day(DAY).query().values()))[0].rsplit("/", 1)[-1]
    for kind, words in [("bad_gzip_crc", "gzip data is corrupt"), ("non_json_line", "line 2 is not JSON")]:
        emulator.reset_requests()
        emulator.add_fault(kind)
        run = run_day(workspace)
        assert run.returncode == TASK_FAILED, output(run)
        assert f"member {first_member}" in output(run) and words in output(run), output(run)
        assert "the next run fetches it again" in output(run)
        assert len(emulator.requests) == 1
        assert not export_index.exists(), "the failed download is not left as a completed export"
        assert workspace.keys() == {}

    emulator.reset_requests()
    run = run_day(workspace)
    assert run.returncode == 0, output(run)
    assert len(emulator.requests) == 1, "the day was downloaded again"
    assert_days_exact(workspace, emulator)


def test_member_names_reaching_outside_staging_write_nothing_outside(
    workspace: Workspace, emulator: Emulator, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"

    def outside_staging() -> set[Path]:
        return files_under(tmp_path) - files_under(workspace.data_dir) - files_under(workspace.path / "locks")

    before = outside_staging()
    faults = [
        ("evil_name", {"name": "../../../../../escaped.json.gz"}),
        ("absolute_name", {"name": str(outside / "absolute.json.gz")}),
        ("symlink_member", {"target": str(tmp_path / "work" / "luigi.cfg")}),
    ]
    for kind, opts in faults:
        emulator.add_fault(kind, **opts)
        run = run_day(workspace)
        assert run.returncode == TASK_FAILED, output(run)
        assert "unsafe path" in output(run) or "symbolic link" in output(run), output(run)
        assert repr(opts.get("name", "187520/187520_2024-03-01_0#99.json.gz")) in output(run)

    assert outside_staging() == before
    assert not outside.exists()
    assert not list(tmp_path.parent.glob("escaped.json.gz"))
    assert not list(tmp_path.rglob("escaped.json.gz")) and not list(tmp_path.rglob("absolute.json.gz"))
    assert not [path for path in workspace.data_dir.rglob("*") if path.is_symlink()]
    assert workspace.keys() == {}
