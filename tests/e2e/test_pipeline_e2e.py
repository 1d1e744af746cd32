"""End to end through the real `luigi` command: emulator -> staging -> moto S3 server over HTTP."""

from __future__ import annotations

import gzip
import json

from amp_luigi.hours import HourRange
from tests.conftest import DAY, SECRETS, Workspace


def expected_day(emulator, day=DAY) -> dict[str, list[dict]]:
    hours = HourRange.day(day)
    return {
        name.rsplit("/", 1)[-1]: events for name, events in emulator.expected_events(hours.start, hours.end)
    }


def test_a_day_lands_in_s3_exactly_once_and_a_rerun_requests_nothing(workspace: Workspace, emulator) -> None:
    run = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert run.returncode == 0, run.stderr

    expected = expected_day(emulator)
    data = workspace.keys("python_import/2024-03-01/")
    assert sorted(data) == sorted(f"python_import/2024-03-01/{name[:-3]}" for name in expected)
    for name, events in expected.items():
        body = workspace.read(f"python_import/2024-03-01/{name[:-3]}")
        assert [json.loads(line) for line in body.splitlines()] == events
    verified = json.loads(workspace.read("python_import/_verified/2024-03-01.json"))
    assert verified["events"] == emulator.day_event_count(DAY) == sum(map(len, expected.values()))
    assert set(workspace.keys()) == set(data) | {
        "python_import/_uploaded/2024-03-01.json",
        "python_import/_verified/2024-03-01.json",
    }
    assert not (workspace.data_dir / "2024-03-01").exists(), "staging is removed after success"

    emulator.reset_requests()
    again = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert again.returncode == 0, again.stderr
    assert emulator.requests == []
    for secret in SECRETS:
        assert secret not in run.stdout + run.stderr + again.stdout + again.stderr


def test_keep_gzip_uploads_the_members_unchanged(workspace: Workspace, emulator) -> None:
    workspace.configure("storage", keep_gzip=True)
    run = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert run.returncode == 0, run.stderr
    expected = expected_day(emulator)
    for name, events in expected.items():
        body = gzip.decompress(workspace.read(f"python_import/2024-03-01/{name}"))
        assert [json.loads(line) for line in body.splitlines()] == events
