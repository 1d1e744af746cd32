"""The rules every setting meets: a value in, the value to use out, or a ConfigError that names the
setting as a user writes it and says what to write instead."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from amp_luigi.errors import ConfigError
from amp_luigi.validation import (
    EXPORT_URLS,
    Setting,
    at_least,
    between,
    bucket_name,
    credential,
    http_url,
    key_prefix,
    not_after_today,
    one_of,
    region_url,
    staging_dir,
)

BUCKET = Setting("storage", "bucket", "AWS_BUCKET_NAME")
PREFIX = Setting("storage", "prefix", "AMP_S3_PREFIX")
URL = Setting("amplitude", "url", "AMP_EXPORT_URL")
KEY = Setting("amplitude", "api_key", "AMP_API_KEY")
STAGING = Setting("staging", "data_dir", "AMP_DATA_DIR")


def test_a_setting_is_named_by_its_variable_and_its_luigi_cfg_option() -> None:
    assert str(BUCKET) == "AWS_BUCKET_NAME ([storage] bucket)"
    assert str(Setting("storage", "part_size_mib")) == "[storage] part_size_mib"
    assert str(Setting.env_only("AMP_WEB_API_KEY")) == "AMP_WEB_API_KEY"


@pytest.mark.parametrize("name", ["abc", "my-bucket", "my.bucket-2", "a" * 63, "0bucket9"])
def test_a_valid_bucket_name_is_kept(name: str) -> None:
    assert bucket_name(f"  {name}\n", BUCKET) == name


@pytest.mark.parametrize(
    "name", ["ab", "a" * 64, "My_Bucket", "-bucket", "bucket-", "my..bucket", "192.168.1.10", "my bucket"]
)
def test_an_invalid_bucket_name_is_refused_with_s3s_rules(name: str) -> None:
    with pytest.raises(
        ConfigError, match=r"AWS_BUCKET_NAME \(\[storage\] bucket\) = .* not a valid S3 bucket"
    ):
        bucket_name(name, BUCKET)


@pytest.mark.parametrize(
    ("value", "advice"),
    [
        ("s3://my-bucket", "set it to my-bucket."),
        ("s3://my-bucket/", "set it to my-bucket."),
        ("s3://my-bucket/team/amp/", "set it to my-bucket and AMP_S3_PREFIX ([storage] prefix) to team/amp."),
        ("my-bucket/team", "set it to my-bucket and AMP_S3_PREFIX ([storage] prefix) to team."),
        ("/my-bucket/", "set it to my-bucket."),
    ],
)
def test_a_bucket_url_or_path_is_split_into_the_bucket_and_the_prefix(value: str, advice: str) -> None:
    with pytest.raises(ConfigError) as raised:
        bucket_name(value, BUCKET)
    assert str(raised.value).startswith(f"AWS_BUCKET_NAME ([storage] bucket) = {value!r}")
    assert str(raised.value).endswith(advice)


def test_an_endpoint_url_as_the_bucket_points_to_the_endpoint_setting() -> None:
    with pytest.raises(ConfigError, match=r"is a URL, not a bucket name.*AWS_ENDPOINT_URL_S3"):
        bucket_name("https://my-bucket.s3.eu-west-1.amazonaws.com", BUCKET)


@pytest.mark.parametrize(
    ("value", "prefix"),
    [("team/amp", "team/amp"), ("/team/amp/", "team/amp"), ("  python_import ", "python_import"), ("", "")],
)
def test_a_prefix_loses_its_outer_slashes(value: str, prefix: str) -> None:
    assert key_prefix(value, PREFIX) == prefix


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [("team//amp", "team/amp"), ("team/./amp", "team/amp"), ("team/../amp/", "team/amp")],
)
def test_a_prefix_with_an_empty_dot_or_dotdot_segment_is_refused_with_the_cleaned_one(
    value: str, cleaned: str
) -> None:
    with pytest.raises(ConfigError, match=rf"AMP_S3_PREFIX .*write '{cleaned}'"):
        key_prefix(value, PREFIX)


@pytest.mark.parametrize("value", ["team\\amp", "team/\x01amp", "team\x7f"])
def test_a_prefix_with_a_control_character_or_backslash_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="control character or a backslash"):
        key_prefix(value, PREFIX)


@pytest.mark.parametrize(
    "value", ["https://analytics.eu.amplitude.com/api/2/export", " http://127.0.0.1:8080/x ", "http://h"]
)
def test_an_http_url_with_a_host_is_kept(value: str) -> None:
    assert http_url(value, URL, "https://example") == value.strip()


@pytest.mark.parametrize(
    "value",
    ["analytics.eu.amplitude.com/api/2/export", "ftp://h/x", "http://", "localhost:9000", "http://h:port/"],
)
def test_anything_else_is_refused_with_an_example(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        http_url(value, URL, "https://analytics.eu.amplitude.com/api/2/export")
    assert str(raised.value) == (
        f"AMP_EXPORT_URL ([amplitude] url) = {value!r} is not an http(s) URL with a host: "
        "use e.g. https://analytics.eu.amplitude.com/api/2/export."
    )


def test_a_pasted_key_loses_the_whitespace_around_it() -> None:
    assert credential("\t key-123 \n", KEY) == "key-123"


@pytest.mark.parametrize("value", ["key 123", "key\t123", "key\x00123", "key\u200b123"])
def test_a_key_with_a_space_or_unprintable_character_inside_is_refused_without_showing_it(value: str) -> None:
    with pytest.raises(ConfigError, match=r"AMP_API_KEY .*paste the key again") as raised:
        credential(value, KEY)
    assert "123" not in str(raised.value)


def test_bounds_are_inclusive_and_named_with_the_value() -> None:
    assert at_least(1, 1, Setting("amplitude", "max_attempts")) == 1
    assert between(5, 5, 5120, Setting("storage", "part_size_mib")) == 5
    assert between(5120.0, 5, 5120, Setting("storage", "part_size_mib")) == 5120.0
    with pytest.raises(ConfigError) as low:
        at_least(0, 1, Setting("amplitude", "max_attempts"))
    assert str(low.value) == "[amplitude] max_attempts = 0 must be at least 1."
    with pytest.raises(ConfigError) as out:
        between(4.5, 5, 5120, Setting("storage", "part_size_mib"), ": S3's limits for a part")
    assert (
        str(out.value) == "[storage] part_size_mib = 4.5 must be between 5 and 5120: S3's limits for a part."
    )


def test_a_choice_must_be_one_of_the_listed_values() -> None:
    setting = Setting("storage", "upload_proof", "AMP_S3_UPLOAD_PROOF")
    assert one_of("etag", ("auto", "etag"), setting) == "etag"
    with pytest.raises(ConfigError, match=r"AMP_S3_UPLOAD_PROOF .* = 'ETag' is not one of auto, etag\."):
        one_of("ETag", ("auto", "etag"), setting)


def test_a_region_gives_its_export_url_and_an_unknown_one_lists_the_regions() -> None:
    setting = Setting("amplitude", "region")
    assert region_url("eu", setting) == EXPORT_URLS["eu"] == "https://analytics.eu.amplitude.com/api/2/export"
    assert region_url("us", setting) == EXPORT_URLS["us"] == "https://amplitude.com/api/2/export"
    with pytest.raises(
        ConfigError, match=r"Unknown Amplitude region 'asia': set \[amplitude\] region to one of eu, us"
    ):
        region_url("asia", setting)


def test_a_first_date_may_be_today_but_not_later() -> None:
    setting = Setting("amplitude", "first_date")
    today = dt.date.today()  # the check's own today is the same or, past midnight, later
    assert not_after_today(today, setting) == today
    with pytest.raises(ConfigError, match=r"\[amplitude\] first_date = 9999-01-01 is in the future"):
        not_after_today(dt.date(9999, 1, 1), setting)


def test_a_missing_staging_directory_is_created(tmp_path: Path) -> None:
    staging_dir(tmp_path / "new" / "staging", STAGING)
    assert (tmp_path / "new" / "staging").is_dir()
    assert list((tmp_path / "new" / "staging").iterdir()) == [], "the write test leaves nothing"


def test_a_staging_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    occupied = tmp_path / "staging"
    occupied.write_text("x")
    with pytest.raises(ConfigError, match=r"AMP_DATA_DIR \(\[staging\] data_dir\) = .* is a file"):
        staging_dir(occupied, STAGING)
    assert occupied.read_text() == "x"


def test_a_staging_directory_that_cannot_be_made_names_the_reason_and_the_user(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        ConfigError, match=r"cannot be used as the staging directory \(Not a directory\).*user \("
    ):
        staging_dir(tmp_path / "file" / "staging", STAGING)
