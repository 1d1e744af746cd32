"""Settings: the luigi.Config sections that also build the things they configure, and one check of
every setting before the first request.

Every option can be set in `luigi.cfg` (sections `[amplitude]`, `[storage]`, `[staging]`,
`[parquet]`) or, for the names the original cron script used, by an environment variable, which
wins over the file. A `.env` file in the working directory is read too, on the first setting read,
without overriding the real environment. Secrets are private parameters and are never logged or
shown in the scheduler (Config classes are not tasks). `validated()` applies amp_luigi.validation's
rules to all of them once per process, and the S3 client calls it first; what belongs to one
Amplitude project (its keys, URL, bucket, prefixes, staging) is amp_luigi.projects', whose
`checked()` the tasks, `status`, `check` and `athena` call before anything else.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import luigi
from luigi.parameter import ParameterVisibility

from amp_luigi.errors import ConfigError
from amp_luigi.export_client import ExportClient, RetryPolicy
from amp_luigi.layout import parquet_prefix
from amp_luigi.members import Limits
from amp_luigi.proof import CHOICES as PROOFS
from amp_luigi.proof import Proof, resolve
from amp_luigi.s3 import Bucket, send_no_checksums
from amp_luigi.validation import (
    Setting,
    at_least,
    between,
    bucket_name,
    credential,
    http_url,
    key_prefix,
    one_of,
)

logger = logging.getLogger(__name__)
# Amplitude: "data is available for export about 2 hours after the hour ends".
AMPLITUDE_LAG_HOURS = 2.0
_warned: set[float] = set()


@functools.cache
def _read_dotenv() -> None:
    """The working directory's `.env`, read once, on the first setting read: not when imported, which
    would change the environment of a program that only embeds amp-luigi."""
    dotenv = Path.cwd() / ".env"
    if dotenv.is_file():  # python-dotenv takes ~16 ms to import, and most deployments have no .env
        from dotenv import load_dotenv

        load_dotenv(dotenv, override=False)


EXPORT_URLS = {
    "eu": "https://analytics.eu.amplitude.com/api/2/export",
    "us": "https://amplitude.com/api/2/export",
}

_PRIVATE = ParameterVisibility.PRIVATE


def read_env(name: str) -> str:
    """An environment variable (after `.env` is read), '' when unset."""
    _read_dotenv()
    return os.environ.get(name, "")


def _setting(value: str, section: str, option: str, env: str | None = None, *, required: bool = False) -> str:
    """The environment variable if set, else the luigi.cfg value; a required one must be one of them."""
    resolved = (read_env(env) if env else "") or value
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
            return region_url(self.region, Setting("amplitude", "region"))
        return http_url(url, Setting("amplitude", "url", "AMP_EXPORT_URL"), EXPORT_URLS["eu"])

    def credentials(self) -> tuple[str, str]:
        return (
            credential(
                _setting(self.api_key, "amplitude", "api_key", "AMP_API_KEY", required=True),
                Setting("amplitude", "api_key", "AMP_API_KEY"),
            ),
            credential(
                _setting(self.secret_key, "amplitude", "secret_key", "AMP_SECRET_KEY", required=True),
                Setting("amplitude", "secret_key", "AMP_SECRET_KEY"),
            ),
        )

    def problems(self) -> list[str]:
        """What is wrong with this section; the keys are checked per project (amp_luigi.projects)."""
        lag = Setting("amplitude", "availability_lag_hours")
        checks: list[Callable[[], object]] = [
            self.export_url,
            lambda: at_least(self.availability_lag_hours, 0, lag, ": a day would be exported before it ends"),
            lambda: at_least(self.max_attempts, 1, Setting("amplitude", "max_attempts")),
            lambda: at_least(self.backoff_seconds, 0, Setting("amplitude", "backoff_seconds")),
            lambda: at_least(
                self.max_backoff_seconds,
                self.backoff_seconds,
                Setting("amplitude", "max_backoff_seconds"),
                " (backoff_seconds)",
            ),
            lambda: at_least(self.connect_timeout, 0.1, Setting("amplitude", "connect_timeout")),
            lambda: at_least(self.read_timeout, 1, Setting("amplitude", "read_timeout")),
            lambda: not_after_today(self.first_date, Setting("amplitude", "first_date")),
        ]
        return failures(checks)

    def client(self, url: str, keys: tuple[str, str], settings_named: tuple[str, str]) -> ExportClient:
        """A client of one project's export (amp_luigi.projects.Project.client checks its settings)."""
        return ExportClient(
            url,
            *keys,
            retry=RetryPolicy(self.max_attempts, self.backoff_seconds, self.max_backoff_seconds),
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            settings_named=settings_named,
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
    upload_proof = luigi.Parameter(
        default="auto",
        description="How each upload is proven (AMP_S3_UPLOAD_PROOF): auto, checksum, etag or none; "
        "see amp_luigi/proof.py.",
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
        return bucket_name(
            _setting(self.bucket, "storage", "bucket", "AWS_BUCKET_NAME", required=True),
            Setting("storage", "bucket", "AWS_BUCKET_NAME"),
        )

    def key_prefix(self) -> str:
        return key_prefix(
            _setting(self.prefix, "storage", "prefix", "AMP_S3_PREFIX"),
            Setting("storage", "prefix", "AMP_S3_PREFIX"),
        )

    def part_size(self) -> int:
        between(self.part_size_mib, 5, 5120, Setting("storage", "part_size_mib"), ": S3's limits for a part")
        return self.part_size_mib * 1024 * 1024

    def proof(self) -> Proof:
        value = _setting(self.upload_proof, "storage", "upload_proof", "AMP_S3_UPLOAD_PROOF")
        return resolve(
            one_of(value, PROOFS, Setting("storage", "upload_proof", "AMP_S3_UPLOAD_PROOF")), endpoint_url()
        )

    def problems(self) -> list[str]:
        # The bucket is checked where a project takes it (amp_luigi.projects): a deployment whose
        # projects each name their own needs no AWS_BUCKET_NAME.
        return failures(
            [
                self.key_prefix,
                self.part_size,
                self.proof,
                self._aws_keys,
                lambda: between(self.upload_threads, 1, 64, Setting("storage", "upload_threads")),
                lambda: at_least(self.max_attempts, 1, Setting("storage", "max_attempts")),
                *(
                    lambda name=name: http_url(
                        os.environ[name], Setting("storage", "endpoint", name), "http://127.0.0.1:9000"
                    )
                    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
                    if os.environ.get(name)
                ),
            ]
        )

    def _aws_keys(self) -> tuple[str, str]:
        key = credential(
            _setting(self.access_key, "storage", "access_key", "ACCESS_KEY"),
            Setting("storage", "access_key", "ACCESS_KEY"),
        )
        secret = credential(
            _setting(self.secret_access_key, "storage", "secret_access_key", "SECRET_ACCESS_KEY"),
            Setting("storage", "secret_access_key", "SECRET_ACCESS_KEY"),
        )
        if bool(key) != bool(secret):
            raise ConfigError("Set both ACCESS_KEY and SECRET_ACCESS_KEY, or neither (to use the AWS chain).")
        return key, secret

    def client(self) -> Any:
        """The process's boto3 S3 client (AWS_ENDPOINT_URL_S3 is read by botocore itself)."""
        validated()
        return _s3_client(*self._client_key())

    def open_bucket(self, name: str, probe_key: str) -> Bucket:
        """A project's bucket (amp_luigi.projects.Project.open_bucket), through client()."""
        return Bucket(
            self.client(),
            name,
            part_size=self.part_size(),
            threads=self.upload_threads,
            proof=self.proof(),
            probe_key=probe_key,
        )

    def _client_key(self) -> tuple[str, str, int, int, Proof, tuple[str, ...]]:
        return (*self._aws_keys(), self.max_attempts, self.upload_threads, self.proof(), _endpoint_env())


class staging(luigi.Config):
    """The local working area and the limits that protect it from hostile archives."""

    data_dir = luigi.Parameter(default="amp-data", description="Staging directory (AMP_DATA_DIR).")
    keep = luigi.BoolParameter(default=False, description="Keep a day's staging files after success.")
    max_inflate_ratio = luigi.IntParameter(
        default=200, description="A member inflating more than this many times its size is refused."
    )
    max_line_mib = luigi.IntParameter(default=64, description="Longest event line accepted (MiB).")

    def root(self) -> Path:
        return Path(_setting(self.data_dir, "staging", "data_dir", "AMP_DATA_DIR")).expanduser().resolve()

    def limits(self) -> Limits:
        return Limits(self.max_inflate_ratio, self.max_line_mib * 1024 * 1024)

    def problems(self) -> list[str]:
        return failures(
            [
                lambda: at_least(self.max_inflate_ratio, 2, Setting("staging", "max_inflate_ratio")),
                lambda: between(self.max_line_mib, 1, 1024, Setting("staging", "max_line_mib")),
            ]
        )


def failures(checks: list[Callable[[], object]]) -> list[str]:
    """The message of every check that raises ConfigError, in order."""
    found = []
    for check in checks:
        try:
            check()
        except ConfigError as error:
            found.append(str(error))
    return found


def not_after_today(first_date: dt.date, setting: Setting) -> None:
    if first_date > dt.date.today():
        raise ConfigError(f"{setting} = {first_date} is in the future: set the day the project started.")


def region_url(region: str, setting: Setting) -> str:
    if region not in EXPORT_URLS:
        raise ConfigError(
            f"Unknown Amplitude region {region!r}: set {setting} to one of {', '.join(sorted(EXPORT_URLS))}, "
            "or a full export URL (AMP_EXPORT_URL, or `url` in a project's section)."
        )
    return EXPORT_URLS[region]


def problems() -> list[str]:
    """Everything wrong with the settings all projects share: unreadable values first, then each
    section's rules (the projects' own, and their keys, are amp_luigi.projects' to check)."""
    unreadable = _unreadable()
    if unreadable:
        return unreadable
    found = [*amplitude().problems(), *storage().problems(), *staging().problems(), *parquet().problems()]
    lag = amplitude().availability_lag_hours
    if not found and lag < AMPLITUDE_LAG_HOURS and lag not in _warned:
        _warned.add(lag)
        logger.warning(
            "[amplitude] availability_lag_hours = %g is below the %g hours Amplitude needs to have an hour's "
            "events ready: a day exported that early can miss events and still be marked complete.",
            lag,
            AMPLITUDE_LAG_HOURS,
        )
    return found


def config_sections() -> list[str]:
    """The sections of the Luigi configuration (luigi.cfg and LUIGI_CONFIG_PATH)."""
    return list(luigi.configuration.get_config().sections())


def config_section(section: str) -> dict[str, str]:
    """One section's options as written (a project's, read by amp_luigi.projects)."""
    config = luigi.configuration.get_config()
    return {option: str(config.get(section, option)) for option in config.options(section)}


def _unreadable() -> list[str]:
    """Values luigi.cfg holds that their type cannot parse (Luigi itself would raise a bare ValueError)."""
    config = luigi.configuration.get_config()
    found = []
    for section in (amplitude, storage, staging, parquet):
        name = section.get_task_family()
        for option, parameter in section.get_params():
            raw = config.get(name, option, None)
            if raw is None:
                continue
            try:
                parameter.parse(raw)
            except (ValueError, TypeError):
                kind = type(parameter).__name__.removesuffix("Parameter").lower() or "text"
                found.append(
                    f"[{name}] {option} = {raw!r} in luigi.cfg is not a valid {kind}: fix or remove it."
                )
    return found


@functools.cache
def validated() -> None:
    """Every shared setting checked, once per process, before the first request to Amplitude or S3.

    Raises one ConfigError listing every problem, each naming its setting.
    """
    found = problems()
    if found:
        raise ConfigError("amp-luigi's settings are not usable:\n  - " + "\n  - ".join(found))


def _endpoint_env() -> tuple[str, ...]:
    """What botocore reads from the environment, and the process: a cache key for sessions and clients.

    The process id is in it because a forked Luigi worker must not share the parent's connections.
    """
    _read_dotenv()  # it may set any of these, which botocore reads itself
    names = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION")
    return (*(os.environ.get(name, "") for name in names), str(os.getpid()))


def endpoint_url() -> str:
    """The S3 endpoint botocore will use from the environment ('' = AWS's own)."""
    _read_dotenv()
    return os.environ.get("AWS_ENDPOINT_URL_S3", "") or os.environ.get("AWS_ENDPOINT_URL", "")


def _aws(
    key: str, secret: str, attempts: int, threads: int, proof: Proof
) -> tuple[boto3.session.Session, botocore.config.Config]:
    """A boto3 session (without ACCESS_KEY: the standard AWS chain) and the client configuration."""
    # A session holds no connection (its clients do), so a forked task keeps its parent's and skips
    # loading S3's service model again (~0.1 s of CPU per task); clients stay per process.
    return _session(key, secret, _endpoint_env()[:-1]), client_config(attempts, threads, proof)


def client_config(attempts: int, threads: int, proof: Proof) -> botocore.config.Config:
    return botocore.config.Config(
        retries={"mode": "adaptive", "max_attempts": attempts},
        max_pool_connections=max(10, 2 * threads),
        connect_timeout=15,
        read_timeout=120,
        # Every upload carries its digest (a CRC32 or a Content-MD5) in a signed header: a SHA-256
        # of the body in the signature as well (botocore's default when it did not add the checksum
        # itself, and always over plain HTTP) would hash every byte again for nothing.
        s3={"payload_signing_enabled": False},
        # Checksum headers only where the proof uses them: several S3-compatible stores refuse them.
        request_checksum_calculation="when_supported" if proof.sends_checksums else "when_required",
        response_checksum_validation="when_supported" if proof.sends_checksums else "when_required",
    )


_RESET: list[Any] = []


def forget_on_reset(cached: Any) -> None:
    """Have reset_clients() clear another module's cache of what the settings said."""
    _RESET.append(cached)


def reset_clients() -> None:
    """Forget the cached sessions, clients and validation, e.g. between in-process tests."""
    for cached in (_session, _s3_client, validated, _read_dotenv, *_RESET):
        cached.cache_clear()


@functools.lru_cache(maxsize=8)
def _session(key: str, secret: str, endpoint: tuple[str, ...]) -> boto3.session.Session:
    # A session loads S3's service model (a fifth of a second, ~10 MB) once for all of its clients.
    return boto3.session.Session(aws_access_key_id=key or None, aws_secret_access_key=secret or None)


@functools.lru_cache(maxsize=8)
def _s3_client(
    key: str, secret: str, attempts: int, threads: int, proof: Proof, endpoint: tuple[str, ...]
) -> Any:
    # boto3 clients are thread-safe; one per process serves every task and upload thread.
    session, config = _aws(key, secret, attempts, threads, proof)
    client = session.client("s3", config=config)
    if not proof.sends_checksums:
        send_no_checksums(client)
    return client


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
        return key_prefix(self.prefix, Setting("parquet", "prefix")) or parquet_prefix(storage_prefix)

    def problems(self) -> list[str]:
        return failures(
            [
                lambda: key_prefix(self.prefix, Setting("parquet", "prefix")),
                lambda: at_least(self.memory_limit_mib, 64, Setting("parquet", "memory_limit_mib")),
                lambda: between(self.threads, 1, 64, Setting("parquet", "threads")),
            ]
        )
