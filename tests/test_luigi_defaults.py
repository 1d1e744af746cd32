"""The Luigi settings amp-luigi depends on hold even where no luigi.cfg is found."""

from __future__ import annotations

import configparser
import datetime as dt

from amp_luigi import luigi_defaults
from tests.conftest import REPO, Workspace


def test_the_package_defaults_are_the_values_the_project_luigi_cfg_sets() -> None:
    project = configparser.ConfigParser()
    project.read(REPO / "luigi.cfg")
    for section, options in luigi_defaults.DEFAULTS.items():
        for option, value in options.items():
            assert project.get(section, option) == value, f"[{section}] {option}"


def test_apply_fills_only_what_the_configuration_leaves_unset() -> None:
    config = configparser.ConfigParser()
    config.read_string("[retcode]\ntask_failed = 7\n")
    luigi_defaults.apply(config)
    assert config.get("retcode", "task_failed") == "7"
    assert config.get("retcode", "scheduling_error") == "35"
    assert config.get("resources", "amplitude_export") == "2"


def test_a_failed_day_exits_non_zero_without_any_luigi_cfg(workspace: Workspace, emulator) -> None:
    (workspace.path / "luigi.cfg").unlink()
    env = {key: value for key, value in workspace.env.items() if key != "LUIGI_CONFIG_PATH"}
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    workspace.env = env
    run = workspace.luigi("VerifyDay", "--date", tomorrow.isoformat(), "--local-scheduler", "--no-lock")
    assert run.returncode == 30, run.stderr
    assert "cannot be exported yet" in run.stderr
    assert emulator.requests == []
