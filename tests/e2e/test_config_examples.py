"""The examples in config/ work as written: the cron line and the systemd unit's ExecStart run the
real pipeline (paths moved into a temp dir), the env template names every variable with blank
secrets, and logging.conf is what their output goes through."""

from __future__ import annotations

import configparser
import datetime as dt
import fcntl
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values

from tests.conftest import DAY, REPO, SECRETS, Workspace

CONFIG = REPO / "config"
STOP = DAY + dt.timedelta(days=2)
VARIABLES = {
    "AMP_API_KEY",
    "AMP_SECRET_KEY",
    "AMP_EXPORT_URL",
    "AWS_BUCKET_NAME",
    "AMP_S3_PREFIX",
    "ACCESS_KEY",
    "SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AMP_DATA_DIR",
    "AMP_STAGING_LOCATION",
}
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} INFO luigi-interface\[\d+\]: ", re.MULTILINE)


def test_env_template_names_every_variable_with_blank_secrets() -> None:
    values = dotenv_values(CONFIG / "amp-luigi.env.example")
    assert set(values) == VARIABLES
    for secret in ("AMP_API_KEY", "AMP_SECRET_KEY", "ACCESS_KEY", "SECRET_ACCESS_KEY", "AWS_BUCKET_NAME"):
        assert values[secret] == ""
    text = (CONFIG / "amp-luigi.env.example").read_text()
    assert "# AWS_ENDPOINT_URL_S3=" in text  # commented out: an empty one would break botocore
    assert values["AMP_STAGING_LOCATION"] == ""  # staging on this host's disk unless set


@pytest.fixture
def deployment(workspace: Workspace, tmp_path: Path) -> dict[str, Path]:
    """/opt/amp-luigi, /etc/amp-luigi, /var/lock and /var/log/amp-luigi, moved into tmp."""
    (workspace.path / ".venv").symlink_to(REPO / ".venv")
    (workspace.path / "config").symlink_to(CONFIG)
    etc, lock, log = tmp_path / "etc", tmp_path / "lock", tmp_path / "log"
    for directory in (etc, lock, log):
        directory.mkdir()
    lines = [
        f"{key}={value}" for key, value in workspace.env.items() if key in VARIABLES | {"AWS_ENDPOINT_URL_S3"}
    ]
    lines.append(f"LUIGI_CONFIG_PATH={workspace.env['LUIGI_CONFIG_PATH']}")  # the tests' fast retries
    (etc / "amp-luigi.env").write_text("\n".join(lines) + "\n")
    return {"opt": workspace.path, "etc": etc, "lock": lock, "log": log}


def relocate(text: str, paths: dict[str, Path]) -> str:
    return (
        text.replace("/opt/amp-luigi", str(paths["opt"]))
        .replace("/etc/amp-luigi", str(paths["etc"]))
        .replace("/var/lock", str(paths["lock"]))
        .replace("/var/log/amp-luigi", str(paths["log"]))
        .replace("--start 2024-01-01", f"--start {DAY} --stop {STOP}")
    )


def cron_command(paths: dict[str, Path]) -> str:
    """The command of the crontab line: after five time fields and the user."""
    (line,) = [
        line for line in (CONFIG / "cron.example").read_text().splitlines() if re.match(r"^[\d*]", line)
    ]
    minute, hour, *_ = line.split()
    assert (minute, hour) == ("30", "2")  # after 02:00 UTC, when yesterday is complete
    return relocate(line.split(None, 6)[6], paths)


def cron_environment() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "SHELL": "/bin/bash"}


def test_cron_line_exports_the_missing_days_logs_and_skips_when_a_run_holds_the_lock(
    workspace: Workspace, emulator, deployment: dict[str, Path]
) -> None:
    command = cron_command(deployment)
    run = subprocess.run(
        ["bash", "-c", command], env=cron_environment(), capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == run.stderr == "", "a good run mails nothing"
    log = (deployment["log"] / "amp-luigi.log").read_text()
    assert STAMPED.search(log), log[-2000:]
    assert "This progress looks :) because there were no failed tasks" in log
    assert sorted(workspace.keys("python_import/_verified/")) == [
        f"python_import/_verified/{DAY + dt.timedelta(days=n)}.json" for n in range(2)
    ]
    assert "DEBUG" not in log
    for secret in SECRETS:
        assert secret not in log

    emulator.reset_requests()
    with open(deployment["lock"] / "amp-luigi.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        skipped = subprocess.run(
            ["bash", "-c", command], env=cron_environment(), capture_output=True, text=True, check=False
        )
    assert skipped.returncode == 0 and skipped.stdout == ""
    assert emulator.requests == []
    assert (deployment["log"] / "amp-luigi.log").read_text() == log


def test_cron_line_reports_a_failed_day(workspace: Workspace, emulator, deployment: dict[str, Path]) -> None:
    emulator.add_fault("status", times=None, status=500)
    run = subprocess.run(
        ["bash", "-c", cron_command(deployment)],
        env=cron_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "amp-luigi failed with exit code 30" in run.stdout  # what cron mails
    log = (deployment["log"] / "amp-luigi.log").read_text()
    assert "ExportDay(date=2024-03-01" in log[log.index("Luigi Execution Summary") :]


def test_systemd_service_runs_the_export_as_its_unit_says(
    workspace: Workspace, emulator, deployment: dict[str, Path]
) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(relocate((CONFIG / "amp-luigi.service").read_text(), deployment))
    service = unit["Service"]
    assert service["Type"] == "oneshot"
    env = {**cron_environment(), **{k: v or "" for k, v in dotenv_values(service["EnvironmentFile"]).items()}}
    run = subprocess.run(
        shlex.split(service["ExecStart"]),
        cwd=service["WorkingDirectory"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert STAMPED.search(run.stderr)
    assert len(workspace.keys("python_import/_verified/")) == 2
    assert Path(service["ExecStart"].split()[0]).is_relative_to(deployment["opt"])

    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.optionxform = str  # type: ignore[assignment,method-assign]
    timer.read(CONFIG / "amp-luigi.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:30:00 UTC"
    assert timer["Timer"]["Persistent"] == "true"
