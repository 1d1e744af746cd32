"""Several Amplitude projects in one deployment, each with its own keys, export cap, S3 prefix and staging.

A named project is declared by a section of luigi.cfg, `[project.web]` (it may be empty), and its
keys come from the environment or `.env` as AMP_WEB_API_KEY and AMP_WEB_SECRET_KEY, never from
luigi.cfg or a task parameter. Every day task carries the name as `--project web`, so task ids, the
visualiser, logs and errors say which project a day belongs to. The section may set `region` or
`url`, `first_date`, `bucket`, `prefix` and `parquet_prefix`; the rest ([amplitude] retries and lag,
[storage] upload settings, [staging] limits) is shared. By default a project's objects live under
`<[storage] prefix>/<name>/`, its staging under `<data_dir>/<name>/`, and its exports take the
Luigi resource `amplitude_export_<name>` (Amplitude's concurrency limit is per project).

When luigi.cfg names no project, the one project is the unnamed one (`--project` left out): today's
single-project configuration, AMP_API_KEY and AMP_SECRET_KEY, `[storage] prefix`, the resource
`amplitude_export`, with the S3 keys, staging paths and task ids it always had. Once projects are
named, every project is named: the unnamed project's keys are refused rather than silently left out
of `ExportRange`. An existing bucket need not move: name its project and set `prefix` to the old
prefix (the same keys, nothing exported again).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

from amp_luigi import aws, settings
from amp_luigi.errors import ConfigError
from amp_luigi.export_client import ExportClient, RetryPolicy
from amp_luigi.layout import (
    date_named,
    join_key,
    parquet_prefix,
    probe_key,
    project_prefix,
    project_staging,
)
from amp_luigi.luigi_defaults import PROJECT_SECTION as SECTION
from amp_luigi.luigi_defaults import project_names
from amp_luigi.s3 import Bucket
from amp_luigi.staging_area import LOCAL, S3Area, StagingArea
from amp_luigi.validation import (
    EXPORT_URLS,
    Setting,
    bucket_name,
    credential,
    http_url,
    key_prefix,
    not_after_today,
    region_url,
    staging_dir,
)

# A name is a key segment, a directory and (upper-cased) part of an environment variable's name: it
# starts with a letter, so it never looks like a day's directory (a date) or a marker's (`_...`).
NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
OPTIONS = ("region", "url", "first_date", "bucket", "prefix", "parquet_prefix")


@dataclass(frozen=True)
class Project:
    """One project's settings, without its keys (so a repr or a log line can never show them)."""

    name: str  # '' = the unnamed project of a single-project configuration
    export_url: str
    first_date: dt.date
    bucket: str
    prefix: str
    parquet_prefix: str
    work_dir: Path  # this host's directory: locks, bounded temporary files, and the local staging area
    staging_bucket: str = ""  # '' = staging in work_dir; else staging in S3 below staging_prefix
    staging_prefix: str = ""

    @property
    def staging_root(self) -> PurePath:
        """Where the staging area's files live: work_dir itself, or the S3 prefix (as a path of keys)."""
        return PurePosixPath(self.staging_prefix) if self.staging_bucket else self.work_dir

    @functools.cached_property
    def staging(self) -> StagingArea:
        """The project's staging area ([staging] location): this host's disk, or S3 shared by every host."""
        if not self.staging_bucket:
            return LOCAL
        return S3Area(
            self.staging_bucket, functools.partial(self.open_bucket, self.staging_bucket, self.staging_prefix)
        )

    def label(self) -> str:
        """How messages name the project: `project web`, or nothing for the unnamed one."""
        return f"project {self.name}" if self.name else ""

    def where(self) -> str:
        """The heading of the project's part of a report: `project web, s3://bucket/prefix/`."""
        return ", ".join(filter(None, (self.label(), f"s3://{self.bucket}/{self.prefix}/")))

    def open_bucket(self, bucket: str = "", prefix: str | None = None) -> Bucket:
        """The project's bucket (or `bucket`, the probes going below `prefix`), through this process's
        S3 client for the [storage] settings."""
        checked(self.name)
        storage = settings.storage()
        proof = aws.upload_proof(storage.value("upload_proof"))
        threads = storage.value("upload_threads")
        client, facts = aws.s3(*storage.aws_keys(), storage.value("max_attempts"), threads, proof)
        return Bucket(
            client,
            bucket or self.bucket,
            part_size=storage.part_size(),
            threads=threads,
            proof=proof,
            probe_key=probe_key(self.prefix if prefix is None else prefix),
            facts=facts,
        )

    def client(self) -> ExportClient:
        """A client of the project's export, with its keys and the [amplitude] retry settings."""
        checked(self.name, exporting=True)
        amplitude = settings.amplitude()
        keys = " and ".join(key_variables(self.name))
        region = f"[{SECTION}{self.name}] region" if self.name else "[amplitude] region"
        return ExportClient(
            self.export_url,
            *credentials(self.name),
            retry=RetryPolicy(
                amplitude.max_attempts, amplitude.backoff_seconds, amplitude.max_backoff_seconds
            ),
            connect_timeout=amplitude.connect_timeout,
            read_timeout=amplitude.read_timeout,
            settings_named=(keys, region),
        )


def names() -> list[str]:
    """The projects luigi.cfg names, sorted; empty for a single-project configuration."""
    return project_names(settings.config_sections())


def configured() -> list[str]:
    """Every project a run without `--project` covers: the named ones, else the unnamed one."""
    return names() or [""]


def selected(name: str | None) -> list[str]:
    """The projects a command covers: the one `--project` names, else every configured one."""
    return configured() if name is None else [name]


def each(name: str | None, *, exporting: bool = False) -> list[Project]:
    """The settings of every project a command covers (`name` alone when given), checked first."""
    checked(name, exporting=exporting)
    return [project(each) for each in selected(name)]


def key_variables(name: str) -> tuple[str, str]:
    """The environment variables holding a project's API key and secret key (AMP_API_KEY unnamed)."""
    stem = "_".join(filter(None, ("AMP", name.upper().replace("-", "_"))))
    return f"{stem}_API_KEY", f"{stem}_SECRET_KEY"


def project(name: str) -> Project:
    """The settings of project `name` ('' = the unnamed one); ConfigError for a name luigi.cfg lacks."""
    storage, staging = settings.storage(), settings.staging()
    if not name:
        if names():
            raise ConfigError(_needs_a_name())
        prefix = storage.value("prefix")
        staging_bucket, staging_prefix = staging.value("location")
        return Project(
            "",
            settings.amplitude().export_url(),
            settings.amplitude().first_date,
            storage.value("bucket"),
            prefix,
            settings.parquet().key_prefix(prefix),
            staging.root(),
            staging_bucket,
            staging_prefix,
        )
    if name not in names():
        known = ", ".join(names()) or "none"
        raise ConfigError(
            f"Unknown project {name!r}: luigi.cfg has no [{SECTION}{name}] section (projects it names: "
            f"{known}). Add the section, or pass one of those to --project."
        )
    section = _Section(name)
    prefix = section.prefix("prefix") or project_prefix(storage.value("prefix"), name)
    staging_bucket, staging_prefix = staging.value("location")
    return Project(
        name,
        section.export_url(),
        section.first_date(),
        section.bucket() or storage.value("bucket"),
        prefix,
        section.prefix("parquet_prefix") or parquet_prefix(prefix),
        project_staging(staging.root(), name),
        staging_bucket,
        join_key(staging_prefix, name) if staging_bucket else "",
    )


def credentials(name: str) -> tuple[str, str]:
    """The project's API key and secret key, read from the environment (or `.env`) when needed."""
    if not name:
        return settings.amplitude().credentials()
    found = {variable: settings.read_env(variable) for variable in key_variables(name)}
    missing = [variable for variable, value in found.items() if not value]
    if missing:
        raise ConfigError(
            f"project {name} has no credentials: set {' and '.join(missing)} in the environment or .env "
            f"(its keys are never read from luigi.cfg or a task parameter; [{SECTION}{name}] names the "
            "project)."
        )
    api_key, secret_key = (credential(value, Setting.env_only(variable)) for variable, value in found.items())
    return api_key, secret_key


class _Section:
    """A `[project.<name>]` section's values, each checked with the rule of the setting it overrides."""

    def __init__(self, name: str) -> None:
        self.name = f"{SECTION}{name}"
        self.options = settings.config_section(self.name)

    def _get(self, option: str) -> str:
        return self.options.get(option, "").strip()

    def _setting(self, option: str) -> Setting:
        return Setting(self.name, option)

    def export_url(self) -> str:
        url, region = self._get("url"), self._get("region")
        if url:
            return http_url(url, self._setting("url"), EXPORT_URLS["eu"])
        if region:
            return region_url(region, self._setting("region"))
        return settings.amplitude().export_url()

    def first_date(self) -> dt.date:
        raw = self._get("first_date")
        if not raw:
            return settings.amplitude().first_date
        try:
            first = dt.date.fromisoformat(raw)
        except ValueError:
            raise ConfigError(
                f"{self._setting('first_date')} = {raw!r} is not a date: write YYYY-MM-DD."
            ) from None
        return not_after_today(first, self._setting("first_date"))

    def bucket(self) -> str:
        raw = self._get("bucket")
        return bucket_name(raw, self._setting("bucket")) if raw else ""

    def prefix(self, option: str) -> str:
        return key_prefix(self._get(option), self._setting(option))

    def unknown_options(self) -> list[str]:
        return [option for option in self.options if option not in OPTIONS]


def problems(name: str | None = None, *, exporting: bool = False) -> list[str]:
    """What is wrong with the settings, in stages (each stage's problems all at once, and a later
    stage only when the earlier ones found none, since it builds on them): the settings all
    projects share and the projects' names; every configured project's own settings and staging
    directory (another project's run must not write into its prefixes either); with `exporting`, the
    keys of project `name` (None: of every configured project); last, prefixes that would share keys."""
    found = settings.problems() or _naming_problems()
    if found:
        return found
    loaded: dict[str, Project] = {}

    def load(each: str) -> None:
        # The staging root checked here, per project (the unnamed one's is [staging] data_dir itself).
        loaded[each] = project(each)
        staging_dir(loaded[each].work_dir, settings.staging().setting("data_dir"))

    chosen = dict.fromkeys([*([] if name is None else [name]), *configured()])
    found = settings.failures([functools.partial(load, each) for each in chosen])
    if not found and exporting:
        found = settings.failures([functools.partial(credentials, each) for each in selected(name)])
    return found or _overlaps(list(loaded.values()))


def _naming_problems() -> list[str]:
    """Bad names, unknown options, two names sharing key variables, unnamed keys beside named projects."""
    found = []
    by_variable: dict[str, str] = {}
    for name in names():
        if not NAME.fullmatch(name):
            found.append(
                f"[{SECTION}{name}]: {name!r} is not a project name: 1 to 40 lowercase letters, digits, '_' "
                "and '-', beginning with a letter (it becomes a key prefix and part of AMP_<NAME>_API_KEY)."
            )
            continue
        for option in _Section(name).unknown_options():
            keys = " and ".join(key_variables(name))
            found.append(
                f"[{SECTION}{name}] {option}: not a project setting (it takes {', '.join(OPTIONS)}; its keys "
                f"go in {keys} in the environment)."
            )
        other = by_variable.setdefault(key_variables(name)[0], name)
        if other != name:
            found.append(
                f"Projects {other} and {name} would both read {key_variables(name)[0]}: rename one of them."
            )
    unnamed = settings.amplitude()
    if names() and any(
        (
            settings.read_env("AMP_API_KEY"),
            settings.read_env("AMP_SECRET_KEY"),
            unnamed.api_key,
            unnamed.secret_key,
        )
    ):
        found.append(
            _needs_a_name("AMP_API_KEY or AMP_SECRET_KEY (or [amplitude] api_key / secret_key) is set, but ")
        )
    if names() and settings.parquet().prefix:
        found.append(
            f"[parquet] prefix = {settings.parquet().prefix!r} is the unnamed project's, but luigi.cfg names "
            "projects: set parquet_prefix in the [project.<name>] section of the project it was for (the same "
            "value keeps its Parquet files where they are) and remove it from [parquet]."
        )
    return found


def _needs_a_name(why: str = "") -> str:
    listed = ", ".join(names())
    return (
        f"{why}luigi.cfg names projects ({listed}), so every project is named: pass --project, and for the "
        "project of AMP_API_KEY add a [project.<name>] section (with prefix = its old prefix, to keep its "
        'keys) and move its keys to AMP_<NAME>_API_KEY and AMP_<NAME>_SECRET_KEY (README, "Several '
        'Amplitude projects").'
    )


RAW, PARQUET, STAGING = "raw", "parquet", "staging"


@dataclass(frozen=True)
class _Area:
    """Where one project writes: its raw prefix (`<date>/` and `_<marker>/` below it), or a prefix
    it fills whole: its Parquet prefix (`dt=<date>/` below it, and nothing else may be: a table reads
    the whole location) or its S3 staging area."""

    owner: Project
    setting: Setting
    bucket: str
    prefix: str
    kind: str  # RAW, PARQUET or STAGING

    def writes(self, segment: str) -> bool:
        return self.kind != RAW or segment.startswith("_") or date_named(segment) is not None

    def holds(self, other: _Area) -> bool:
        """Whether `other` is this area, or lies inside it where this area writes.

        Another project's prefix may sit inside a raw prefix, below a segment it never writes (a
        project named with the old prefix, a new one in a folder below it). A project's own areas
        may not nest at all, since a table over one layer would read the other's files and a day's
        prefix would hold its staging; as always, a raw prefix at the bucket's root holds its Parquet
        prefix beside its markers.
        """
        if other.owner is self.owner:
            return (other.prefix + "/").startswith(self.prefix + "/")
        if other.prefix == self.prefix:
            return True
        if self.prefix and not other.prefix.startswith(self.prefix + "/"):
            return False
        return self.writes(other.prefix[len(self.prefix) :].lstrip("/").split("/", 1)[0])

    def __str__(self) -> str:
        return f"{self.setting} = {self.prefix!r}"


def _areas(each: Project) -> list[_Area]:
    if each.name:
        section = f"{SECTION}{each.name}"
        raw, parquet = Setting(section, "prefix"), Setting(section, "parquet_prefix")
    else:
        raw, parquet = settings.storage().setting("prefix"), settings.parquet().setting("prefix")
    staging = settings.staging().setting("location")
    return [
        _Area(each, raw, each.bucket, each.prefix, RAW),
        _Area(each, parquet, each.bucket, each.parquet_prefix, PARQUET),
        *(
            [_Area(each, staging, each.staging_bucket, each.staging_prefix, STAGING)]
            if each.staging_bucket
            else []
        ),
    ]


def _overlaps(every: list[Project]) -> list[str]:
    """No project may write where another one, or its own other layer or staging, writes."""
    areas = [area for each in every for area in _areas(each)]
    found = []
    for index, area in enumerate(areas):
        for other in areas[index + 1 :]:
            if area.bucket == other.bucket and (area.holds(other) or other.holds(area)):
                if STAGING in (area.kind, other.kind):
                    what = "the staging objects and the data would share keys and listings"
                elif area.owner is other.owner:
                    what = "a table over one layer would read the other's files"
                else:
                    what = "two projects would write the same keys"
                found.append(
                    f"{area} and {other} overlap in s3://{area.bucket}/: {what}. Give each a prefix "
                    "of its own."
                )
    return found


@functools.cache
def checked(name: str | None = None, *, exporting: bool = False) -> None:
    """The settings of project `name` (None: every configured one) checked, once per process, before
    the first request to Amplitude or S3; one ConfigError lists every problem, each naming its setting."""
    found = problems(name, exporting=exporting)
    if found:
        raise unusable(found)


def unusable(found: list[str]) -> ConfigError:
    """The one error for settings that cannot be used: every problem found, each naming its setting."""
    return ConfigError("amp-luigi's settings are not usable:\n  - " + "\n  - ".join(found))


def reset() -> None:
    """Forget what this process read and checked of the settings, and its S3 clients (between
    in-process tests that change the settings or the environment)."""
    checked.cache_clear()
    settings.forget_dotenv()
    aws.forget_clients()
