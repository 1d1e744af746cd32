"""The Export API client against the emulator over real HTTP on loopback.

Waits between attempts are recorded by an injected `sleep` instead of slept.
"""

from __future__ import annotations

import datetime as dt
import gzip
import http.server
import io
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from amp_luigi.emulator import Emulator
from amp_luigi.errors import FatalError, TooLargeError
from amp_luigi.export_client import ExportClient, RetryPolicy, export_hours
from amp_luigi.hours import HourRange
from tests.conftest import API_KEY, DAY, SECRET_KEY

WHOLE_DAY = HourRange.day(DAY)
DAY_QUERY = ("20240301T00", "20240301T23")


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(emulator: Emulator, sleeps: Sleeps) -> Callable[..., ExportClient]:
    def make(
        *, secret: str = SECRET_KEY, attempts: int = 3, read_timeout: float = 20.0, url: str | None = None
    ) -> ExportClient:
        return ExportClient(
            url or emulator.url,
            API_KEY,
            secret,
            retry=RetryPolicy(attempts, backoff_seconds=0.01, max_backoff_seconds=300),
            connect_timeout=5,
            read_timeout=read_timeout,
            sleep=sleeps,
        )

    return make


def member_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(info.filename for info in archive.infolist())


def exported_members(parts: list) -> list[str]:
    return sorted(name for part in parts if part.archive for name in member_names(part.archive))


def files_in(directory: Path) -> list[str]:
    return (
        sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))
        if directory.exists()
        else []
    )


# 200, 404


def test_a_day_is_streamed_to_disk_as_the_zip_amplitude_sent(make_client, emulator, tmp_path) -> None:
    dest = tmp_path / "day.zip"
    seen: list[tuple[int, int | None]] = []
    assert make_client().download(WHOLE_DAY, dest, lambda got, total: seen.append((got, total)))
    assert member_names(dest) == sorted(emulator.member_names(WHOLE_DAY.start, WHOLE_DAY.end))
    assert files_in(tmp_path) == ["day.zip"], "no temporary file is left next to the archive"
    assert [(r.start, r.end) for r in emulator.requests] == [DAY_QUERY]
    assert seen[-1] == (dest.stat().st_size, dest.stat().st_size)


def test_no_data_404_is_false_and_writes_nothing(make_client, emulator, tmp_path) -> None:
    empty = HourRange(dt.datetime(2024, 3, 1, 3), dt.datetime(2024, 3, 1, 4))  # the emulator's empty hours
    assert make_client().download(empty, tmp_path / "empty.zip") is False
    assert files_in(tmp_path) == []
    assert [r.status for r in emulator.requests] == [404]


def test_export_hours_reports_a_404_range_as_a_part_without_archive(make_client, tmp_path) -> None:
    empty = HourRange(dt.datetime(2024, 3, 1, 3), dt.datetime(2024, 3, 1, 4))
    parts = export_hours(make_client(), empty, lambda hours: tmp_path / f"{hours.label()}.zip")
    assert [(part.hours, part.archive) for part in parts] == [(empty, None)]


# 400 / 504: split down to single hours


def test_a_day_over_the_size_limit_is_split_and_reassembled(make_client, emulator, tmp_path) -> None:
    # About 70 kB of events an hour: only single hours pass this limit.
    emulator.max_range_bytes = 100_000
    parts = export_hours(make_client(), WHOLE_DAY, lambda hours: tmp_path / f"{hours.label()}.zip")

    assert exported_members(parts) == sorted(emulator.member_names(WHOLE_DAY.start, WHOLE_DAY.end))
    covered = [part.hours.start + dt.timedelta(hours=i) for part in parts for i in range(part.hours.hours)]
    assert covered == [WHOLE_DAY.start + dt.timedelta(hours=h) for h in range(24)], "every hour exactly once"
    assert emulator.requests[0].status == 400
    # Hours with events only pass one at a time; the empty hours 3 and 4 pass together with hour 5.
    fetched = {(r.start, r.end) for r in emulator.requests if r.status == 200}
    assert {(f"20240301T{h:02}", f"20240301T{h:02}") for h in [*range(3), *range(6, 24)]} <= fetched


def test_a_timed_out_export_504_is_split_into_halves(make_client, emulator, tmp_path) -> None:
    emulator.max_range_hours_before_timeout = 12
    parts = export_hours(make_client(), WHOLE_DAY, lambda hours: tmp_path / f"{hours.label()}.zip")
    assert [r.status for r in emulator.requests] == [504, 200, 200]
    assert [part.hours.label() for part in parts] == ["20240301T00-20240301T11", "20240301T12-20240301T23"]
    assert exported_members(parts) == sorted(emulator.member_names(WHOLE_DAY.start, WHOLE_DAY.end))


def test_download_leaves_too_large_to_the_caller(make_client, emulator, tmp_path) -> None:
    emulator.max_range_bytes = 1
    with pytest.raises(TooLargeError):
        make_client().download(WHOLE_DAY, tmp_path / "day.zip")


def test_a_single_hour_still_too_large_fails_pointing_to_the_s3_export(
    make_client, emulator, tmp_path
) -> None:
    emulator.max_range_bytes = 1
    with pytest.raises(FatalError, match="S3 export") as raised:
        export_hours(make_client(), WHOLE_DAY, lambda hours: tmp_path / f"{hours.label()}.zip")
    assert "20240301T00-20240301T00" in str(raised.value)
    # The halving goes straight down the first branch, then stops: 24, 12, 6, 3, 1 hours.
    assert [r.status for r in emulator.requests] == [400] * 5
    assert files_in(tmp_path) == []


def test_parts_already_on_disk_are_reused(make_client, emulator, tmp_path) -> None:
    path = lambda hours: tmp_path / f"{hours.label()}.zip"  # noqa: E731
    first, second = WHOLE_DAY.halves()
    assert make_client().download(first, path(first))
    emulator.add_fault("status", times=None, match=DAY_QUERY, status=400)
    emulator.reset_requests()

    parts = export_hours(make_client(), WHOLE_DAY, path)

    assert [(r.start, r.end) for r in emulator.requests] == [DAY_QUERY, ("20240301T12", "20240301T23")]
    assert [part.archive for part in parts] == [path(first), path(second)]
    emulator.reset_requests()
    assert export_hours(
        make_client(), WHOLE_DAY, lambda hours: path(first) if hours == WHOLE_DAY else path(hours)
    )
    assert emulator.requests == [], "an archive already on disk is never requested again"


# Transient faults: retried, bounded


def test_429_waits_at_least_retry_after_then_succeeds(make_client, emulator, sleeps, tmp_path) -> None:
    emulator.add_fault("rate_limit", times=2, retry_after=7)
    assert make_client().download(WHOLE_DAY, tmp_path / "day.zip")
    assert [r.status for r in emulator.requests] == [429, 429, 200]
    assert len(sleeps) == 2 and all(wait >= 7 for wait in sleeps)


def test_retry_after_as_an_http_date_is_honoured(make_client, emulator, sleeps, tmp_path) -> None:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=90)
    emulator.add_fault(
        "status", status=429, headers={"Retry-After": when.strftime("%a, %d %b %Y %H:%M:%S GMT")}
    )
    assert make_client().download(WHOLE_DAY, tmp_path / "day.zip")
    assert len(sleeps) == 1 and 80 <= sleeps[0] <= 91


@pytest.mark.parametrize(("header", "least"), [("1.5", 1.5), ("soon", 0.0), ("", 0.0)])
def test_a_malformed_retry_after_still_retries(
    make_client, emulator, sleeps, tmp_path, header, least
) -> None:
    # A proxy in front of Amplitude may send a fractional or garbled hint: it must not end the retries.
    emulator.add_fault("status", status=429, headers={"Retry-After": header})
    assert make_client().download(WHOLE_DAY, tmp_path / "day.zip")
    assert len(sleeps) == 1 and sleeps[0] >= least


@pytest.mark.parametrize(
    ("kind", "opts"),
    [
        ("status", {"status": 500}),
        ("status", {"status": 502}),
        ("status", {"status": 503}),
        ("drop", {}),
        ("drop_mid_body", {}),
        ("truncate", {"fraction": 0.3}),
        ("broken_zip", {}),
    ],
)
def test_a_transient_fault_is_retried_and_the_retry_succeeds(
    make_client, emulator, sleeps, tmp_path, kind: str, opts: dict
) -> None:
    emulator.add_fault(kind, times=2, **opts)
    dest = tmp_path / "day.zip"
    assert make_client().download(WHOLE_DAY, dest)
    assert member_names(dest) == sorted(emulator.member_names(WHOLE_DAY.start, WHOLE_DAY.end))
    assert len(emulator.requests) == 3
    assert len(sleeps) == 2
    assert files_in(tmp_path) == ["day.zip"]


@pytest.mark.parametrize(
    ("kind", "opts", "words"),
    [
        ("status", {"status": 503}, "HTTP 503"),
        ("drop", {}, "connection"),
        ("truncate", {}, ""),
        ("drop_mid_body", {}, ""),
    ],
)
def test_a_persistent_fault_fails_after_max_attempts_leaving_no_file(
    make_client, emulator, sleeps, tmp_path, kind: str, opts: dict, words: str
) -> None:
    emulator.add_fault(kind, times=None, **opts)
    with pytest.raises(FatalError, match=f"after 4 attempts.*{words}") as raised:
        make_client(attempts=4).download(WHOLE_DAY, tmp_path / "day.zip")
    assert "20240301T00-20240301T23" in str(raised.value)
    assert len(emulator.requests) == 4
    assert len(sleeps) == 3
    assert files_in(tmp_path) == [], "a partial body never stays on disk"


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_seconds=2, max_backoff_seconds=20)
    for attempt, bound in [(1, 2), (2, 4), (3, 8)]:
        waits = [policy.delay(attempt, None) for _ in range(50)]
        assert all(bound / 2 <= wait <= bound for wait in waits)
        assert len(set(waits)) > 1, "jitter spreads retries of concurrent workers"
    assert policy.delay(8, None) == 20
    assert policy.delay(1, 15) == 15


def test_a_slow_first_byte_beyond_read_timeout_is_retried(make_client, emulator, sleeps, tmp_path) -> None:
    make_client().download(WHOLE_DAY, tmp_path / "warm.zip")  # the emulator caches the day: a fast retry
    sleeps.clear()
    release = threading.Event()
    emulator.add_fault("slow_first_byte", seconds=30, until=release)
    try:
        assert make_client(read_timeout=1.0).download(WHOLE_DAY, tmp_path / "day.zip")
    finally:
        release.set()
    assert len(sleeps) == 1
    assert member_names(tmp_path / "day.zip") == member_names(tmp_path / "warm.zip")


def test_a_slow_first_byte_within_read_timeout_is_waited_for(make_client, emulator, sleeps, tmp_path) -> None:
    emulator.add_fault("slow_first_byte", seconds=0.3)
    assert make_client(read_timeout=5).download(WHOLE_DAY, tmp_path / "day.zip")
    assert sleeps == [] and len(emulator.requests) == 1


def test_an_unreachable_server_is_retried_then_fatal(make_client, sleeps, tmp_path) -> None:
    from amp_luigi.testing.local import free_port

    url = f"http://127.0.0.1:{free_port()}/api/2/export"
    with pytest.raises(FatalError, match="after 3 attempts"):
        make_client(url=url).download(WHOLE_DAY, tmp_path / "day.zip")
    assert len(sleeps) == 2


# Credentials: fatal at once


def test_wrong_credentials_401_fail_at_once_naming_credentials_and_region(
    make_client, emulator, sleeps, tmp_path
) -> None:
    with pytest.raises(FatalError) as raised:
        make_client(secret="not-the-secret").download(WHOLE_DAY, tmp_path / "day.zip")
    message = str(raised.value)
    assert "401" in message and "AMP_API_KEY" in message and "AMP_SECRET_KEY" in message
    assert "region" in message
    assert "not-the-secret" not in message and SECRET_KEY not in message
    assert [r.status for r in emulator.requests] == [401]
    assert sleeps == []
    assert files_in(tmp_path) == []


def test_wrong_region_403_fails_at_once(make_client, emulator, sleeps, tmp_path) -> None:
    emulator.forbidden = True
    with pytest.raises(FatalError, match=r"403.*region") as raised:
        export_hours(make_client(), WHOLE_DAY, lambda hours: tmp_path / f"{hours.label()}.zip")
    assert "credentials" in str(raised.value)
    assert [r.status for r in emulator.requests] == [403]
    assert sleeps == []


def test_the_client_repr_never_shows_the_secret(make_client) -> None:
    assert SECRET_KEY not in repr(make_client())


def test_a_body_compressed_on_the_wire_is_complete_by_its_content_length(tmp_path: Path) -> None:
    # Content-Length counts wire bytes; a proxy's Content-Encoding: gzip must not look truncated.
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("1/1_2024-03-01_0#0.json.gz", gzip.compress(b'{"a": 1}\n' * 1000))
    body = gzip.compress(archive.getvalue())

    class Compressing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Compressing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ExportClient(
            f"http://127.0.0.1:{server.server_address[1]}/api/2/export", API_KEY, SECRET_KEY
        )
        dest = tmp_path / "day.zip"
        assert client.download(HourRange.day(DAY), dest)
        assert dest.read_bytes() == archive.getvalue()
    finally:
        server.shutdown()
        server.server_close()
