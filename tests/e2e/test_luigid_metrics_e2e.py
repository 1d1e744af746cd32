"""luigid's own Prometheus metrics, as docs/operations.md configures them: a real `luigid` with
`[scheduler] metrics_collector = prometheus`, a verified day and a failed one run against it by the
real `luigi` command, and `/metrics` read and parsed."""

from __future__ import annotations

import datetime as dt
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from amp_luigi.testing.local import Luigid, clean_environment
from tests.conftest import DAY, REPO, SECRETS, Workspace
from tests.operations_doc import example

FAMILIES = ("ExportDay", "ExtractDay", "UploadDay", "VerifyDay")
TASK_FAILED = 30  # luigi.cfg [retcode]


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[Luigid]:
    """luigid started with the project's luigi.cfg plus the page's metrics section, as deployed."""
    config = tmp_path / "luigid.cfg"
    config.write_text((REPO / "luigi.cfg").read_text() + "\n" + example("luigid-metrics"))
    env = {**clean_environment(), "LUIGI_CONFIG_PATH": str(config)}
    with Luigid(tmp_path / "luigid", env=env) as scheduler:
        yield scheduler


def test_luigid_counts_done_and_failed_tasks_per_family_on_its_metrics_page(
    workspace: Workspace, emulator, luigid: Luigid
) -> None:
    failing = DAY + dt.timedelta(days=1)
    emulator.add_fault("status", times=None, match=failing, status=401)
    against_luigid = [
        *("--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid.port)),
        *("--lock-pid-dir", str(workspace.path / "locks")),
    ]
    verified = workspace.luigi("VerifyDay", "--date", str(DAY), *against_luigid)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    failed = workspace.luigi("VerifyDay", "--date", str(failing), *against_luigid)
    assert failed.returncode == TASK_FAILED, failed.stdout + failed.stderr

    with urllib.request.urlopen(f"{luigid.url}/metrics", timeout=10) as answer:
        content_type = answer.headers["Content-Type"]
        text = answer.read().decode()
    assert content_type.startswith("text/plain"), content_type
    samples = {
        (sample.name, sample.labels["family"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "family" in sample.labels
    }
    for family in FAMILIES:
        assert samples[("luigi_task_done_total", family)] == 1, family
    assert samples[("luigi_task_started_total", "ExportDay")] == 2
    assert samples[("luigi_task_failed_total", "ExportDay")] == 1
    assert ("luigi_task_failed_total", "VerifyDay") not in samples  # it never ran: its export failed
    assert ("luigi_task_execution_time_seconds", "ExportDay") in samples
    for secret in SECRETS:
        assert secret not in text + verified.stdout + verified.stderr + failed.stdout + failed.stderr
