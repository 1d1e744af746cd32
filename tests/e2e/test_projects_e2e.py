"""Several Amplitude projects in one deployment: one emulator serving two projects with their own
keys, one moto server, one real `luigid`, and the real `luigi` command, as cron runs it."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from amp_luigi.emulator import EmulatedProject, Emulator
from amp_luigi.testing.local import Luigid, clean_environment, project_config
from tests.conftest import DAY, SECRETS, Workspace
from tests.expect import PREFIX, assert_days_exact, output, requested_days, run_holding

DAYS = [DAY + dt.timedelta(days=n) for n in range(3)]
IOS_SECRET = "ios-SECRET-never-shown"


@pytest.fixture
def projects(workspace: Workspace, emulator: Emulator) -> tuple[EmulatedProject, EmulatedProject]:
    """`web` (the emulator's first project) and `ios` (its own keys and events), named in luigi.cfg,
    each with its own export URL (the shared one leads nowhere); the unnamed project's keys are gone
    from the environment."""
    ios = emulator.add_project("ios-key", IOS_SECRET, project_id=4242, seed=7, events_per_hour=30)
    web = emulator.projects[0]
    workspace.env["AMP_WEB_API_KEY"] = workspace.env.pop("AMP_API_KEY")
    workspace.env["AMP_WEB_SECRET_KEY"] = workspace.env.pop("AMP_SECRET_KEY")
    workspace.env.update(AMP_IOS_API_KEY="ios-key", AMP_IOS_SECRET_KEY=IOS_SECRET)
    workspace.env["AMP_EXPORT_URL"] = "http://127.0.0.1:9/api/2/export"  # nothing listens on port 9
    workspace.configure("project.web", url=emulator.url)
    workspace.configure("project.ios", url=emulator.url)
    return web, ios


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[Luigid]:
    """luigid with the project's luigi.cfg and a cap per project: web 2 exports at a time, ios 1."""
    config = tmp_path / "luigid.cfg"
    config.write_text(
        project_config(("web", "ios")).replace("amplitude_export_ios = 2", "amplitude_export_ios = 1")
    )
    env = {**clean_environment(), "LUIGI_CONFIG_PATH": str(config)}
    with Luigid(tmp_path / "luigid", env=env) as scheduler:
        yield scheduler


def export_range(
    workspace: Workspace, luigid: Luigid, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return workspace.luigi(
        "ExportRange",
        *("--start", DAYS[0].isoformat(), "--stop", (DAYS[-1] + dt.timedelta(days=1)).isoformat()),
        *("--workers", "4", "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid.port)),
        *("--lock-pid-dir", str(workspace.path / "locks")),
        *args,
        env=env,
    )


def requests_of(emulator: Emulator, project: EmulatedProject) -> int:
    return sum(record.project_id == project.dataset.spec.project_id for record in emulator.requests)


def test_two_projects_land_apart_with_their_own_task_ids_and_caps(
    workspace: Workspace,
    emulator: Emulator,
    projects: tuple[EmulatedProject, EmulatedProject],
    luigid: Luigid,
) -> None:
    web, ios = projects
    # A request a day, so each project has several to run at once; the first day goes alone (nothing
    # is known before it is answered), then three exports are held until all three are in flight: as
    # many as the caps allow.
    workspace.configure("amplitude", max_window_days=1)
    gate = emulator.gate(times=3, match=lambda start, end: start.date() > DAYS[0])
    run = run_holding(gate, 3, lambda: export_range(workspace, luigid))
    assert run.returncode == 0, output(run)[-4000:]
    assert gate.held == 3
    for secret in (*SECRETS, IOS_SECRET):
        assert secret not in output(run)

    assert_days_exact(workspace, web, DAYS, prefix=f"{PREFIX}web/", alone=False)
    assert_days_exact(workspace, ios, DAYS, prefix=f"{PREFIX}ios/", alone=False)
    assert all(key.startswith((f"{PREFIX}web/", f"{PREFIX}ios/")) for key in workspace.keys(""))
    assert requests_of(emulator, web) == requests_of(emulator, ios) == len(DAYS)
    # Each cap held on its own, and neither project waited for the other's: three at once in all.
    assert (web.peak_in_flight, ios.peak_in_flight) == (2, 1)
    assert emulator.peak_in_flight == 3

    done = luigid.api("task_list", status="DONE", upstream_status="", search="")
    verified = sorted(task_id for task_id in done if task_id.startswith("VerifyDay_"))
    assert len(verified) == 2 * len(DAYS)
    for day in DAYS:
        for name in ("web", "ios"):
            ids = [task_id for task_id in verified if task_id.startswith(f"VerifyDay_{day:%Y_%m_%d}_{name}_")]
            assert len(ids) == 1, verified
            assert done[ids[0]]["params"] == {"date": day.isoformat(), "project": name}

    emulator.reset_requests()
    again = export_range(workspace, luigid)
    assert again.returncode == 0, output(again)[-4000:]
    assert emulator.requests == []
    assert "Did not run any tasks" in output(again)


def test_a_project_with_wrong_keys_fails_alone(
    workspace: Workspace,
    emulator: Emulator,
    projects: tuple[EmulatedProject, EmulatedProject],
    luigid: Luigid,
) -> None:
    web, ios = projects
    run = export_range(workspace, luigid, env={"AMP_IOS_SECRET_KEY": "wrong-SECRET-never-shown"})
    assert run.returncode == 30, output(run)[-4000:]  # [retcode] task_failed
    assert "wrong-SECRET-never-shown" not in output(run) and IOS_SECRET not in output(run)
    assert re.search(r"ExportDay\(date=[\d-]+, project=ios\)", output(run))
    assert "Check AMP_IOS_API_KEY and AMP_IOS_SECRET_KEY" in output(run) and "[project.ios] region" in output(
        run
    )
    assert_days_exact(workspace, web, DAYS, prefix=f"{PREFIX}web/", alone=False)
    assert workspace.keys(f"{PREFIX}ios/") == {}
    # The first day's window, then each day alone: every day fails with the message.
    assert [record.status for record in emulator.requests if not record.auth_ok] == [401] * (len(DAYS) + 1)

    emulator.reset_requests()
    fixed = export_range(workspace, luigid)
    assert fixed.returncode == 0, output(fixed)[-4000:]
    assert_days_exact(workspace, ios, DAYS, prefix=f"{PREFIX}ios/", alone=False)
    assert requests_of(emulator, web) == 0, "web's days were not exported again"
    asked = [day for record in emulator.requests for day in requested_days(record.start, record.end)]
    assert sorted(asked) == DAYS, "each of ios's days asked for once (the first alone, then a window)"


def test_one_project_alone_and_its_status(
    workspace: Workspace,
    emulator: Emulator,
    projects: tuple[EmulatedProject, EmulatedProject],
    luigid: Luigid,
) -> None:
    web, ios = projects
    run = export_range(workspace, luigid, "--project", "ios")
    assert run.returncode == 0, output(run)[-4000:]
    assert_days_exact(workspace, ios, DAYS, prefix=f"{PREFIX}ios/")
    assert requests_of(emulator, web) == 0

    stop = (DAYS[-1] + dt.timedelta(days=1)).isoformat()
    status = workspace.amp_luigi("status", "--start", DAYS[0].isoformat(), "--stop", stop, "--check")
    assert status.returncode == 1, output(status)  # web's days are missing
    calendars = {
        part.split(",", 1)[0]: part for part in re.split(r"^project ", status.stdout, flags=re.M)[1:]
    }
    assert sorted(calendars) == ["ios", "web"]
    assert f"s3://{workspace.bucket}/{PREFIX}ios/" in calendars["ios"]
    assert "3 done, 0 empty, 0 missing" in calendars["ios"]
    assert "0 done, 0 empty, 3 missing" in calendars["web"]
    assert f"`ExportRange --project web --start {DAYS[0]}` fills them" in calendars["web"]

    only = workspace.amp_luigi(
        "status", "--start", DAYS[0].isoformat(), "--stop", stop, "--check", "--project", "ios"
    )
    assert only.returncode == 0, output(only)  # ios alone is complete
    assert (
        only.stdout.startswith(f"project ios, s3://{workspace.bucket}/{PREFIX}ios/")
        and "project web" not in only.stdout
    )

    metrics = workspace.amp_luigi(
        "status", "--start", DAYS[0].isoformat(), "--stop", stop, "--metrics-file", "-"
    )
    assert metrics.returncode == 0, output(metrics)
    events = [
        line
        for line in metrics.stdout.splitlines()
        if line.startswith("amp_luigi_newest_verified_day_events{")
    ]
    assert len(events) == 1 and 'project="ios"' in events[0] and f'prefix="{PREFIX}ios"' in events[0]
    assert 'project="web"' in metrics.stdout, "web's days are counted missing"
    web_only = workspace.amp_luigi(
        "status", "--start", DAYS[0].isoformat(), "--stop", stop, "--metrics-file", "-", "--project", "web"
    )
    assert 'project="web"' in web_only.stdout and 'project="ios"' not in web_only.stdout


DAY_ARGS = ["VerifyDay", "--date", DAY.isoformat()]
RANGE_ARGS = [
    "ExportRange",
    "--start",
    DAYS[0].isoformat(),
    "--stop",
    (DAYS[-1] + dt.timedelta(days=1)).isoformat(),
]

# (id, command, luigi.cfg sections beyond [project.web] and [project.ios], environment, message)
WRONG: list[tuple[str, list[str], dict[str, dict[str, str]], dict[str, str], list[str]]] = [
    (
        "unknown-project",
        [*DAY_ARGS, "--project", "iso"],
        {},
        {},
        ["Unknown project 'iso'", "[project.iso]", "web"],
    ),
    (
        "range-unknown-project",
        [*RANGE_ARGS, "--project", "iso"],
        {},
        {},
        ["Unknown project 'iso'", "[project.iso]"],
    ),
    (
        "no-credentials",
        [*DAY_ARGS, "--project", "ios"],
        {},
        {"AMP_IOS_API_KEY": "", "AMP_IOS_SECRET_KEY": ""},
        ["project ios has no credentials", "AMP_IOS_API_KEY and AMP_IOS_SECRET_KEY"],
    ),
    # A range over every project checks every project's keys first, whichever sorts first.
    ("range-no-keys-first", RANGE_ARGS, {}, {"AMP_IOS_API_KEY": ""}, ["project ios has no credentials"]),
    ("range-no-keys-last", RANGE_ARGS, {}, {"AMP_WEB_SECRET_KEY": ""}, ["project web has no credentials"]),
    (
        "same-prefix",
        [*DAY_ARGS, "--project", "web"],
        {"project.web": {"prefix": "shared"}, "project.ios": {"prefix": "shared/"}},
        {},
        ["[project.web] prefix = 'shared' and [project.ios] prefix = 'shared' overlap", "same keys"],
    ),
    (
        "inside-another-day",
        [*DAY_ARGS, "--project", "web"],
        {"project.ios": {"prefix": "python_import/web/2024-03-01"}},
        {},
        ["[project.ios] prefix = 'python_import/web/2024-03-01'", "overlap"],
    ),
    (
        "unnamed-keys-beside-projects",
        [*DAY_ARGS, "--project", "web"],
        {},
        {"AMP_API_KEY": "old-key", "AMP_SECRET_KEY": "old-secret"},
        ["AMP_API_KEY or AMP_SECRET_KEY", "[project.<name>]", "prefix = its old prefix"],
    ),
    (
        "unnamed-secret-left",
        RANGE_ARGS,
        {},
        {"AMP_SECRET_KEY": "old-secret"},
        ["AMP_API_KEY or AMP_SECRET_KEY"],
    ),
    (
        "unnamed-parquet-prefix",
        RANGE_ARGS,
        {"parquet": {"prefix": "tables"}},
        {},
        ["[parquet] prefix = 'tables' is the unnamed project's", "parquet_prefix in the [project.<name>]"],
    ),
    ("no-project-given", DAY_ARGS, {}, {}, ["luigi.cfg names projects (ios, web)", "pass --project"]),
    (
        "bad-name",
        [*DAY_ARGS, "--project", "web"],
        {"project.Web_App": {}},
        {},
        ["'Web_App' is not a project name"],
    ),
    (
        "option-in-section",
        [*DAY_ARGS, "--project", "web"],
        {"project.web": {"api_key": "pasted-here"}},
        {},
        ["[project.web] api_key: not a project setting", "AMP_WEB_API_KEY"],
    ),
    (
        "region",
        [*DAY_ARGS, "--project", "ios"],
        {"project.ios": {"url": "", "region": "mars"}},
        {},
        ["[project.ios] region", "'mars'"],
    ),
]


@pytest.mark.parametrize(
    ("command", "config", "env", "expected"), [c[1:] for c in WRONG], ids=[c[0] for c in WRONG]
)
def test_a_wrong_project_setting_stops_the_run_before_any_request(
    workspace: Workspace,
    emulator: Emulator,
    projects: tuple[EmulatedProject, EmulatedProject],
    command: list[str],
    config: dict[str, dict[str, str]],
    env: dict[str, str],
    expected: list[str],
) -> None:
    for section, options in config.items():
        workspace.configure(section, **options)
    run = workspace.luigi(
        *command, "--local-scheduler", "--lock-pid-dir", str(workspace.path / "locks"), env=env
    )
    text = output(run)
    assert run.returncode == 35, text  # [retcode] scheduling_error
    for words in expected:
        assert words in text, (words, text)
    assert "Traceback" not in text
    assert emulator.requests == [] and workspace.keys() == {}
    for secret in (*SECRETS, IOS_SECRET, "pasted-here", "old-secret"):
        assert secret not in text


def test_batches_of_a_long_range_hold_each_projects_days(
    workspace: Workspace, emulator: Emulator, projects: tuple[EmulatedProject, EmulatedProject]
) -> None:
    """Over more than batch_days missing days each project's range yields its days in batches."""
    web, ios = projects
    run = workspace.luigi(
        *RANGE_ARGS, "--batch-days", "1", "--workers", "2", "--local-scheduler",
        "--lock-pid-dir", str(workspace.path / "locks"),
    )  # fmt: skip
    assert run.returncode == 0, output(run)[-4000:]
    assert_days_exact(workspace, web, DAYS, prefix=f"{PREFIX}web/", alone=False)
    assert_days_exact(workspace, ios, DAYS, prefix=f"{PREFIX}ios/", alone=False)
    assert requests_of(emulator, web) == requests_of(emulator, ios) == len(DAYS)


def test_an_existing_bucket_keeps_its_keys_when_its_project_is_named(
    workspace: Workspace, emulator: Emulator
) -> None:
    """The upgrade path the README gives: a single-project deployment's bucket, then the same project
    named `web` with `prefix = python_import` beside a new project: nothing of web is exported again."""
    locks = ("--local-scheduler", "--lock-pid-dir", str(workspace.path / "locks"))
    start, stop = DAYS[0].isoformat(), (DAYS[-1] + dt.timedelta(days=1)).isoformat()
    before = workspace.luigi("ExportRange", "--start", start, "--stop", stop, *locks)
    assert before.returncode == 0, output(before)[-4000:]
    assert_days_exact(workspace, emulator, DAYS)
    keys = workspace.keys()

    ios = emulator.add_project("ios-key", IOS_SECRET, project_id=4242, seed=7, events_per_hour=30)
    workspace.env["AMP_WEB_API_KEY"] = workspace.env.pop("AMP_API_KEY")
    workspace.env["AMP_WEB_SECRET_KEY"] = workspace.env.pop("AMP_SECRET_KEY")
    workspace.env.update(AMP_IOS_API_KEY="ios-key", AMP_IOS_SECRET_KEY=IOS_SECRET)
    workspace.configure("project.web", prefix="python_import")
    workspace.configure("project.ios")
    emulator.reset_requests()
    after = workspace.luigi("ExportRange", "--start", start, "--stop", stop, *locks)
    assert after.returncode == 0, output(after)[-4000:]
    assert requests_of(emulator, emulator.projects[0]) == 0, "web's days were not exported again"
    assert {key: size for key, size in workspace.keys().items() if key in keys} == keys
    # ios lands inside the old prefix, below a segment web never writes.
    assert_days_exact(workspace, ios, DAYS, prefix=f"{PREFIX}ios/", alone=False)
    assert sorted(set(workspace.keys()) - set(keys)) == sorted(workspace.keys(f"{PREFIX}ios/"))


def test_check_proves_each_project_and_names_the_one_whose_keys_fail(
    workspace: Workspace, emulator: Emulator, projects: tuple[EmulatedProject, EmulatedProject]
) -> None:
    run = workspace.amp_luigi("check", "--amplitude", env={"AMP_IOS_SECRET_KEY": "wrong-SECRET-never-shown"})
    assert run.returncode == 1, output(run)
    web, ios = (part for part in re.split(r"^amp-luigi check of ", run.stdout, flags=re.M)[1:])
    assert web.startswith(f"project ios, s3://{workspace.bucket}/{PREFIX}ios/") or ios.startswith(
        "project ios"
    )
    by_project = {part.split(",", 1)[0]: part for part in (web, ios)}
    assert "Ready" in by_project["project web"]
    failed = next(line for line in by_project["project ios"].splitlines() if " export one hour " in line)
    assert failed.split()[0] == "FAILED" and "AMP_IOS_API_KEY / AMP_IOS_SECRET_KEY" in failed
    assert "wrong-SECRET-never-shown" not in output(run)
    assert workspace.keys() == {}, "the probes are removed"

    only = workspace.amp_luigi("check", "--project", "web")
    assert only.returncode == 0, output(only)
    assert only.stdout.count("amp-luigi check of ") == 1 and "project web" in only.stdout


def test_athena_prints_each_projects_tables_over_its_own_prefixes(
    workspace: Workspace, projects: tuple[EmulatedProject, EmulatedProject]
) -> None:
    workspace.configure("project.ios", first_date="2023-06-01")
    run = workspace.amp_luigi("athena")
    assert run.returncode == 0, output(run)
    for name in ("web", "ios"):
        assert f"CREATE EXTERNAL TABLE IF NOT EXISTS `amplitude`.`events_{name}` (" in run.stdout
        assert f"CREATE EXTERNAL TABLE IF NOT EXISTS `amplitude`.`events_{name}_raw` (" in run.stdout
        assert f"'s3://{workspace.bucket}/{PREFIX}{name}/${{dt}}/'" in run.stdout
        assert f"'s3://{workspace.bucket}/{PREFIX}{name}_parquet/dt=${{dt}}/'" in run.stdout
    assert "'2023-06-01,NOW'" in run.stdout
    one = workspace.amp_luigi("athena", "--project", "ios")
    assert "events_web" not in one.stdout and "events_ios_raw" in one.stdout


def test_luigis_range_daily_fills_one_project_through_of_params(
    workspace: Workspace, emulator: Emulator, projects: tuple[EmulatedProject, EmulatedProject]
) -> None:
    web, ios = projects
    stop = (DAYS[-1] + dt.timedelta(days=1)).isoformat()
    run = workspace.luigi(
        *("RangeDaily", "--of", "VerifyDay", "--of-params", '{"project": "ios"}'),
        *("--start", DAYS[0].isoformat(), "--stop", stop, "--local-scheduler"),
        *("--lock-pid-dir", str(workspace.path / "locks")),
    )
    assert run.returncode == 0, output(run)[-4000:]
    assert_days_exact(workspace, ios, DAYS, prefix=f"{PREFIX}ios/")
    assert requests_of(emulator, web) == 0
