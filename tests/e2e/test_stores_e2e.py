"""The pipeline end to end on every S3: moto and s3rver, each over HTTP and HTTPS (conftest.BACKENDS).

Each scenario drives the real `luigi` command (or `python -m amp_luigi status`) against one backend
and asserts S3's exact content: the data keys and their bytes (equal to the members the emulator
served, or their NDJSON), both markers parseable JSON, nothing else under the prefix. s3rver
implements no multipart listing or abort and keeps an aws-chunked body's framing: the markers and
the clean-up must work there all the same.
"""

from __future__ import annotations

import datetime as dt

import pytest

from amp_luigi.emulator import Emulator
from tests.conftest import BACKENDS, BIG, DAY, Workspace
from tests.expect import PREFIX, assert_days_exact, luigi_ok


@pytest.mark.parametrize("s3_backend", BACKENDS, indirect=True)
def test_a_day_lands_exactly_a_stray_is_removed_status_shows_it_and_a_rerun_requests_nothing(
    backend_workspace: Workspace, emulator: Emulator
) -> None:
    """One day's whole life on one backend (a luigi run costs seconds: the scenarios share them)."""
    stray = f"{PREFIX}{DAY.isoformat()}/187520_2024-03-01_7#9.json"  # a member name Amplitude never sent
    backend_workspace.s3.put_object(Bucket=backend_workspace.bucket, Key=stray, Body=b'{"stray": true}\n')
    luigi_ok(backend_workspace, "VerifyDay", "--date", DAY.isoformat())
    assert_days_exact(backend_workspace, emulator, [DAY])

    status = backend_workspace.amp_luigi("status", "--start", "2024-03-01", "--stop", "2024-03-02")
    assert status.returncode == 0, status.stderr
    objects = len(backend_workspace.keys(f"{PREFIX}{DAY.isoformat()}/"))
    events = emulator.day_event_count(DAY)
    assert (
        f"1 done, 0 empty, 0 missing, 0 FAILED, 0 not yet; {events:,} events in {objects} objects"
        in status.stdout
    )

    emulator.reset_requests()
    luigi_ok(backend_workspace, "VerifyDay", "--date", DAY.isoformat())
    assert emulator.requests == []
    assert_days_exact(backend_workspace, emulator, [DAY])


@pytest.mark.parametrize("s3_backend", BACKENDS, indirect=True)
def test_a_range_of_three_days_lands_exactly(backend_workspace: Workspace, emulator: Emulator) -> None:
    days = [DAY + dt.timedelta(days=n) for n in range(3)]
    luigi_ok(backend_workspace, "ExportRange", "--start", days[0].isoformat(), "--stop", "2024-03-04")
    assert_days_exact(backend_workspace, emulator, days)


@pytest.mark.parametrize("s3_backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("emulator", [BIG], indirect=True, ids=["big"])
def test_a_multipart_day_lands_exactly(backend_workspace: Workspace, emulator: Emulator) -> None:
    backend_workspace.configure("storage", part_size_mib=5)
    luigi_ok(backend_workspace, "VerifyDay", "--date", DAY.isoformat())
    assert_days_exact(backend_workspace, emulator, [DAY])
    assert max(backend_workspace.keys(f"{PREFIX}{DAY.isoformat()}/").values()) > 5 * 1024 * 1024


@pytest.mark.parametrize("s3_backend", BACKENDS, indirect=True)
def test_keep_gzip_lands_the_members_as_served(backend_workspace: Workspace, emulator: Emulator) -> None:
    backend_workspace.configure("storage", keep_gzip=True)
    luigi_ok(backend_workspace, "VerifyDay", "--date", DAY.isoformat())
    assert_days_exact(backend_workspace, emulator, [DAY], keep_gzip=True)
