"""The rules every setting must meet, as plain functions: a value in, the value to use (or a ConfigError) out.

Each message names the setting the way a user sets it (the environment variable and the luigi.cfg
option) and says what to write instead. `amp_luigi.settings` applies them to its sections; nothing
here reads configuration or makes a request.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from amp_luigi.errors import ConfigError

N = TypeVar("N", int, float)
EXPORT_URLS = {
    "eu": "https://analytics.eu.amplitude.com/api/2/export",
    "us": "https://amplitude.com/api/2/export",
}

# S3's bucket naming rules (general purpose buckets): 3-63 characters of lowercase letters, digits,
# dots and hyphens, beginning and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Characters S3 keys allow but tools that read prefixes (Athena, Spark, the aws CLI) handle badly.
_AWKWARD = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class Setting:
    """Where a user sets one value: a luigi.cfg option and, for some, an environment variable (only
    that, for a project's keys: see env_only)."""

    section: str
    option: str
    env: str | None = None

    @classmethod
    def env_only(cls, env: str) -> Setting:
        return cls("", "", env)

    def __str__(self) -> str:
        where = f"[{self.section}] {self.option}" if self.section else ""
        return f"{self.env} ({where})" if self.env and where else self.env or where


def bucket_name(value: str, setting: Setting) -> str:
    """A bucket name as S3 defines it; a URL or a path is recognised and the split explained."""
    name = value.strip()
    parts = urlsplit(name)
    if parts.scheme:
        bucket, _, path = (
            f"{parts.netloc}{parts.path}".partition("/") if parts.scheme == "s3" else ("", "", "")
        )
        if bucket:
            raise ConfigError(f"{setting} = {value!r} is a URL, not a bucket name: {_split(bucket, path)}")
        raise ConfigError(
            f"{setting} = {value!r} is a URL, not a bucket name: write the bucket's name alone, and put a "
            "custom S3 endpoint in AWS_ENDPOINT_URL_S3."
        )
    if "/" in name:
        bucket, _, path = name.strip("/").partition("/")
        raise ConfigError(f"{setting} = {value!r} holds a path: {_split(bucket, path)}")
    if not _BUCKET.fullmatch(name) or ".." in name or _is_ip(name):
        raise ConfigError(
            f"{setting} = {value!r} is not a valid S3 bucket name: 3 to 63 lowercase letters, digits, dots "
            "and hyphens, beginning and ending with a letter or digit, not an IP address."
        )
    return name


def _split(bucket: str, path: str) -> str:
    if not path.strip("/"):
        return f"set it to {bucket}."
    return f"set it to {bucket} and AMP_S3_PREFIX ([storage] prefix) to {path.strip('/')}."


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def key_prefix(value: str, setting: Setting) -> str:
    """The prefix without leading or trailing slashes (so `/team/amp/` = `team/amp`); no empty segment."""
    prefix = value.strip().strip("/")
    segments = prefix.split("/")
    if prefix and any(segment in ("", ".", "..") for segment in segments):
        cleaned = "/".join(segment for segment in segments if segment not in ("", ".", ".."))
        raise ConfigError(
            f"{setting} = {value!r} has an empty, '.' or '..' path segment, which Athena, Spark and most "
            f"S3 tools mishandle: write {cleaned!r}."
        )
    if _AWKWARD.search(prefix):
        raise ConfigError(f"{setting} = {value!r} holds a control character or a backslash: remove it.")
    return prefix


def s3_location(value: str, setting: Setting) -> tuple[str, str]:
    """`s3://bucket/prefix` as its bucket and prefix (both checked); ('', '') when empty."""
    text = value.strip()
    if not text:
        return "", ""
    if not text.startswith("s3://"):
        raise ConfigError(
            f"{setting} = {value!r} is not an S3 location: write s3://<bucket>/<prefix>, e.g. "
            "s3://my-bucket/amp-staging (or leave it empty to stage on this host's disk, [staging] data_dir)."
        )
    bucket, _, prefix = text.removeprefix("s3://").partition("/")
    return bucket_name(bucket, setting), key_prefix(prefix, setting)


def http_url(value: str, setting: Setting, example: str) -> str:
    parts = urlsplit(value.strip())
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{setting} = {value!r} is not an http(s) URL with a host: use e.g. {example}.")
    return value.strip()


def credential(value: str, setting: Setting) -> str:
    """A key without the whitespace a paste adds around it; never shown in a message."""
    key = value.strip()
    if any(char.isspace() or not char.isprintable() for char in key):
        raise ConfigError(
            f"{setting} holds a space or an unprintable character inside the key (not shown here): paste "
            "the key again exactly as Amplitude or AWS shows it."
        )
    return key


def at_least(value: N, minimum: float, setting: Setting, why: str = "") -> N:
    if value < minimum:
        raise ConfigError(f"{setting} = {value:g} must be at least {minimum:g}{why}.")
    return value


def between(value: N, low: float, high: float, setting: Setting, why: str = "") -> N:
    if not low <= value <= high:
        raise ConfigError(f"{setting} = {value:g} must be between {low:g} and {high:g}{why}.")
    return value


def not_after_today(first_date: dt.date, setting: Setting) -> dt.date:
    if first_date > dt.date.today():
        raise ConfigError(f"{setting} = {first_date} is in the future: set the day the project started.")
    return first_date


def region_url(region: str, setting: Setting) -> str:
    """The export URL of Amplitude's data region `region`."""
    if region not in EXPORT_URLS:
        raise ConfigError(
            f"Unknown Amplitude region {region!r}: set {setting} to one of {', '.join(sorted(EXPORT_URLS))}, "
            "or a full export URL (AMP_EXPORT_URL, or `url` in a project's section)."
        )
    return EXPORT_URLS[region]


def one_of(value: str, choices: tuple[str, ...], setting: Setting) -> str:
    if value not in choices:
        raise ConfigError(f"{setting} = {value!r} is not one of {', '.join(choices)}.")
    return value


def staging_dir(path: Path, setting: Setting) -> None:
    """The directory exists (created if missing) and this process can write files in it."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{setting} = {str(path)!r} is a file, not a directory: point it at a directory.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ConfigError(
            f"{setting} = {str(path)!r} cannot be used as the staging directory ({error.strerror or error}): "
            f"point it at a directory this user ({_user()}) can write."
        ) from error


def _user() -> str:
    try:
        return os.getlogin()
    except OSError:
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "this user"
