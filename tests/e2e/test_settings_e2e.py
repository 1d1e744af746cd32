"""Every setting is checked before any request: one wrong setting at a time, through the real `luigi`
command as cron runs it. Each run must exit with the scheduling-error code, name the setting in a
message without a traceback, send nothing to Amplitude, write nothing to S3 and no file outside
staging.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from amp_luigi.emulator import Emulator
from tests.conftest import API_KEY, DAY, SECRETS, Workspace
from tests.expect import files_under, output, run_day

SCHEDULING_ERROR = 35  # luigi.cfg [retcode]

# (id, environment, luigi.cfg section and options, what the message must say)
CASES: list[tuple[str, dict[str, str], dict[str, dict[str, object]], list[str]]] = [
    ("bucket-url", {"AWS_BUCKET_NAME": "s3://my-bucket"}, {}, ["AWS_BUCKET_NAME", "set it to my-bucket."]),
    (
        "bucket-path",
        {"AWS_BUCKET_NAME": "my-bucket/data"},
        {},
        ["AWS_BUCKET_NAME", "set it to my-bucket and AMP_S3_PREFIX ([storage] prefix) to data"],
    ),
    ("bucket-name", {"AWS_BUCKET_NAME": "My_Bucket"}, {}, ["AWS_BUCKET_NAME", "not a valid S3 bucket name"]),
    (
        "part-size-small",
        {},
        {"storage": {"part_size_mib": 1}},
        ["[storage] part_size_mib = 1", "between 5 and 5120"],
    ),
    ("part-size-large", {}, {"storage": {"part_size_mib": 6000}}, ["[storage] part_size_mib = 6000"]),
    ("upload-threads", {}, {"storage": {"upload_threads": 0}}, ["[storage] upload_threads = 0"]),
    (
        "threads-not-a-number",
        {},
        {"storage": {"upload_threads": "four"}},
        ["[storage] upload_threads = 'four'"],
    ),
    ("s3-attempts", {}, {"storage": {"max_attempts": 0}}, ["[storage] max_attempts = 0 must be at least 1"]),
    (
        "upload-proof",
        {"AMP_S3_UPLOAD_PROOF": "trust-me"},
        {},
        ["AMP_S3_UPLOAD_PROOF", "auto, checksum, etag, none"],
    ),
    ("attempts", {}, {"amplitude": {"max_attempts": 0}}, ["[amplitude] max_attempts = 0 must be at least 1"]),
    ("negative-lag", {}, {"amplitude": {"availability_lag_hours": -30}}, ["availability_lag_hours = -30"]),
    (
        "backoff",
        {},
        {"amplitude": {"backoff_seconds": 10, "max_backoff_seconds": 1}},
        ["max_backoff_seconds = 1"],
    ),
    ("timeout", {}, {"amplitude": {"read_timeout": 0}}, ["[amplitude] read_timeout = 0"]),
    (
        "first-date",
        {},
        {"amplitude": {"first_date": "2199-01-01"}},
        ["first_date = 2199-01-01 is in the future"],
    ),
    (
        "region",
        {"AMP_EXPORT_URL": ""},
        {"amplitude": {"region": "asia"}},
        ["Unknown Amplitude region 'asia'", "set [amplitude] region to one of eu, us"],
    ),
    ("export-url", {"AMP_EXPORT_URL": "ftp://example.com/x"}, {}, ["AMP_EXPORT_URL", "not an http(s) URL"]),
    (
        "endpoint-url",
        {"AWS_ENDPOINT_URL_S3": "localhost:9000"},
        {},
        ["AWS_ENDPOINT_URL_S3", "not an http(s) URL"],
    ),
    ("prefix-segments", {"AMP_S3_PREFIX": "/team//amp/"}, {}, ["AMP_S3_PREFIX", "write 'team/amp'"]),
    ("prefix-dots", {"AMP_S3_PREFIX": "team/../amp"}, {}, ["AMP_S3_PREFIX", "'..'"]),
    ("api-key-inner-space", {"AMP_API_KEY": "abc def"}, {}, ["AMP_API_KEY", "paste the key again"]),
    ("api-key-missing", {"AMP_API_KEY": ""}, {}, ["AMP_API_KEY", "is not set"]),
    ("aws-key-pair", {"SECRET_ACCESS_KEY": ""}, {}, ["Set both ACCESS_KEY and SECRET_ACCESS_KEY"]),
    ("line-limit", {}, {"staging": {"max_line_mib": 0}}, ["[staging] max_line_mib = 0"]),
    ("inflate-ratio", {}, {"staging": {"max_inflate_ratio": 0}}, ["[staging] max_inflate_ratio = 0"]),
    ("parquet-overlap", {}, {"parquet": {"prefix": "python_import/pq"}}, ["[parquet] prefix", "overlap"]),
    ("parquet-threads", {}, {"parquet": {"threads": 0}}, ["[parquet] threads = 0"]),
]


@pytest.mark.parametrize(
    ("env", "config", "expected"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_one_wrong_setting_stops_the_run_before_any_request(
    workspace: Workspace,
    emulator: Emulator,
    env: dict[str, str],
    config: dict[str, dict[str, object]],
    expected: list[str],
) -> None:
    for section, options in config.items():
        workspace.configure(section, **options)
    before = files_under(workspace.path)

    run = run_day(workspace, **env)

    text = output(run)
    assert run.returncode == SCHEDULING_ERROR, text
    for words in expected:
        assert words in text, (words, text)
    assert "Traceback" not in text
    assert emulator.requests == [], "nothing was asked of Amplitude"
    assert workspace.keys() == {}, "nothing was written to S3"
    assert all("locks" in path.parts for path in files_under(workspace.path) - before), (
        "only Luigi's pid lock"
    )
    assert not workspace.data_dir.exists() or not any(workspace.data_dir.iterdir())
    for secret in (*SECRETS, API_KEY):
        assert secret not in text


def test_a_staging_directory_that_is_a_file_is_named(
    workspace: Workspace, emulator: Emulator, tmp_path: Path
) -> None:
    occupied = tmp_path / "not-a-dir"
    occupied.write_text("x")
    run = run_day(workspace, AMP_DATA_DIR=str(occupied))
    assert run.returncode == SCHEDULING_ERROR
    assert "AMP_DATA_DIR ([staging] data_dir)" in output(run) and "is a file, not a directory" in output(run)
    assert emulator.requests == [] and workspace.keys() == {}
    assert occupied.read_text() == "x"


def test_a_missing_staging_directory_is_created_and_pasted_keys_are_stripped(
    workspace: Workspace, emulator: Emulator, tmp_path: Path
) -> None:
    fresh = tmp_path / "new" / "staging"
    run = run_day(
        workspace, AMP_DATA_DIR=str(fresh), AMP_API_KEY=f"  {API_KEY}\n", AMP_S3_PREFIX="/python_import/"
    )
    assert run.returncode == 0, output(run)
    assert fresh.is_dir()
    assert f"python_import/_verified/{DAY}.json" in set(workspace.keys())


def test_a_lag_below_amplitudes_two_hours_is_accepted_with_a_warning(
    workspace: Workspace, emulator: Emulator
) -> None:
    workspace.configure("amplitude", availability_lag_hours=1)
    run = run_day(workspace, day=DAY - dt.timedelta(days=1))
    assert run.returncode == 0, output(run)
    assert "availability_lag_hours = 1 is below the 2 hours" in output(run)
