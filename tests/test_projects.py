"""Projects: what a [project.<name>] section resolves to, what is refused, and the unnamed project
kept as it always was (task ids, keys, staging)."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import luigi
import pytest

from amp_luigi import luigi_defaults
from amp_luigi.errors import ConfigError
from amp_luigi.projects import checked, configured, credentials, key_variables, problems, project
from amp_luigi.ranges import ExportRange
from amp_luigi.tasks import ExportDay, ExtractDay, ParquetDay, RefreshDay, UploadDay, VerifyDay
from amp_luigi.validation import EXPORT_URLS
from tests.conftest import Configure

DAY = dt.date(2024, 3, 1)
BASE = "[storage]\nbucket = amp-bucket\n"


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEB", "IOS"):
        monkeypatch.setenv(f"AMP_{name}_API_KEY", f"{name.lower()}-key")
        monkeypatch.setenv(f"AMP_{name}_SECRET_KEY", f"{name.lower()}-secret")


def test_the_unnamed_project_keeps_its_task_ids_names_keys_and_staging(configure: Configure) -> None:
    configure(BASE)
    # The ids amp-luigi gave these tasks before projects existed: luigid's history and locks match.
    assert VerifyDay(DAY).task_id == "VerifyDay_2024_03_01_acc1af573e"
    assert ExportDay(DAY).task_id == "ExportDay_2024_03_01_acc1af573e"
    assert (
        RefreshDay(DAY, as_of=dt.datetime(2024, 3, 5, 1, 2, 3)).task_id
        == "RefreshDay_2024_03_05T01020_2024_03_01_7cd9a288b0"
    )
    assert repr(VerifyDay(DAY)) == "VerifyDay(date=2024-03-01)"
    assert VerifyDay(DAY).to_str_params() == {"date": "2024-03-01"}
    assert ExportDay(DAY).resources == {"amplitude_export": 1, "amp_export_2024-03-01": 1}
    layout = VerifyDay(DAY).layout()
    assert layout.verified_key == "python_import/_verified/2024-03-01.json"
    assert layout.data_prefix == "python_import/2024-03-01/"
    assert layout.day_dir == (Path.cwd() / "amp-data" / "2024-03-01").resolve()
    assert configured() == [""]


def test_a_named_project_defaults_under_the_shared_prefix_and_staging(
    configure: Configure, keyed: None
) -> None:
    configure(BASE + "[project.web]\n[project.ios]\n")
    web = project("web")
    assert (web.prefix, web.parquet_prefix) == ("python_import/web", "python_import/web_parquet")
    assert web.staging_root == (Path.cwd() / "amp-data" / "web").resolve()
    assert (web.bucket, web.export_url, web.first_date) == (
        "amp-bucket",
        EXPORT_URLS["eu"],
        dt.date(2012, 1, 1),
    )
    assert configured() == ["ios", "web"]
    task = VerifyDay(DAY, project="web")
    assert task.task_id != VerifyDay(DAY).task_id and "_web_" in task.task_id
    assert repr(task) == "VerifyDay(date=2024-03-01, project=web)"
    assert task.requires().requires() == ExtractDay(DAY, project="web")
    assert ExportDay(DAY, project="web").resources == {
        "amplitude_export_web": 1,
        "amp_export_web_2024-03-01": 1,
    }
    assert task.layout().verified_key == "python_import/web/_verified/2024-03-01.json"
    assert task.layout().day_dir == web.staging_root / "2024-03-01"
    assert credentials("web") == ("web-key", "web-secret")
    assert "web-secret" not in repr(web) + repr(task)


def test_a_section_overrides_region_url_first_date_bucket_and_prefixes(
    configure: Configure, keyed: None
) -> None:
    configure(
        BASE + "[project.web]\nregion = us\nfirst_date = 2020-05-01\nbucket = other-bucket\n"
        "prefix = /events/web/\nparquet_prefix = tables/web\n"
        "[project.ios]\nurl = http://127.0.0.1:9/api/2/export\n"
    )
    web, ios = project("web"), project("ios")
    assert (web.export_url, web.first_date, web.bucket) == (
        EXPORT_URLS["us"],
        dt.date(2020, 5, 1),
        "other-bucket",
    )
    assert (web.prefix, web.parquet_prefix) == ("events/web", "tables/web")
    assert ios.export_url == "http://127.0.0.1:9/api/2/export"
    assert problems(exporting=True) == []


def test_each_project_gets_an_export_cap_unless_luigi_cfg_sets_one(configure: Configure) -> None:
    configure(BASE + "[project.web]\n[project.ios]\n[resources]\namplitude_export_ios = 1\n")
    config = luigi.configuration.get_config()
    luigi_defaults.apply(config)
    assert config.get("resources", "amplitude_export_web") == "2"
    assert config.get("resources", "amplitude_export_ios") == "1"
    assert config.get("resources", "amplitude_export") == "2"


def test_a_pasted_project_key_is_stripped_and_one_with_a_space_refused(
    configure: Configure, keyed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(BASE + "[project.web]\n")
    monkeypatch.setenv("AMP_WEB_API_KEY", "  web-key\n")
    assert credentials("web") == ("web-key", "web-secret")
    monkeypatch.setenv("AMP_WEB_SECRET_KEY", "web secret")
    with pytest.raises(ConfigError, match=r"^AMP_WEB_SECRET_KEY holds a space") as raised:
        credentials("web")
    assert "web secret" not in str(raised.value)


def test_key_variables_follow_the_name() -> None:
    assert key_variables("") == ("AMP_API_KEY", "AMP_SECRET_KEY")
    assert key_variables("web-prod") == ("AMP_WEB_PROD_API_KEY", "AMP_WEB_PROD_SECRET_KEY")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("[project.web]\n[project.web_prod]\n[project.web-prod]\n", "would both read AMP_WEB_PROD_API_KEY"),
        ("[project.2024-03-01]\n", "'2024-03-01' is not a project name"),
        ("[project._verified]\n", "'_verified' is not a project name"),
        (
            "[project.web]\nfirst_date = 2199-01-01\n",
            "[project.web] first_date = 2199-01-01 is in the future",
        ),
        ("[project.web]\nfirst_date = March\n", "[project.web] first_date = 'March' is not a date"),
        ("[project.web]\nbucket = s3://x/y\n", "[project.web] bucket = 's3://x/y' is a URL"),
        ("[project.web]\nprefix = a//b\n", "[project.web] prefix = 'a//b' has an empty"),
        ("[project.web]\nurl = ftp://x\n", "[project.web] url = 'ftp://x' is not an http(s) URL"),
        ("[project.web]\nsecret_key = x\n", "[project.web] secret_key: not a project setting"),
        ("[project.web]\nparquet_prefix = python_import/web/pq\n", "a table over one layer would read"),
        (
            "[project.web]\nprefix = shared\n[project.ios]\nparquet_prefix = shared/_parquet\n",
            "[project.ios] parquet_prefix = 'shared/_parquet' and [project.web] prefix = 'shared' overlap",
        ),
        (
            "[project.web]\nparquet_prefix = pq\n[project.ios]\nprefix = pq/dt=2024-03-01\n",
            "[project.ios] prefix = 'pq/dt=2024-03-01' and [project.web] parquet_prefix = 'pq' overlap",
        ),
        (  # a Parquet location holds nothing but its own files
            "[project.web]\nparquet_prefix = pq\n[project.ios]\nprefix = pq/ios\n",
            "[project.ios] prefix = 'pq/ios' and [project.web] parquet_prefix = 'pq' overlap",
        ),
        (
            "[project.web]\n[parquet]\nprefix = tables\n",
            "[parquet] prefix = 'tables' is the unnamed project's",
        ),
        (  # a day's prefix holding the staging: VerifyDay would find the staged objects among the data
            "[project.web]\n[staging]\nlocation = s3://amp-bucket/python_import/web/2024-03-01\n",
            "[project.web] prefix = 'python_import/web' and AMP_STAGING_LOCATION ([staging] location) = "
            "'python_import/web/2024-03-01/web' overlap in s3://amp-bucket/: the staging objects and the data",
        ),
        (  # the staging holding a project's data
            "[project.web]\nprefix = stage/web/data\n[staging]\nlocation = s3://amp-bucket/stage\n",
            "overlap in s3://amp-bucket/",
        ),
        ("[project.web]\n[staging]\nlocation = amp-bucket/stage\n", "is not an S3 location: write s3://"),
        ("[project.web]\n[staging]\nlocation = s3://Amp_Bucket/stage\n", "[staging] location"),
    ],
)
def test_what_a_project_section_may_not_say(
    configure: Configure, keyed: None, config: str, expected: str
) -> None:
    configure(BASE + config)
    with pytest.raises(ConfigError) as raised:
        checked(exporting=True)
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    "config",
    [
        # The old prefix named as one project, a new project inside it below a segment web never writes.
        "[project.web]\nprefix = python_import\n[project.ios]\n",
        # The same prefix in two buckets.
        "[project.web]\nprefix = p\n[project.ios]\nprefix = p\nbucket = ios-bucket\n",
        # Staging beside the projects' prefixes, and in a bucket of its own under the same prefix.
        "[project.web]\n[project.ios]\n[staging]\nlocation = s3://amp-bucket/amp-staging\n",
        "[project.web]\nprefix = p\n[staging]\nlocation = s3://staging-bucket/p\n",
    ],
)
def test_prefixes_that_share_no_key_are_allowed(configure: Configure, keyed: None, config: str) -> None:
    configure(BASE + config)
    checked(exporting=True)


def test_only_the_project_run_needs_its_keys(
    configure: Configure, keyed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(BASE + "[project.web]\n[project.ios]\n")
    monkeypatch.delenv("AMP_IOS_SECRET_KEY")
    assert problems("web", exporting=True) == []
    assert problems("ios", exporting=True) == [
        "project ios has no credentials: set AMP_IOS_SECRET_KEY in the environment or .env (its keys are "
        "never read from luigi.cfg or a task parameter; [project.ios] names the project)."
    ]
    assert problems(exporting=True) != [], "a run over every project needs every project's keys"
    assert problems("ios") == [], "status and athena need no keys"


def test_export_range_fills_every_named_project_or_the_one_given(configure: Configure, keyed: None) -> None:
    configure(BASE + "[project.web]\n[project.ios]\n")
    every = ExportRange(start=DAY)
    assert every.task_id == ExportRange(start=DAY, project="").task_id
    assert every.requires() == [ExportRange(start=DAY, project="ios"), ExportRange(start=DAY, project="web")]
    one = ExportRange(start=DAY, project="web")
    assert one.per_project == []
    assert one.day_params() == {"project": "web"}
    assert one.daily()(DAY, **one.day_params()) == VerifyDay(DAY, project="web")


def test_bulk_complete_lists_the_project_of_a_range(
    configure: Configure, keyed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Luigi's RangeDaily hands bulk_complete its of_params as a functools.partial: the project's
    listing is the one read."""
    configure(BASE + "[project.web]\n")
    listed: list[str] = []

    class FakeBucket:
        def listing(self, prefix: str) -> list[str]:
            listed.append(prefix)
            return [f"{prefix}2024-03-01.json"]

    monkeypatch.setattr("amp_luigi.projects.Project.open_bucket", lambda self: FakeBucket())
    found = VerifyDay.bulk_complete.__func__(  # type: ignore[attr-defined]
        functools.partial(VerifyDay, project="web"), iter([DAY, DAY + dt.timedelta(days=1)])
    )
    assert found == [DAY]
    assert listed == ["python_import/web/_verified/"]
    assert UploadDay.bulk_complete.__func__(functools.partial(UploadDay, project="web"), [DAY]) == [DAY]  # type: ignore[attr-defined]
    assert listed[-1] == "python_import/web/_uploaded/"


def test_without_a_project_once_projects_are_named_the_run_is_refused(
    configure: Configure, keyed: None
) -> None:
    configure(BASE + "[project.web]\n")
    with pytest.raises(ConfigError, match=r"luigi.cfg names projects \(web\), so every project is named"):
        checked("", exporting=True)
    with pytest.raises(ConfigError, match="Unknown project 'iso'"):
        checked("iso")


def test_a_projects_parquet_layer_lives_beside_its_own_prefix(configure: Configure, keyed: None) -> None:
    configure(BASE + "[project.web]\n")
    layout = ParquetDay(DAY, project="web").parquet_layout()
    assert layout.marker_key == "python_import/web/_parquet/2024-03-01.json"
    assert layout.hour_key(5) == "python_import/web_parquet/dt=2024-03-01/2024-03-01T05.parquet"
    assert ParquetDay(DAY, project="web").requires() == VerifyDay(DAY, project="web")


def test_a_single_project_at_the_bucket_root_is_still_accepted(configure: Configure) -> None:
    """As before projects: the raw prefix empty, the Parquet layer beside the markers."""
    configure(BASE + "prefix =\n[amplitude]\napi_key = k\nsecret_key = s\n")
    checked(exporting=True)
    assert (project("").prefix, project("").parquet_prefix) == ("", "_parquet")


def test_each_projects_staging_directory_is_made_before_any_request(
    configure: Configure, keyed: None
) -> None:
    configure(BASE + "[project.web]\n")
    checked("web", exporting=True)
    assert project("web").staging_root.is_dir()


def test_the_project_of_a_range_goes_in_project_not_of_params(configure: Configure, keyed: None) -> None:
    configure(BASE + "[project.web]\n")
    with pytest.raises(luigi.parameter.ParameterException, match="--project"):
        ExportRange(start=DAY, of_params={"project": "web"})


def test_a_refresh_belongs_to_its_project(
    configure: Configure, keyed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(BASE + "[project.web]\n")
    monkeypatch.setattr(VerifyDay, "bulk_complete", classmethod(lambda cls, dates: list(dates)))
    now = int(dt.datetime(2024, 3, 10, 12, tzinfo=dt.timezone.utc).timestamp())
    tasks = ExportRange(start=DAY, project="web", refresh_days=2, now=now).requires()
    refreshes = [task for task in tasks if isinstance(task, RefreshDay)]
    assert [(task.date, task.project) for task in refreshes] == [
        (dt.date(2024, 3, 8), "web"),
        (dt.date(2024, 3, 9), "web"),
    ]
    assert refreshes[0].resources == {"amp_refresh_web_2024-03-08": 1}
    assert RefreshDay(DAY, as_of=dt.datetime(2024, 3, 10)).resources == {"amp_refresh_2024-03-01": 1}
    assert refreshes[0].refreshed_stages()[-1] == VerifyDay(dt.date(2024, 3, 8), project="web")


def test_athena_table_names_are_athena_names_and_never_shared(configure: Configure, keyed: None) -> None:
    from amp_luigi.query.athena import statements

    configure(BASE + "[project.web-prod]\n")
    assert "`amplitude`.`events_web_prod_raw`" in statements("amplitude", "events")
    configure(BASE + "[project.web]\n[project.web_raw]\n")
    with pytest.raises(
        ConfigError, match="Projects web and web_raw would both get the Athena table events_web_raw"
    ):
        statements("amplitude", "events")
    assert "events_web_raw_raw" in statements("amplitude", "events", "web_raw")
