"""Settings, declared once: each luigi.Config section's options with their defaults, the environment
variable that overrides one, and the rule its value must meet.

Every option can be set in `luigi.cfg` (sections `[amplitude]`, `[storage]`, `[staging]`,
`[parquet]`, `[iceberg]`) or, for the names the original cron script used, by an environment variable, which
wins over the file. A `.env` file in the working directory is read too, on the first setting read,
without overriding the real environment. Secrets are private parameters and are never logged or
shown in the scheduler (Config classes are not tasks).

A value is read through `Section.value(option)`, which applies the option's rule (amp_luigi.validation)
and raises a ConfigError naming the variable and the option; `problems()` applies every rule at
once. Nothing here builds a client or checks a project: amp_luigi.projects resolves a project's
settings, builds its clients and is the one gate (`projects.checked`) every command and task passes
before its first request.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import luigi
from luigi.parameter import ParameterVisibility

from amp_luigi import luigi_defaults
from amp_luigi.errors import ConfigError
from amp_luigi.layout import parquet_prefix
from amp_luigi.members import Limits
from amp_luigi.proof import CHOICES as PROOFS
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
    s3_location,
)
from amp_luigi.volume import VolumeRule
from amp_luigi.windows import Budget

logger = logging.getLogger(__name__)
Rule = Callable[[Any, Setting], Any]
# Amplitude: "data is available for export about 2 hours after the hour ends".
AMPLITUDE_LAG_HOURS = 2.0
_warned: set[float] = set()
_PRIVATE = ParameterVisibility.PRIVATE


@functools.cache
def _read_dotenv() -> None:
    """The working directory's `.env`, read once, on the first setting read: not when imported, which
    would change the environment of a program that only embeds amp-luigi."""
    dotenv = Path.cwd() / ".env"
    if dotenv.is_file():  # python-dotenv takes ~16 ms to import, and most deployments have no .env
        from dotenv import load_dotenv

        load_dotenv(dotenv, override=False)


def read_env(name: str) -> str:
    """An environment variable (after `.env` is read), '' when unset."""
    _read_dotenv()
    return os.environ.get(name, "")


def forget_dotenv() -> None:
    """Read `.env` again on the next setting read (between in-process tests)."""
    _read_dotenv.cache_clear()


class Section(luigi.Config):
    """A section of luigi.cfg whose options an environment variable may override (`env`) and whose
    values must meet their rules (`rules`). `required` options must be set somewhere; `per_project`
    ones are checked where a project takes them (amp_luigi.projects), not with the section."""

    env: ClassVar[dict[str, str]] = {}
    rules: ClassVar[dict[str, Rule]] = {}
    required: ClassVar[tuple[str, ...]] = ()
    per_project: ClassVar[tuple[str, ...]] = ()

    def setting(self, option: str) -> Setting:
        """How a user sets `option`: its environment variable and its luigi.cfg option."""
        return Setting(self.get_task_family(), option, self.env.get(option))

    def value(self, option: str) -> Any:
        """The option's value (the environment variable if set, else luigi.cfg's), checked by its rule."""
        variable = self.env.get(option)
        value = (read_env(variable) if variable else "") or getattr(self, option)
        if option in self.required and not value:
            where = f"the environment variable {variable} or " if variable else ""
            raise ConfigError(
                f"{option} is not set: set {where}`{option}` in the [{self.get_task_family()}] section of luigi.cfg."
            )
        rule = self.rules.get(option)
        return value if rule is None else rule(value, self.setting(option))

    def combined(self) -> list[Callable[[], object]]:
        """The checks of values that depend on each other."""
        return []

    def problems(self) -> list[str]:
        """What is wrong with this section, every problem at once."""
        shared = [option for option in self.rules if option not in self.per_project]
        return failures([*(functools.partial(self.value, option) for option in shared), *self.combined()])


def _least(minimum: float, why: str = "") -> Rule:
    return lambda value, setting: at_least(value, minimum, setting, why)


def _within(low: float, high: float, why: str = "") -> Rule:
    return lambda value, setting: between(value, low, high, setting, why)


class amplitude(Section):
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
    window_mib = luigi.IntParameter(
        default=512,
        description="Several missing days go in one request while their estimated archive stays under this "
        "(MiB); Amplitude refuses over 4 GB.",
    )
    max_window_days = luigi.IntParameter(
        default=31, description="At most this many days in one request (Amplitude allows 365)."
    )

    env = {"api_key": "AMP_API_KEY", "secret_key": "AMP_SECRET_KEY", "url": "AMP_EXPORT_URL"}
    required = ("api_key", "secret_key")
    # The keys are checked per project: a configuration that names projects has none here.
    per_project = ("api_key", "secret_key")
    rules = {
        "api_key": credential,
        "secret_key": credential,
        "availability_lag_hours": _least(0, ": a day would be exported before it ends"),
        "first_date": not_after_today,
        "max_attempts": _least(1),
        "backoff_seconds": _least(0),
        "connect_timeout": _least(0.1),
        "read_timeout": _least(1),
        "window_mib": _within(1, 4000, ": Amplitude refuses an export over 4 GB"),
        "max_window_days": _within(1, 365, ": Amplitude exports at most 365 days per request"),
    }

    def export_url(self) -> str:
        url = self.value("url")
        if not url:
            return region_url(self.region, self.setting("region"))
        return http_url(url, self.setting("url"), EXPORT_URLS["eu"])

    def credentials(self) -> tuple[str, str]:
        return self.value("api_key"), self.value("secret_key")

    def budget(self) -> Budget:
        return Budget(self.value("window_mib") * 1024 * 1024, self.value("max_window_days"))

    def combined(self) -> list[Callable[[], object]]:
        return [
            self.export_url,
            lambda: at_least(
                self.max_backoff_seconds,
                self.backoff_seconds,
                self.setting("max_backoff_seconds"),
                " (backoff_seconds)",
            ),
        ]


class storage(Section):
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

    env = {
        "bucket": "AWS_BUCKET_NAME",
        "prefix": "AMP_S3_PREFIX",
        "upload_proof": "AMP_S3_UPLOAD_PROOF",
        "access_key": "ACCESS_KEY",
        "secret_access_key": "SECRET_ACCESS_KEY",
    }
    required = ("bucket",)
    # A deployment whose projects each name their own bucket needs no AWS_BUCKET_NAME.
    per_project = ("bucket",)
    rules = {
        "bucket": bucket_name,
        "prefix": key_prefix,
        "part_size_mib": _within(5, 5120, ": S3's limits for a part"),
        "upload_proof": lambda value, setting: one_of(value, PROOFS, setting),
        "access_key": credential,
        "secret_access_key": credential,
        "upload_threads": _within(1, 64),
        "max_attempts": _least(1),
    }

    def part_size(self) -> int:
        return int(self.value("part_size_mib")) * 1024 * 1024

    def aws_keys(self) -> tuple[str, str]:
        """ACCESS_KEY and SECRET_ACCESS_KEY, both or neither ('', '': boto3's standard chain)."""
        key, secret = self.value("access_key"), self.value("secret_access_key")
        if bool(key) != bool(secret):
            raise ConfigError("Set both ACCESS_KEY and SECRET_ACCESS_KEY, or neither (to use the AWS chain).")
        return key, secret

    def combined(self) -> list[Callable[[], object]]:
        # botocore reads the endpoint variables itself; a malformed one is named before it does.
        return [
            self.aws_keys,
            *(
                functools.partial(
                    http_url, os.environ[name], Setting("storage", "endpoint", name), "http://127.0.0.1:9000"
                )
                for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
                if os.environ.get(name)
            ),
        ]


class staging(Section):
    """Where a day's tasks hand each other their files, and the limits that protect them from hostile
    archives: this host's disk (data_dir, the default), or an S3 location every host shares (location)."""

    data_dir = luigi.Parameter(
        default="amp-data",
        description="Staging directory (AMP_DATA_DIR); with an S3 location, only locks and bounded temporary files.",
    )
    location = luigi.Parameter(
        default="",
        description="s3://bucket/prefix (AMP_STAGING_LOCATION): stage in S3, so any host runs any stage of any day.",
    )
    keep = luigi.BoolParameter(default=False, description="Keep a day's staging files after success.")
    max_inflate_ratio = luigi.IntParameter(
        default=200, description="A member inflating more than this many times its size is refused."
    )
    max_line_mib = luigi.IntParameter(default=64, description="Longest event line accepted (MiB).")

    env = {"data_dir": "AMP_DATA_DIR", "location": "AMP_STAGING_LOCATION"}
    # The directory itself is checked per project (each has its own below it): amp_luigi.projects.
    rules = {"location": s3_location, "max_inflate_ratio": _least(2), "max_line_mib": _within(1, 1024)}

    def root(self) -> Path:
        return Path(self.value("data_dir")).expanduser().resolve()

    def limits(self) -> Limits:
        return Limits(self.value("max_inflate_ratio"), self.value("max_line_mib") * 1024 * 1024)


class parquet(Section):
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

    rules = {"prefix": key_prefix, "memory_limit_mib": _least(64), "threads": _within(1, 64)}

    def key_prefix(self, storage_prefix: str) -> str:
        return self.value("prefix") or parquet_prefix(storage_prefix)


ICEBERG_CATALOGS = ("sql", "glue", "rest")
ICEBERG_PARTITIONS = ("day", "month")


def _catalog_uri(value: str, setting: Setting) -> str:
    """'' (the embedded SQLite catalog), a SQLAlchemy URL for `sql`, or the REST catalog's http(s) URL.
    Never shown in a message: a database URL can hold a password."""
    uri = value.strip()
    if uri and not re.match(r"[a-z][a-z0-9+.-]*://", uri):
        raise ConfigError(
            f"{setting} is not a URL (not shown here): write e.g. sqlite:////var/lib/amp/catalog.db (sql) or "
            "https://catalog.example.com (rest), or leave it empty for the embedded SQLite catalog."
        )
    return uri


def _identifier(value: str, setting: Setting) -> str:
    """A Glue- and Athena-safe name: lower-case letters, digits and underscores."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,99}", value):
        raise ConfigError(
            f"{setting} = {value!r} is not a name Glue and Athena accept: use lower-case letters, digits "
            "and underscores, starting with a letter."
        )
    return value


class iceberg(Section):
    """The Apache Iceberg table of the events by event time (IcebergDay, `pip install amp-luigi[iceberg]`)."""

    enabled = luigi.BoolParameter(
        default=False, description="ExportRange also commits every day to the table (like --of IcebergDay)."
    )
    catalog = luigi.Parameter(
        default="sql", description="sql (embedded SQLite by default), glue (AWS Glue, for Athena) or rest."
    )
    uri = luigi.Parameter(
        default="",
        visibility=_PRIVATE,  # a database URL can hold a password
        significant=False,
        description="sql: a SQLAlchemy URL (default: SQLite in the staging directory); rest: the catalog URL.",
    )
    credential = luigi.Parameter(
        default="",
        visibility=_PRIVATE,
        significant=False,
        description="rest: the OAuth2 client credential, `id:secret` (AMP_ICEBERG_CREDENTIAL).",
    )
    token = luigi.Parameter(
        default="",
        visibility=_PRIVATE,
        significant=False,
        description="rest: a bearer token instead of a credential (AMP_ICEBERG_TOKEN).",
    )
    warehouse = luigi.Parameter(default="", description="rest: the warehouse the catalog serves, if it asks.")
    region = luigi.Parameter(
        default="", description="glue: the AWS region of the Data Catalog; default: the AWS chain's."
    )
    namespace = luigi.Parameter(
        default="amplitude", description="The namespace (Glue database) of the tables."
    )
    table = luigi.Parameter(
        default="events", description="The table's name; a named project's table is <table>_<project>."
    )
    partition = luigi.Parameter(
        default="day",
        description="Partition by the event time's day, or by month for small projects (fewer, larger files).",
    )
    memory_limit_mib = luigi.IntParameter(
        default=160,
        description="DuckDB's memory limit (MiB) while it types, deduplicates and writes a day's rows; "
        "with pyiceberg's and pyarrow's own ~200 MiB, a 250k-event day peaks under 400 MiB.",
    )

    env = {"uri": "AMP_ICEBERG_URI", "credential": "AMP_ICEBERG_CREDENTIAL", "token": "AMP_ICEBERG_TOKEN"}
    rules = {
        "catalog": lambda value, setting: one_of(value, ICEBERG_CATALOGS, setting),
        "partition": lambda value, setting: one_of(value, ICEBERG_PARTITIONS, setting),
        "uri": _catalog_uri,
        # The module's credential() rule, which the options of the same name shadow in the class body.
        "credential": lambda value, setting: credential(value, setting),
        "token": lambda value, setting: credential(value, setting),
        "namespace": _identifier,
        "table": _identifier,
        "memory_limit_mib": _least(160, ": DuckDB runs out typing a day of ~2 KB events below it"),
    }

    def combined(self) -> list[Callable[[], object]]:
        return [self._rest_uri] if self.value("catalog") == "rest" else [self._shared_catalog]

    def _shared_catalog(self) -> None:
        """With staging in S3 the workers are several hosts, or containers whose disk goes with
        them: a catalog on one host's disk would give each its own table history."""
        local = self.value("catalog") == "sql" and not self.value("uri")
        if self.enabled and local and staging().value("location")[0]:
            raise ConfigError(
                f"[iceberg] catalog = sql without a uri keeps the table's catalog in SQLite on this host's disk, "
                f"but {staging().setting('location')} stages in S3 for workers on several hosts: set "
                "[iceberg] catalog = glue or rest, or a uri (AMP_ICEBERG_URI) of a database every host reaches."
            )

    def _rest_uri(self) -> None:
        if not self.value("uri").startswith(("http://", "https://")):
            raise ConfigError(
                f"[iceberg] catalog = rest needs the catalog's http(s) URL: set {self.setting('uri')}."
            )


class volume(Section):
    """When a verified day's event count is a volume anomaly (amp_luigi.volume): `status`, its
    `--fail-on-anomaly`, the metrics file and the report all use this one rule."""

    weeks = luigi.IntParameter(default=4, description="Weeks of the same weekday a day is compared with.")
    min_history = luigi.IntParameter(
        default=3, description="How many of those weeks must be verified for a verdict (fewer: none)."
    )
    low = luigi.FloatParameter(default=0.5, description="Anomalous below this times the usual level.")
    high = luigi.FloatParameter(default=2.0, description="Anomalous above this times the usual level.")

    rules = {
        "weeks": _within(1, 52),
        "min_history": _least(1),
        "low": _within(0, 1, ": a fraction of the usual level"),
        "high": _least(1, ": a multiple of the usual level"),
    }

    def combined(self) -> list[Callable[[], object]]:
        return [
            lambda: between(
                self.value("min_history"), 1, self.value("weeks"), self.setting("min_history"), " (weeks)"
            )
        ]

    def rule(self) -> VolumeRule:
        return VolumeRule(
            self.value("weeks"), self.value("min_history"), self.value("low"), self.value("high")
        )


SECTIONS: tuple[type[Section], ...] = (amplitude, storage, staging, parquet, iceberg, volume)


def failures(checks: list[Callable[[], object]]) -> list[str]:
    """The message of every check that raises ConfigError, in order."""
    found = []
    for check in checks:
        try:
            check()
        except ConfigError as error:
            found.append(str(error))
    return found


def problems() -> list[str]:
    """Everything wrong with the settings all projects share: unreadable values first, then each
    section's rules (the projects' own, and their keys, are amp_luigi.projects' to check)."""
    found = _unreadable() or [problem for section in SECTIONS for problem in section().problems()]
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


def export_cap(project: str) -> int:
    """How many of the project's exports run at once, as this worker's [resources] says."""
    return luigi_defaults.export_cap(luigi.configuration.get_config(), project)


def config_section(section: str) -> dict[str, str]:
    """One section's options as written (a project's, read by amp_luigi.projects)."""
    config = luigi.configuration.get_config()
    return {option: str(config.get(section, option)) for option in config.options(section)}


def _unreadable() -> list[str]:
    """Values luigi.cfg holds that their type cannot parse (Luigi itself would raise a bare ValueError)."""
    config = luigi.configuration.get_config()
    found = []
    for section in SECTIONS:
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
