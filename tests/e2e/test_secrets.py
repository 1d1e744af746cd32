"""The API key, the secret key and the AWS secret never show: not in logs at DEBUG, exception texts,
task ids or parameters, staging files or S3 objects, whatever fails.

Every run is the real `luigi` command at `--log-level DEBUG` with the distinctive values of conftest;
every byte it printed or wrote is searched for them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import luigi
import pytest

from amp_luigi.emulator import Emulator
from amp_luigi.projects import project
from amp_luigi.settings import amplitude, storage
from amp_luigi.tasks import ExportDay, ExtractDay, UploadDay, VerifyDay
from tests.conftest import API_KEY, AWS_SECRET, DAY, LUIGI, SECRET_KEY, Workspace

WRONG_SECRET = "amp-wrong-secret-SHOULD-NEVER-LEAK-77e0"
NEEDLES = (API_KEY, SECRET_KEY, AWS_SECRET, WRONG_SECRET)
DATE = DAY.isoformat()


def luigi_debug(
    workspace: Workspace, *args: str, env: dict[str, str] | None = None, module: str = "amp_luigi"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LUIGI, "--module", module, *args, "--local-scheduler", "--log-level", "DEBUG"],
        cwd=workspace.path,
        env={**workspace.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def scenario_success(workspace: Workspace, emulator: Emulator) -> list[subprocess.CompletedProcess[str]]:
    return [luigi_debug(workspace, "VerifyDay", "--date", DATE)]


def scenario_bad_credentials(
    workspace: Workspace, emulator: Emulator
) -> list[subprocess.CompletedProcess[str]]:
    return [luigi_debug(workspace, "VerifyDay", "--date", DATE, env={"AMP_SECRET_KEY": WRONG_SECRET})]


def scenario_5xx_exhausted(
    workspace: Workspace, emulator: Emulator
) -> list[subprocess.CompletedProcess[str]]:
    emulator.add_fault("status", times=None, status=503, body=f"echo {API_KEY}")
    return [luigi_debug(workspace, "VerifyDay", "--date", DATE)]


def scenario_corrupt_archive(
    workspace: Workspace, emulator: Emulator
) -> list[subprocess.CompletedProcess[str]]:
    emulator.add_fault("non_json_line", times=1)
    return [luigi_debug(workspace, "VerifyDay", "--date", DATE)]


def scenario_missing_bucket(
    workspace: Workspace, emulator: Emulator
) -> list[subprocess.CompletedProcess[str]]:
    return [
        luigi_debug(workspace, "VerifyDay", "--date", DATE, env={"AWS_BUCKET_NAME": "amp-no-such-bucket"})
    ]


def scenario_access_denied(
    workspace: Workspace, emulator: Emulator
) -> list[subprocess.CompletedProcess[str]]:
    env = {"AMP_TEST_S3_FAULT": "PutObject:403:AccessDenied"}
    return [luigi_debug(workspace, "VerifyDay", "--date", DATE, env=env, module="tests.luigi_hooks")]


def scenario_verification_failure(
    workspace: Workspace, emulator: Emulator
) -> list[subprocess.CompletedProcess[str]]:
    upload = luigi_debug(workspace, "UploadDay", "--date", DATE)
    workspace.s3.put_object(Bucket=workspace.bucket, Key=f"python_import/{DATE}/extra.json", Body=b"{}\n")
    return [upload, luigi_debug(workspace, "VerifyDay", "--date", DATE)]


SCENARIOS = {
    "success": (scenario_success, 0),
    "bad credentials": (scenario_bad_credentials, 30),
    "5xx exhausted": (scenario_5xx_exhausted, 30),
    "corrupt archive": (scenario_corrupt_archive, 30),
    "missing bucket": (scenario_missing_bucket, 35),
    "access denied": (scenario_access_denied, 30),
    "verification failure": (scenario_verification_failure, 30),
}


def leaks(text: str | bytes, where: str) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [f"{where} holds {needle[:12]}..." for needle in NEEDLES if needle.encode() in data]


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_secret_in_any_output_of_a_run(workspace: Workspace, emulator: Emulator, name: str) -> None:
    workspace.configure("staging", keep=True)  # keep the staging files, to search them too
    scenario, exit_code = SCENARIOS[name]
    runs = scenario(workspace, emulator)
    assert runs[-1].returncode == exit_code, runs[-1].stderr[-3000:]
    assert "DEBUG" in runs[-1].stderr, "the run logged at DEBUG"

    found: list[str] = []
    for index, run in enumerate(runs):
        found += leaks(run.stdout, f"stdout of run {index}") + leaks(run.stderr, f"stderr of run {index}")
    for path in sorted(workspace.data_dir.rglob("*")) if workspace.data_dir.exists() else []:
        found += leaks(str(path), "a staging path")
        if path.is_file():
            found += leaks(path.read_bytes(), f"staging file {path}")
    listed = workspace.keys()
    for key in listed:
        found += leaks(key, "an S3 key") + leaks(workspace.read(key), f"S3 object {key}")
        head = workspace.s3.head_object(Bucket=workspace.bucket, Key=key)
        found += leaks(repr(head.get("Metadata")), f"metadata of {key}")
    assert found == []


def test_no_secret_in_task_ids_parameters_or_settings_reprs(in_process: Workspace) -> None:
    tasks = [ExportDay(DAY), ExtractDay(DAY), UploadDay(DAY), VerifyDay(DAY)]
    shown = [task.task_id for task in tasks] + [repr(task) for task in tasks]
    shown += [str(task.to_str_params()) for task in tasks]
    for config in (amplitude(), storage()):
        shown += [repr(config), str(config.to_str_params(only_significant=True, only_public=True))]
        shown += [str(config.to_str_params(only_significant=True))]  # what a scheduler could be sent
    shown += [repr(project("").client()), repr(project("").open_bucket().client)]
    assert [text for text in shown if any(needle in text for needle in NEEDLES)] == []


def test_config_parameters_holding_secrets_are_private() -> None:
    for config, names in (
        (amplitude, ("api_key", "secret_key")),
        (storage, ("access_key", "secret_access_key")),
    ):
        for name in names:
            parameter = getattr(config, name)
            assert parameter.visibility == luigi.parameter.ParameterVisibility.PRIVATE, (
                f"{config.__name__}.{name}"
            )


def test_the_search_would_find_a_leak(tmp_path: Path) -> None:
    """The needles are what the runs actually used: a search for them is not vacuous."""
    assert leaks(f"x {SECRET_KEY} y", "text") and leaks(AWS_SECRET.encode(), "bytes")
