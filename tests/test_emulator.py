"""The Export API emulator keeps Amplitude's contracts over real loopback HTTP, and its faults do what they say."""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import os
import re
import stat
import subprocess
import sys
import threading
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from amp_luigi.emulator import DatasetSpec, Emulator, hour_lines
from amp_luigi.emulator.events import Dataset
from amp_luigi.emulator.server import CHUNK

pytestmark = pytest.mark.e2e  # every test here serves HTTP on loopback

KEY, SECRET = "test-key", "very-secret-key"
DAY = date(2024, 3, 1)
DAY_RANGE = ("20240301T00", "20240301T23")
MEMBER = re.compile(r"187520/187520_2024-03-01_(\d{1,2})#(\d+)\.json\.gz")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """Small hours of 15-45 events in parts of 10, so every busy hour has several members."""
    with Emulator(KEY, SECRET, events_per_hour=30, events_per_part=10) as emu:
        yield emu


def export(emu: Emulator, start: str, end: str, auth: tuple[str, str] = (KEY, SECRET)) -> requests.Response:
    return requests.get(emu.url, params={"start": start, "end": end}, auth=auth, timeout=10)


def members(response: requests.Response) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def test_wrong_credentials_get_401() -> None:
    with Emulator(KEY, SECRET) as emu:
        assert export(emu, *DAY_RANGE, auth=(KEY, "wrong")).status_code == 401
        assert export(emu, *DAY_RANGE, auth=("wrong", SECRET)).status_code == 401
        anonymous = requests.get(emu.url, params={"start": DAY_RANGE[0], "end": DAY_RANGE[1]}, timeout=10)
        assert anonymous.status_code == 401
        assert [r.auth_ok for r in emu.requests] == [False, False, False]


def test_a_date_without_data_gets_404() -> None:
    with Emulator(KEY, SECRET, empty_dates={date(2024, 3, 2)}) as emu:
        assert export(emu, "20240302T00", "20240302T23").status_code == 404
        assert emu.day_event_count(date(2024, 3, 2)) == 0
        assert export(emu, "20240301T23", "20240302T05").status_code == 200


def test_empty_hours_alone_get_404(emulator: Emulator) -> None:
    assert export(emulator, "20240301T03", "20240301T04").status_code == 404


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2024030100", "20240301T23"),
        ("20240301T0", "20240301T23"),
        ("20240301T05", "20240301T04"),
        ("20240230T00", "20240230T01"),
        ("20240301T24", "20240301T24"),
        ("", ""),
    ],
)
def test_malformed_ranges_get_400_with_a_message(emulator: Emulator, start: str, end: str) -> None:
    response = export(emulator, start, end)
    assert response.status_code == 400
    assert "start" in response.text or "end" in response.text


def test_forbidden_answers_403() -> None:
    with Emulator(KEY, SECRET, forbidden=True) as emu:
        assert export(emu, *DAY_RANGE).status_code == 403


def test_day_zip_layout(emulator: Emulator) -> None:
    response = export(emulator, *DAY_RANGE)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert int(response.headers["Content-Length"]) == len(response.content)
    names = list(members(response))
    assert names == emulator.member_names(*DAY_RANGE)
    parsed = [MEMBER.fullmatch(name) for name in names]
    assert all(parsed), names
    hours = {int(m.group(1)) for m in parsed if m}
    # The hour is not zero-padded, the default empty night hours are absent, busy hours have parts.
    assert "187520/187520_2024-03-01_5#0.json.gz" in names
    assert hours == set(range(24)) - {3, 4}
    assert max(int(m.group(2)) for m in parsed if m) >= 2
    for hour in hours:
        parts = sorted(int(m.group(2)) for m in parsed if m and int(m.group(1)) == hour)
        assert parts == list(range(len(parts)))


def test_members_are_byte_identical_however_the_day_is_split(emulator: Emulator) -> None:
    whole = members(export(emulator, *DAY_RANGE))
    halves = {**members(export(emulator, "20240301T00", "20240301T11"))}
    halves.update(members(export(emulator, "20240301T12", "20240301T23")))
    singles: dict[str, bytes] = {}
    for hour in range(24):
        response = export(emulator, f"20240301T{hour:02d}", f"20240301T{hour:02d}")
        assert response.status_code == (404 if hour in (3, 4) else 200)
        if response.ok:
            singles.update(members(response))
    assert whole == halves == singles


def test_generation_is_a_pure_function_of_the_settings() -> None:
    spec = DatasetSpec(seed=7, events_per_hour=50)
    assert hour_lines(spec, "20240301T05") == hour_lines(
        DatasetSpec(seed=7, events_per_hour=50), "20240301T05"
    )
    assert hour_lines(spec, "20240301T05") != hour_lines(
        DatasetSpec(seed=8, events_per_hour=50), "20240301T05"
    )
    assert hour_lines(spec, "20240301T05") != hour_lines(spec, "20240301T06")


def test_generation_does_not_depend_on_the_process() -> None:
    script = (
        "import hashlib; from amp_luigi.emulator.events import DatasetSpec, build_hour; "
        "spec = DatasetSpec(events_per_hour=50, empty_dates={__import__('datetime').date(2024, 3, 2)}); "
        "print(hashlib.sha256(repr(build_hour(spec, '20240301T05')).encode()).hexdigest(), spec.fingerprint())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=Path(__file__).parents[1],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_disk_cache_serves_the_same_bytes(tmp_path: Path) -> None:
    spec = DatasetSpec(events_per_hour=20)
    built = Dataset(spec, cache_dir=tmp_path).hour("20240301T05")
    assert list(tmp_path.glob("*/20240301T05.pickle"))
    assert Dataset(spec, cache_dir=tmp_path).hour("20240301T05") == built


def test_events_are_well_formed(emulator: Emulator) -> None:
    served = members(export(emulator, *DAY_RANGE))
    expected = dict(emulator.expected_events(*DAY_RANGE))
    assert list(served) == list(expected)
    events = []
    for name, data in served.items():
        text = gzip.decompress(data).decode()
        assert text.endswith("\n")
        lines = text.split("\n")[:-1]
        parsed = [json.loads(line) for line in lines]
        assert parsed == expected[name]
        match = MEMBER.fullmatch(name)
        assert match
        hour = int(match.group(1))
        for event in parsed:
            upload = parse_time(event["server_upload_time"])
            assert (upload.date(), upload.hour) == (DAY, hour)
        events.extend(parsed)
    required = {
        "$insert_id",
        "event_id",
        "event_type",
        "event_time",
        "server_upload_time",
        "server_received_time",
        "client_event_time",
        "client_upload_time",
        "processed_time",
        "user_id",
        "device_id",
        "session_id",
        "amplitude_id",
        "app",
        "platform",
        "os_name",
        "os_version",
        "device_type",
        "country",
        "city",
        "region",
        "language",
        "ip_address",
        "library",
        "version_name",
        "event_properties",
        "user_properties",
        "group_properties",
        "groups",
        "data",
    }
    assert all(required <= event.keys() for event in events)
    assert len({event["$insert_id"] for event in events}) == len(events) == emulator.day_event_count(DAY)
    time_format = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
    assert all(time_format.fullmatch(event["event_time"]) for event in events)
    assert {"Zürich", "東京"} & {event["city"] for event in events}
    assert all(isinstance(event["event_properties"]["items"], list) for event in events)
    text = json.dumps(events, ensure_ascii=False)
    # Emoji, and U+2028 inside a string (str.splitlines() would wrongly split the line there).
    assert "🦊" in text and "\u2028" in text
    lag = [parse_time(event["server_upload_time"]) - parse_time(event["event_time"]) for event in events]
    late = [delay for delay in lag if delay >= timedelta(days=1)]
    assert all(delay >= timedelta(0) for delay in lag)
    assert 0 < len(late) < len(events) / 10


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")


def test_expected_events_cover_distinct_hours_of_the_whole_dataset() -> None:
    spec = DatasetSpec(events_per_hour=5)
    ids = [
        event["$insert_id"]
        for hour in ("20240301T05", "20240302T05")
        for event in map(json.loads, hour_lines(spec, hour))
    ]
    assert len(ids) == len(set(ids))


def test_a_range_over_max_range_bytes_gets_400(emulator: Emulator) -> None:
    emulator.max_range_bytes = 100_000
    response = export(emulator, *DAY_RANGE)
    assert response.status_code == 400
    assert "Shorten the time ranges" in response.text
    assert export(emulator, "20240301T05", "20240301T05").status_code == 200


def test_a_range_over_the_timeout_hours_gets_504(emulator: Emulator) -> None:
    emulator.max_range_hours_before_timeout = 12
    assert export(emulator, *DAY_RANGE).status_code == 504
    assert export(emulator, "20240301T00", "20240301T11").status_code == 200


def test_requests_over_max_concurrent_get_429(emulator: Emulator) -> None:
    gate = threading.Event()
    emulator.add_fault("slow_first_byte", times=5, until=gate)
    with ThreadPoolExecutor(5) as pool:
        held = [pool.submit(export, emulator, "20240301T05", "20240301T05") for _ in range(5)]
        assert emulator.wait_in_flight(5)
        refused = export(emulator, "20240301T06", "20240301T06")
        gate.set()
        assert [future.result().status_code for future in held] == [200] * 5
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert emulator.peak_in_flight == 5
    assert export(emulator, "20240301T06", "20240301T06").status_code == 200


def test_each_project_has_its_own_keys_events_and_concurrency_limit(emulator: Emulator) -> None:
    other = emulator.add_project("other-key", "other-secret", project_id=4242, seed=9, events_per_hour=30)
    mine, theirs = (
        export(emulator, *DAY_RANGE),
        export(emulator, *DAY_RANGE, auth=("other-key", "other-secret")),
    )
    assert all(MEMBER.fullmatch(name) for name in members(mine))
    assert all(name.startswith("4242/4242_2024-03-01_") for name in members(theirs))
    assert export(emulator, *DAY_RANGE, auth=(KEY, "other-secret")).status_code == 401, (
        "a mixed pair is no pair"
    )
    assert [record.project_id for record in emulator.requests] == [187520, 4242, None]

    gate = threading.Event()
    emulator.add_fault("slow_first_byte", times=5, until=gate)
    with ThreadPoolExecutor(5) as pool:
        held = [pool.submit(export, emulator, "20240301T05", "20240301T05") for _ in range(5)]
        assert emulator.wait_in_flight(5)
        refused = export(emulator, "20240301T06", "20240301T06")  # the first project is at its limit
        served = export(emulator, "20240301T06", "20240301T06", auth=("other-key", "other-secret"))
        gate.set()
        assert [future.result().status_code for future in held] == [200] * 5
    assert (refused.status_code, served.status_code) == (429, 200)
    assert (emulator.projects[0].peak_in_flight, other.peak_in_flight) == (5, 1)
    with pytest.raises(ValueError, match="its own project_id and api_key"):
        emulator.add_project("third", "x", project_id=4242)


def test_the_command_line_serves_more_projects() -> None:
    process = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "amp_luigi.emulator",
                "--port",
                "0",
                "--api-key",
                KEY,
                "--secret-key",
                SECRET,
            ),
            *("--also-project", "second-key:second:secret:77"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        answer = requests.get(url, params=dict(zip(("start", "end"), DAY_RANGE, strict=True)),
                              auth=("second-key", "second:secret"), timeout=10)  # fmt: skip
        assert answer.status_code == 200
        assert all(name.startswith("77/77_2024-03-01_") for name in members(answer))
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_slow_first_byte_does_not_block_other_requests(emulator: Emulator) -> None:
    gate = threading.Event()
    emulator.add_fault("slow_first_byte", until=gate)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(export, emulator, "20240301T05", "20240301T05")
        assert emulator.wait_in_flight(1)
        assert export(emulator, "20240301T06", "20240301T06").status_code == 200
        assert not slow.done()
        gate.set()
        assert slow.result().status_code == 200


def test_a_gate_holds_a_request_until_released_while_others_are_answered(emulator: Emulator) -> None:
    gate = emulator.gate(match=("20240301T05", "20240301T05"))
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(export, emulator, "20240301T05", "20240301T05")
        assert gate.wait_held(1)
        assert emulator.in_flight == 1, "a held request keeps its concurrency slot"
        assert export(emulator, "20240301T06", "20240301T06").status_code == 200
        assert [record.start for record in emulator.requests] == ["20240301T06"]
        assert not held.done()
        gate.release()
        assert held.result(timeout=30).status_code == 200
    assert export(emulator, "20240301T05", "20240301T05").status_code == 200, "times=1: held once"
    assert gate.held == 1
    assert [record.status for record in emulator.requests] == [200, 200, 200]


def test_stopping_the_emulator_releases_a_held_request() -> None:
    emulator = Emulator(KEY, SECRET).start()
    gate = emulator.gate()
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(export, emulator, "20240301T05", "20240301T05")
        try:
            assert gate.wait_held(1)
        finally:
            emulator.stop()
        # Its server thread goes on and answers on the connection it holds: nothing is left waiting.
        assert held.result(timeout=30).status_code == 200


def test_status_and_rate_limit_faults(emulator: Emulator) -> None:
    emulator.add_fault("status", status=503, headers={"Retry-After": "7"}, body="try later")
    emulator.add_fault("rate_limit", retry_after=3)
    first, second, third = (export(emulator, *DAY_RANGE) for _ in range(3))
    assert (first.status_code, first.headers["Retry-After"], first.text) == (503, "7", "try later")
    assert (second.status_code, second.headers["Retry-After"]) == (429, "3")
    assert third.status_code == 200


def test_faults_are_used_in_order_and_only_on_matching_ranges(emulator: Emulator) -> None:
    emulator.add_fault("status", times=2, match=date(2024, 3, 2), status=502)
    emulator.add_fault("status", match=("20240301T05", "20240301T06"), status=500)
    emulator.add_fault("status", times=None, match=lambda start, end: start.hour == 7, status=418)
    codes = [
        export(emulator, start, end).status_code
        for start, end in [
            ("20240301T05", "20240301T05"),
            ("20240302T01", "20240302T01"),
            ("20240301T23", "20240302T00"),
            ("20240302T01", "20240302T01"),
            ("20240301T05", "20240301T06"),
            ("20240301T05", "20240301T06"),
            ("20240301T07", "20240301T07"),
            ("20240301T07", "20240301T07"),
        ]
    ]
    assert codes == [200, 502, 502, 200, 500, 200, 418, 418]
    emulator.faults.clear()
    assert export(emulator, "20240301T07", "20240301T07").status_code == 200


def test_drop_closes_without_an_answer(emulator: Emulator) -> None:
    emulator.add_fault("drop")
    with pytest.raises(requests.ConnectionError):
        export(emulator, *DAY_RANGE)
    assert emulator.requests[-1].status is None


@pytest.mark.parametrize(("kind", "reason"), [("drop_mid_body", "reset"), ("truncate", "IncompleteRead")])
def test_cut_bodies_announce_more_than_they_send(emulator: Emulator, kind: str, reason: str) -> None:
    emulator.add_fault(kind, fraction=0.25)
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match=reason):
        export(emulator, *DAY_RANGE)
    record = emulator.requests[-1]
    full = export(emulator, *DAY_RANGE)
    assert (record.status, record.fault) == (200, kind)
    assert record.bytes_sent == int(len(full.content) * 0.25)


def faulty(emulator: Emulator, kind: str, **opts: Any) -> zipfile.ZipFile:
    emulator.add_fault(kind, **opts)
    response = export(emulator, "20240301T05", "20240301T06")
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(response.content))


def test_broken_zip(emulator: Emulator) -> None:
    with pytest.raises(zipfile.BadZipFile):
        faulty(emulator, "broken_zip")


def test_bad_gzip_crc(emulator: Emulator) -> None:
    zf = faulty(emulator, "bad_gzip_crc")
    first, *rest = zf.namelist()
    with pytest.raises(gzip.BadGzipFile, match="CRC"):
        gzip.decompress(zf.read(first))
    assert all(gzip.decompress(zf.read(name)) for name in rest)


def test_non_json_line(emulator: Emulator) -> None:
    zf = faulty(emulator, "non_json_line")
    lines = gzip.decompress(zf.read(zf.namelist()[0])).decode().split("\n")[:-1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[1])
    assert len(lines) == 11


@pytest.mark.parametrize(
    ("kind", "name"), [("evil_name", "../../evil.json.gz"), ("absolute_name", "/tmp/evil.json.gz")]
)
def test_escaping_member_names(emulator: Emulator, kind: str, name: str) -> None:
    names = faulty(emulator, kind).namelist()
    assert name in names
    assert names[:-1] == emulator.member_names("20240301T05", "20240301T06")


def test_symlink_member(emulator: Emulator) -> None:
    info = faulty(emulator, "symlink_member").infolist()[-1]
    assert stat.S_ISLNK(info.external_attr >> 16)
    assert info.filename.endswith(".json.gz")


def test_gzip_bomb_inflates_to_its_size_from_a_small_member(emulator: Emulator) -> None:
    size = 64 * 1024**2 + 12345
    zf = faulty(emulator, "gzip_bomb", size=size)
    info = zf.infolist()[-1]
    assert info.compress_size < size / 500
    inflater, total = zlib.decompressobj(wbits=31), 0
    with zf.open(info) as member:
        while chunk := member.read(1024**2):
            total += len(inflater.decompress(chunk))
    assert inflater.eof and total == size


def test_zip_crc(emulator: Emulator) -> None:
    zf = faulty(emulator, "zip_crc")
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        zf.read(zf.namelist()[0])


def test_latency_delays_every_answer(emulator: Emulator) -> None:
    emulator.latency_seconds = 0.05
    assert export(emulator, "20240301T05", "20240301T05").status_code == 200
    assert emulator.requests[-1].duration >= 0.05


def test_the_body_rate_waits_each_chunk_its_share_of_the_body() -> None:
    waits: list[float] = []
    rate = 0.5  # MiB/s
    with Emulator(KEY, SECRET, events_per_hour=3000, latency_seconds=2.0, body_mib_per_second=rate,
                  wait=waits.append) as emu:  # fmt: skip
        response = export(emu, *DAY_RANGE)
    assert response.status_code == 200
    body = len(response.content)
    assert body > 2 * CHUNK, "several chunks, so the rate is applied chunk by chunk"
    latency, *chunks = waits
    assert latency == 2.0
    assert len(chunks) == math.ceil(body / CHUNK)
    assert sum(chunks) == pytest.approx(body / (rate * 1024 * 1024))
    assert max(chunks) == pytest.approx(CHUNK / (rate * 1024 * 1024))


def test_without_a_rate_or_latency_nothing_waits() -> None:
    waits: list[float] = []
    with Emulator(KEY, SECRET, wait=waits.append) as emu:
        assert export(emu, *DAY_RANGE).status_code == 200
    assert waits == []


def test_stopping_the_emulator_ends_a_slow_body_at_once() -> None:
    emulator = Emulator(KEY, SECRET, events_per_hour=3000, body_mib_per_second=1e-6).start()  # days per chunk
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(export, emulator, *DAY_RANGE)
        try:
            assert emulator.wait_in_flight(1)
        finally:
            emulator.stop()
        response = slow.result(timeout=30)
    assert response.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(response.content)).testzip() is None, "the whole body, unharmed"


def test_unknown_fault_kind_is_refused(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        emulator.add_fault("gremlins")


def test_requests_are_recorded_and_secrets_never_logged(emulator: Emulator, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    export(emulator, *DAY_RANGE)
    export(emulator, "20240302T00", "20240301T00")
    export(emulator, *DAY_RANGE, auth=(KEY, "nope"))
    ok, bad_range, bad_auth = emulator.requests
    assert (ok.start, ok.end, ok.status, ok.auth_ok, ok.fault) == (*DAY_RANGE, 200, True, None)
    assert ok.bytes_sent > 0 and ok.duration > 0
    assert (bad_range.status, bad_auth.status, bad_auth.auth_ok) == (400, 401, False)
    assert SECRET not in caplog.text and SECRET not in repr(emulator)
    emulator.reset_requests()
    assert emulator.requests == []
