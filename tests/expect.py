"""What the tests expect of a run, in one place: "S3 holds exactly these days", and a run's output.

Not a test module and no fixtures (those are in conftest.py): plain functions the tests call.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from amp_luigi.emulator import EmulatedProject, Emulator, Gate
from amp_luigi.hours import HourRange
from tests.conftest import DAY, REPO, SECRETS, Workspace, crc32_of

PREFIX = "python_import/"
POLL_DEADLINE = 60.0
R = TypeVar("R")


def data_prefix(day: dt.date, prefix: str = PREFIX) -> str:
    return f"{prefix}{day.isoformat()}/"


def marker_key(kind: str, day: dt.date, prefix: str = PREFIX) -> str:
    return f"{prefix}_{kind}/{day.isoformat()}.json"


def expected_objects(
    emulator: Emulator | EmulatedProject, day: dt.date = DAY, *, keep_gzip: bool = False, prefix: str = PREFIX
) -> dict[str, bytes]:
    """The day's objects as a clean run lands them: key -> the member's bytes, or its NDJSON."""
    hours = HourRange.day(day)
    found = {}
    for name, member in emulator.dataset.members(hours.start, hours.end):
        base = name.rsplit("/", 1)[-1]
        key = data_prefix(day, prefix) + (base if keep_gzip else base.removesuffix(".gz"))
        found[key] = member if keep_gzip else gzip.decompress(member)
    return found


def assert_days_exact(
    workspace: Workspace,
    emulator: Emulator | EmulatedProject,
    days: Sequence[dt.date] = (DAY,),
    *,
    keep_gzip: bool = False,
    prefix: str = PREFIX,
    alone: bool = True,
) -> None:
    """S3 holds exactly what a clean run of `days` leaves under `prefix` (a project's, for one of the
    emulator's projects): every event once, in the bytes the emulator served, both markers naming
    those objects with their CRC32s, nothing else under the prefix (and, `alone`, in the bucket), no
    open multipart upload, no half-written file in staging."""
    expected = {
        key: body
        for day in days
        for key, body in expected_objects(emulator, day, keep_gzip=keep_gzip, prefix=prefix).items()
    }
    markers = [marker_key(kind, day, prefix) for day in days for kind in ("uploaded", "verified")]
    assert sorted(workspace.keys(prefix)) == sorted([*expected, *markers])
    if alone:
        assert sorted(workspace.keys()) == sorted([*expected, *markers])
    for key, body in expected.items():
        assert workspace.read(key) == body, key
    for day in days:
        uploaded = json.loads(workspace.read(marker_key("uploaded", day, prefix)))
        verified = json.loads(workspace.read(marker_key("verified", day, prefix)))
        recorded = {obj["key"]: obj for obj in verified["objects"]}
        assert [obj["key"] for obj in uploaded["objects"]] == [obj["key"] for obj in verified["objects"]]
        assert sorted(recorded) == sorted(key for key in expected if key.startswith(data_prefix(day, prefix)))
        for key, obj in recorded.items():
            assert crc32_of(expected[key]) == obj["crc32"], key
        events = [json.loads(line) for key in recorded for line in _ndjson(expected[key], keep_gzip)]
        insert_ids = [event["$insert_id"] for event in events]
        assert len(insert_ids) == len(set(insert_ids)) == verified["events"] == emulator.day_event_count(day)
        staging = workspace.data_dir / prefix.removeprefix(PREFIX) / day.isoformat()
        assert not staging.exists() or not list(staging.rglob("*.partial")), "no half-written file left"
    if not workspace.backend.startswith("s3rver"):  # s3rver cannot list them (501 NotImplemented)
        uploads = workspace.s3.list_multipart_uploads(Bucket=workspace.bucket).get("Uploads", [])
        assert uploads == [], "an abandoned multipart upload is invisible but billed"


def _ndjson(body: bytes, gzipped: bool) -> list[bytes]:
    return (gzip.decompress(body) if gzipped else body).splitlines()


def output(run: subprocess.CompletedProcess[str]) -> str:
    return run.stdout + run.stderr


def no_secrets(run: subprocess.CompletedProcess[str]) -> None:
    for secret in SECRETS:
        assert secret not in output(run)


def run_day(workspace: Workspace, day: dt.date = DAY, **env: str) -> subprocess.CompletedProcess[str]:
    """VerifyDay through the real `luigi` command, as cron runs it."""
    # Luigi's pid lock is keyed by the command line, machine-wide: a lock directory of the test's own
    # keeps concurrent test runs from skipping each other's commands.
    locks = str(workspace.path / "locks")
    return workspace.luigi(
        "VerifyDay", "--date", day.isoformat(), "--local-scheduler", "--lock-pid-dir", locks, env=env
    )


def run_benchmark(
    script: str, tmp_path: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """benchmarks/`script` from this venv (--dev-venv), working and caching under `tmp_path`."""
    dirs = ["--work-dir", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache")]
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args, "--dev-venv", *dirs],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def luigi_ok(workspace: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `luigi` command that must succeed without printing a secret."""
    run = workspace.luigi(*args, "--local-scheduler")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    no_secrets(run)
    return run


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file() or path.is_symlink()}


def poll(condition: Callable[[], Any], what: str, process: subprocess.Popen[str] | None = None) -> Any:
    """Wait until `condition()` is truthy; fail if the deadline passes or `process` ends first."""
    deadline = time.monotonic() + POLL_DEADLINE
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if process is not None and process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before {what}")
        time.sleep(0.005)  # a poll interval, not a wait for something to happen
    pytest.fail(f"timed out waiting for {what}")


def run_holding(gate: Gate, count: int, run: Callable[[], R]) -> R:
    """`run()` (a blocking `luigi` command) in a thread while `gate` holds requests, released once
    `count` of them are held, so that many were in flight at once, whatever the machine's load; or
    once the run ends without them. What `run` returned; the test then checks `gate.held`."""
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run)
        try:
            poll(lambda: gate.held >= count or running.done(), f"{count} requests held at once")
        finally:
            gate.release()
        return running.result()


def write_marker(workspace: Workspace, kind: str, day: str, objects: int, events: int) -> None:
    """A marker as amp-luigi writes it: `objects` objects of 10 bytes holding `events` events in all."""
    share, rest = divmod(events, objects) if objects else (0, 0)
    listed = [
        {"key": f"python_import/{day}/m{n}.json", "bytes": 10, "crc32": "AAAAAA==",
         "events": share + (n < rest), "member": f"m{n}.json.gz", "etag": '"e"'}
        for n in range(objects)
    ]  # fmt: skip
    body = {"date": day, "objects": listed, "object_count": objects, "events": events, "bytes": 10 * objects}
    workspace.s3.put_object(
        Bucket=workspace.bucket, Key=f"python_import/{kind}/{day}.json", Body=json.dumps(body)
    )


def setup_days(workspace: Workspace) -> None:
    """2024-03-01 done, 02 empty, 03 uploaded but not verified, 04 staging only, 05 missing."""
    write_marker(workspace, "_uploaded", "2024-03-01", 22, 4956)
    write_marker(workspace, "_verified", "2024-03-01", 22, 4956)
    write_marker(workspace, "_uploaded", "2024-03-02", 0, 0)
    write_marker(workspace, "_verified", "2024-03-02", 0, 0)
    write_marker(workspace, "_uploaded", "2024-03-03", 5, 100)
    (workspace.data_dir / "2024-03-04" / "export").mkdir(parents=True)
    write_marker(workspace, "_verified", "2023-12-31", 1, 1)  # outside the range: not read


# Six weeks with a weekly rhythm (events per weekday, Monday first), and in them a day of each kind.
WEEKLY = (1000, 1100, 1050, 1000, 900, 300, 250)
WEEKS_START, WEEKS_STOP = dt.date(2024, 2, 5), dt.date(2024, 3, 18)  # Monday to Monday: 6 weeks
ANOMALOUS = dt.date(2024, 3, 6)  # a Wednesday with a fifth of its usual events
FAILED_DAY = dt.date(2024, 3, 12)  # uploaded, never verified
MISSING_DAY = dt.date(2024, 3, 13)
UNJUDGED = dt.date(2024, 2, 7)  # a Wednesday too, but the first: no history, no verdict


def setup_weeks(workspace: Workspace) -> None:
    """WEEKS_START..WEEKS_STOP verified with the WEEKLY rhythm, but ANOMALOUS, FAILED_DAY and
    MISSING_DAY; and a fifth week before the range, which the rule reads as history."""
    for offset in range(-7, (WEEKS_STOP - WEEKS_START).days):
        day = WEEKS_START + dt.timedelta(days=offset)
        if day in (FAILED_DAY, MISSING_DAY):
            continue
        events = 200 if day == ANOMALOUS else WEEKLY[day.weekday()]
        write_marker(workspace, "_verified", day.isoformat(), 4, events)
    write_marker(workspace, "_uploaded", FAILED_DAY.isoformat(), 4, 1000)


def requested_days(start: str | None, end: str | None) -> list[dt.date]:
    """The days an Export API request (`start`, `end` as `YYYYMMDDTHH`) asked for, whole or in part."""
    if start is None or end is None:
        return []
    first, last = (dt.datetime.strptime(value, "%Y%m%dT%H").date() for value in (start, end))
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
