"""Settings: three luigi.Config sections that also build the things they configure.

Every option can be set in `luigi.cfg` (sections `[amplitude]`, `[storage]`, `[staging]`) or, for the
names the original cron script used, by an environment variable, which wins over the file. A `.env`
file in the working directory is read too, without overriding the real environment. Secrets are
private parameters and are never logged or shown in the scheduler (Config classes are not tasks).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.config
import luigi
from luigi.contrib.s3 import S3Client
from luigi.parameter import ParameterVisibility

from amp_luigi.amplitude import ExportClient, RetryPolicy
from amp_luigi.archive import Limits
from amp_luigi.errors import ConfigError
from amp_luigi.storage import Bucket, luigi_client

_DOTENV = Path.cwd() / ".env"
if _DOTENV.is_file():  # python-dotenv takes ~16 ms to import, and most deployments have no .env
    from dotenv import load_dotenv

    load_dotenv(_DOTENV, override=False)

EXPORT_URLS = {
    "eu": "https://analytics.eu.amplitude.com/api/2/export",
    "us": "https://amplitude.com/api/2/export",
}

_PRIVATE = ParameterVisibility.PRIVATE


def _setting(value: str, section: str, option: str, env: str | None = None, *, required: bool = False) -> str:
    """The environment variable if set, else the luigi.cfg value; a required one must be one of them."""
    resolved = (os.environ.get(env, "") if env else "") or value
    if required and not resolved:
        where = f"the environment variable {env} or " if env else ""
        raise ConfigError(
            f"{option} is not set: set {where}`{option}` in the [{section}] section of luigi.cfg."
        )
    return resolved


class amplitude(luigi.Config):
    """How to reach Amplitude's Export API, and how hard to try."""

    # Secrets are private (not sent to the scheduler) and insignificant (left out of repr and task ids).
    api_key = luigi.Parameter(
        default="", visibility=_PRIVATE, significant=False, description="Project API key (AMP_API_KEY)."
    )
    secret_key = luigi.Parameter(
        default="", visibility=_PRIVATE, significant=False, description="Project secret key (AMP_SECRET_KEY)."
    )
    region = luigi.Parameter(default="eu", description="Data region of the project: eu or us.")
    url = luigi.Parameter(
        default="", description="Full export URL; overrides region (AMP_EXPORT_URL), e.g. a local emulator."
    )
    availability_lag_hours = luigi.FloatParameter(
        default=2.0, description="Hours after an hour ends before Amplitude has all of it for export."
    )
    first_date = luigi.DateParameter(
        default=dt.date(2012, 1, 1), description="First day the project has data; earlier days are refused."
    )
    max_attempts = luigi.IntParameter(
        default=3, description="Attempts per request for transient faults (429, 5xx, timeouts, truncation)."
    )
    backoff_seconds = luigi.FloatParameter(
        default=5.0, description="Base of the exponential backoff between attempts (with jitter)."
    )
    max_backoff_seconds = luigi.FloatParameter(
        default=300.0, description="Upper bound of one wait, including a server's Retry-After."
    )
    connect_timeout = luigi.FloatParameter(default=15.0, description="Seconds to connect.")
    read_timeout = luigi.FloatParameter(
        default=900.0, description="Seconds to wait for the next byte; Amplitude can think for minutes."
    )

    def export_url(self) -> str:
        url = _setting(self.url, "amplitude", "url", "AMP_EXPORT_URL")
        if not url:
            if self.region not in EXPORT_URLS:
                raise ConfigError(
                    f"Unknown Amplitude region {self.region!r}: set `region` in the [amplitude] section of "
                    f"luigi.cfg to one of {', '.join(sorted(EXPORT_URLS))}, or AMP_EXPORT_URL to a full URL."
                )
            return EXPORT_URLS[self.region]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"AMP_EXPORT_URL / [amplitude] url {url!r} is not an http(s) URL: "
                f"use e.g. {EXPORT_URLS['eu']}."
            )
        return url

    def credentials(self) -> tuple[str, str]:
        return (
            _setting(self.api_key, "amplitude", "api_key", "AMP_API_KEY", required=True),
            _setting(self.secret_key, "amplitude", "secret_key", "AMP_SECRET_KEY", required=True),
        )

    def client(self) -> ExportClient:
        api_key, secret_key = self.credentials()
        return ExportClient(
            self.export_url(),
            api_key,
            secret_key,
            retry=RetryPolicy(self.max_attempts, self.backoff_seconds, self.max_backoff_seconds),
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )


class storage(luigi.Config):
    """Where the events land in S3 and how they are uploaded."""

    bucket = luigi.Parameter(default="", description="Target bucket (AWS_BUCKET_NAME).")
    prefix = luigi.Parameter(
        default="python_import", description="Key prefix of all objects (AMP_S3_PREFIX)."
    )
    keep_gzip = luigi.BoolParameter(
        default=False, description="Upload the .json.gz members as they are instead of NDJSON."
    )
    upload_threads = luigi.IntParameter(default=4, description="Objects uploaded or checked at once.")
    part_size_mib = luigi.IntParameter(default=16, description="Multipart upload part size (MiB, >= 5).")
    max_attempts = luigi.IntParameter(
        default=8, description="botocore attempts per S3 call (throttling, 5xx), adaptive backoff."
    )
    access_key = luigi.Parameter(
        default="",
        visibility=_PRIVATE,
        significant=False,
        description="AWS access key id (ACCESS_KEY); else the AWS chain.",
    )
    secret_access_key = luigi.Parameter(
        default="", visibility=_PRIVATE, significant=False, description="AWS secret key (SECRET_ACCESS_KEY)."
    )

    def bucket_name(self) -> str:
        return _setting(self.bucket, "storage", "bucket", "AWS_BUCKET_NAME", required=True)

    def key_prefix(self) -> str:
        return _setting(self.prefix, "storage", "prefix", "AMP_S3_PREFIX").strip("/")

    def part_size(self) -> int:
        if self.part_size_mib < 5:
            raise ConfigError("[storage] part_size_mib must be at least 5: S3 refuses smaller parts.")
        return self.part_size_mib * 1024 * 1024

    def _aws_keys(self) -> tuple[str, str]:
        key = _setting(self.access_key, "storage", "access_key", "ACCESS_KEY")
        secret = _setting(self.secret_access_key, "storage", "secret_access_key", "SECRET_ACCESS_KEY")
        if bool(key) != bool(secret):
            raise ConfigError("Set both ACCESS_KEY and SECRET_ACCESS_KEY, or neither (to use the AWS chain).")
        return key, secret

    def client(self) -> Any:
        """The process's boto3 S3 client (AWS_ENDPOINT_URL_S3 is read by botocore itself)."""
        return _s3_client(*self._aws_keys(), self.max_attempts, self.upload_threads, _endpoint_env())

    def open_bucket(self) -> Bucket:
        """The target bucket, through client()."""
        return Bucket(
            self.client(), self.bucket_name(), part_size=self.part_size(), threads=self.upload_threads
        )

    def target_client(self) -> S3Client:
        """A luigi S3Client over the same session, for the S3Target markers; one per process."""
        return _luigi_client(*self._aws_keys(), self.max_attempts, self.upload_threads, _endpoint_env())


class staging(luigi.Config):
    """The local working area and the limits that protect it from hostile archives."""

    data_dir = luigi.Parameter(default="amp-data", description="Staging directory (AMP_DATA_DIR).")
    keep = luigi.BoolParameter(default=False, description="Keep a day's staging files after success.")
    max_inflate_ratio = luigi.IntParameter(
        default=200, description="A member inflating more than this many times its size is refused."
    )
    max_line_mib = luigi.IntParameter(default=64, description="Longest event line accepted (MiB).")

    def root(self) -> Path:
        return Path(_setting(self.data_dir, "staging", "data_dir", "AMP_DATA_DIR")).resolve()

    def limits(self) -> Limits:
        return Limits(self.max_inflate_ratio, self.max_line_mib * 1024 * 1024)


def _endpoint_env() -> tuple[str, ...]:
    """What botocore reads from the environment, and the process: a cache key for sessions and clients.

    The process id is in it because a forked Luigi worker must not share the parent's connections.
    """
    names = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION")
    return (*(os.environ.get(name, "") for name in names), str(os.getpid()))


def _aws(
    key: str, secret: str, attempts: int, threads: int
) -> tuple[boto3.session.Session, botocore.config.Config]:
    """A boto3 session (without ACCESS_KEY: the standard AWS chain) and the client configuration."""
    session = _session(key, secret, _endpoint_env())
    config = botocore.config.Config(
        retries={"mode": "adaptive", "max_attempts": attempts},
        max_pool_connections=max(10, 2 * threads),
        connect_timeout=15,
        read_timeout=120,
        # Every upload carries, in a signed header, the CRC32 S3 checks the body against: a SHA-256
        # of the body in the signature as well (botocore's default when it did not add the checksum
        # itself, and always over plain HTTP) would hash every byte again for nothing.
        s3={"payload_signing_enabled": False},
    )
    return session, config


def reset_clients() -> None:
    """Forget the cached sessions and clients, e.g. between in-process tests that patch `_aws`."""
    for cached in (_session, _s3_client, _luigi_client):
        cached.cache_clear()


@functools.lru_cache(maxsize=8)
def _session(key: str, secret: str, endpoint: tuple[str, ...]) -> boto3.session.Session:
    # One per process: a session loads S3's service model (a fifth of a second, ~10 MB) once for all
    # of its clients.
    return boto3.session.Session(aws_access_key_id=key or None, aws_secret_access_key=secret or None)


@functools.lru_cache(maxsize=8)
def _s3_client(key: str, secret: str, attempts: int, threads: int, endpoint: tuple[str, ...]) -> Any:
    # boto3 clients are thread-safe; one per process serves every task and upload thread.
    session, config = _aws(key, secret, attempts, threads)
    return session.client("s3", config=config)


@functools.lru_cache(maxsize=8)
def _luigi_client(key: str, secret: str, attempts: int, threads: int, endpoint: tuple[str, ...]) -> S3Client:
    # Cached because Luigi calls output() for every completeness check; `endpoint` is in the key
    # so a changed AWS_ENDPOINT_URL_S3 gets its own client.
    return luigi_client(*_aws(key, secret, attempts, threads))


class parquet(luigi.Config):
    """The query-ready Parquet layer (ParquetDay, `pip install amp-luigi[parquet]`) and DuckDB's bounds."""

    enabled = luigi.BoolParameter(
        default=False, description="ExportRange also converts every day to Parquet (like --of ParquetDay)."
    )
    prefix = luigi.Parameter(
        default="", description="Key prefix of the Parquet files; default: the storage prefix + '_parquet'."
    )
    memory_limit_mib = luigi.IntParameter(
        default=256, description="DuckDB's memory limit (MiB); it spills to the temp directory beyond it."
    )
    threads = luigi.IntParameter(
        default=1, description="DuckDB threads per conversion; each needs ~128 MiB more memory_limit_mib."
    )

    def key_prefix(self, storage_prefix: str) -> str:
        # Beside the raw prefix, not inside it: a table location over the raw prefix (or this one)
        # reads every object below it, and the two layers must not read each other's files.
        return self.prefix.strip("/") or f"{storage_prefix}_parquet"
