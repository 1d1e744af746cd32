"""The status metrics: what node_exporter's textfile collector reads, parsed by prometheus_client's own
parser, and the file replaced atomically."""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from amp_luigi.commands.days import DONE, EMPTY, FAILED, MISSING, NOT_YET, DayStatus
from amp_luigi.commands.metrics import Target, render, write
from tests.conftest import REPO, SECRETS, Workspace
from tests.expect import setup_days
from tests.operations_doc import DOC, example

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 3, 12, 6, 0, tzinfo=UTC)
LABELS = {"bucket": "my-bucket", "prefix": "python_import"}


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Samples by family and labels; every family must be declared (HELP, TYPE gauge)."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family
        assert family.documentation, family
        assert family.name.startswith("amp_luigi_"), family
        for sample in family.samples:
            assert sample.name == family.name
            found.setdefault(family.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({**LABELS, **labels}.items()))


def day(n: int, state: str, events: int = 0, objects: int = 0, verified_hour: int | None = None) -> DayStatus:
    date = dt.date(2024, 3, n)
    stamp = dt.datetime(2024, 3, n + 1, verified_hour, 30, tzinfo=UTC) if verified_hour is not None else None
    return DayStatus(date, state, events, objects, verified_at=stamp)


DAYS = [
    *(day(n, DONE, 1000 + n, 10 + n, verified_hour=2) for n in range(1, 9)),  # 01..08 done
    day(9, EMPTY, verified_hour=3),
    day(10, FAILED),
    day(11, MISSING),
    day(12, NOT_YET),
]


def test_freshness_counts_and_newest_days_parse_as_prometheus_gauges() -> None:
    found = parse(render([Target(LABELS, DAYS)], NOW))
    midnight_9 = dt.datetime(2024, 3, 9, tzinfo=UTC).timestamp()
    assert found["amp_luigi_newest_verified_day_timestamp_seconds"] == {key(): midnight_9}
    # The 9th (empty, but verified) ended at 00:00 on the 10th: 2 days and 6 hours before NOW.
    assert found["amp_luigi_newest_verified_day_age_seconds"] == {key(): (2 * 24 + 6) * 3600}
    assert found["amp_luigi_newest_verified_day_events"] == {key(): 0}
    assert found["amp_luigi_days"] == {
        key(state="done"): 8,
        key(state="empty"): 1,
        key(state="missing"): 1,
        key(state="failed"): 1,
        key(state="not_yet"): 1,
    }
    # The 7 newest verified days: 03..09.
    assert found["amp_luigi_day_events"] == {
        **{key(date=f"2024-03-{n:02d}"): 1000 + n for n in range(3, 9)},
        key(date="2024-03-09"): 0,
    }
    assert found["amp_luigi_day_objects"][key(date="2024-03-08")] == 18
    assert found["amp_luigi_last_verified_timestamp_seconds"] == {
        key(): dt.datetime(2024, 3, 10, 3, 30, tzinfo=UTC).timestamp()
    }
    assert found["amp_luigi_range_start_timestamp_seconds"] == {
        key(): dt.datetime(2024, 3, 1, tzinfo=UTC).timestamp()
    }
    assert found["amp_luigi_status_timestamp_seconds"] == {key(): NOW.timestamp()}


def test_a_range_without_a_verified_day_has_no_freshness_sample_rather_than_a_made_up_one() -> None:
    found = parse(render([Target(LABELS, [day(1, MISSING), day(2, FAILED)])], NOW))
    assert "amp_luigi_newest_verified_day_age_seconds" not in found
    assert "amp_luigi_last_verified_timestamp_seconds" not in found
    assert found["amp_luigi_days"][key(state="missing")] == 1
    assert found["amp_luigi_days"][key(state="failed")] == 1


def test_each_target_has_its_own_series_and_label_values_are_escaped() -> None:
    odd = {"bucket": 'b"ack\\slash', "prefix": "line\nbreak"}
    found = parse(render([Target(LABELS, DAYS), Target(odd, DAYS[:2])], NOW))
    ages = found["amp_luigi_newest_verified_day_age_seconds"]
    assert ages[tuple(sorted(odd.items()))] == (9 * 24 + 6) * 3600  # its newest day is the 2nd
    assert len(ages) == 2


def test_the_file_is_replaced_whole_and_readable_by_another_user(tmp_path: Path) -> None:
    path = tmp_path / "amp_luigi.prom"
    path.write_text("old\n")
    umask = os.umask(0o077)  # a umask that would leave a new file unreadable to node_exporter
    try:
        write(path, [Target(LABELS, DAYS)], NOW)
    finally:
        os.umask(umask)
    assert path.read_text() == render([Target(LABELS, DAYS)], NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["amp_luigi.prom"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "amp_luigi.prom"
    path.write_text("old\n")
    renamed: list[str] = []

    def disk_full(source: str, *_: object) -> None:
        renamed.append(source)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", disk_full)
    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        write(path, [Target(LABELS, DAYS)], NOW)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["amp_luigi.prom"]
    # The temporary was written beside the file (a rename within one file system) under a name
    # node_exporter skips.
    temporary = Path(renamed[0])
    assert temporary.parent == tmp_path and not temporary.name.endswith(".prom")


def status(workspace: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return workspace.amp_luigi("status", "--start", "2024-03-01", "--stop", "2024-03-08", *args)


def test_status_command_writes_the_metrics_file_from_the_markers(
    workspace: Workspace, tmp_path: Path
) -> None:
    setup_days(workspace)
    path = tmp_path / "textfile" / "amp_luigi.prom"
    path.parent.mkdir()
    run = status(workspace, "--metrics-file", str(path))
    assert run.returncode == 0, run.stderr
    assert "1 done, 1 empty, 3 missing, 2 FAILED" in run.stdout  # the calendar is still printed
    labels = {"bucket": workspace.bucket, "prefix": "python_import"}
    found = parse(path.read_text())
    labelled = tuple(sorted(labels.items()))
    # setup_days: 01 done (4956 events, 22 objects), 02 empty, 03 and 04 failed, 05..07 missing.
    assert found["amp_luigi_newest_verified_day_timestamp_seconds"] == {
        labelled: dt.datetime(2024, 3, 2, tzinfo=UTC).timestamp()
    }
    assert found["amp_luigi_day_events"] == {
        tuple(sorted({**labels, "date": "2024-03-01"}.items())): 4956,
        tuple(sorted({**labels, "date": "2024-03-02"}.items())): 0,
    }
    assert found["amp_luigi_days"][tuple(sorted({**labels, "state": "failed"}.items()))] == 2
    assert found["amp_luigi_days"][tuple(sorted({**labels, "state": "missing"}.items()))] == 3
    age = found["amp_luigi_newest_verified_day_age_seconds"][labelled]
    expected = dt.datetime.now(UTC).timestamp() - dt.datetime(2024, 3, 3, tzinfo=UTC).timestamp()
    assert abs(age - expected) < 120
    assert os.listdir(path.parent) == ["amp_luigi.prom"]

    printed = status(workspace, "--metrics-file", "-", "--check")
    assert printed.returncode == 1  # --check still applies
    moving = {"amp_luigi_newest_verified_day_age_seconds", "amp_luigi_status_timestamp_seconds"}
    again = parse(printed.stdout)
    assert {name: again[name] for name in again.keys() - moving} == {
        name: found[name] for name in found.keys() - moving
    }
    for secret in SECRETS:
        assert secret not in run.stdout + run.stderr + printed.stdout + printed.stderr + path.read_text()

    nowhere = status(workspace, "--metrics-file", str(tmp_path / "no-such-dir" / "amp_luigi.prom"))
    assert nowhere.returncode == 2
    assert (
        nowhere.stderr == f"--metrics-file {tmp_path}/no-such-dir/amp_luigi.prom: No such file or directory\n"
    )


def luigid_metric_names() -> set[str]:
    """The series luigi's PrometheusMetricsCollector (luigid's /metrics) declares."""
    from luigi.contrib.prometheus_metric import PrometheusMetricsCollector

    families = PrometheusMetricsCollector().registry.collect()
    return {family.name + ("_total" if family.type == "counter" else "") for family in families}


def test_the_documented_alert_rules_use_only_metrics_that_exist() -> None:
    rules = yaml.safe_load(example("alert-rules"))
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert all(rule["alert"] for group in rules["groups"] for rule in group["rules"])
    used = set(re.findall(r"\b(?:amp_)?luigi_[a-z_]+", " ".join(exprs)))
    written = {family.name for family in text_string_to_metric_families(render([Target(LABELS, DAYS)], NOW))}
    assert used <= written | luigid_metric_names(), used - written - luigid_metric_names()
    assert "amp_luigi_newest_verified_day_age_seconds > 36 * 3600" in exprs
    # The page's tables and text name only metrics that exist, too.
    named = set(re.findall(r"\b(?:amp_)?luigi_[a-z_]*[a-z]\b", DOC.read_text(encoding="utf-8")))
    assert named <= written | luigid_metric_names(), named - written - luigid_metric_names()
    assert written <= named, written - named  # and every metric amp-luigi writes is documented


def test_the_documented_cron_line_writes_the_metrics_file(workspace: Workspace, tmp_path: Path) -> None:
    """docs/operations.md's cron line, its paths moved into tmp: /opt/amp-luigi is this checkout."""
    setup_days(workspace)
    fields = example("metrics-cron").split(maxsplit=6)
    assert fields[:6] == ["*/15", "*", "*", "*", "*", "amp-luigi"]
    env_file = tmp_path / "amp-luigi.env"
    env_file.write_text("".join(f"{name}={shlex.quote(value)}\n" for name, value in workspace.env.items()))
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    command = (
        fields[6]
        .replace("/opt/amp-luigi", str(REPO))
        .replace("/etc/amp-luigi/amp-luigi.env", str(env_file))
        .replace("/var/lib/node_exporter/textfile", str(textfile))
        .replace(".venv/bin/python", sys.executable)
    )
    run = subprocess.run(
        ["bash", "-c", command], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    found = parse((textfile / "amp_luigi.prom").read_text())
    labelled = tuple(sorted({"bucket": workspace.bucket, "prefix": "python_import"}.items()))
    assert found["amp_luigi_newest_verified_day_timestamp_seconds"] == {
        labelled: dt.datetime(2024, 3, 2, tzinfo=UTC).timestamp()
    }
    for secret in SECRETS:
        assert secret not in run.stderr
