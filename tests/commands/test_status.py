"""The status command: the calendar it prints from the days' states (commands/days.py), and a missing setting named."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from tests.conftest import SECRETS, Workspace
from tests.expect import ANOMALOUS, WEEKS_START, WEEKS_STOP, setup_days, setup_weeks


def test_status_command_prints_a_calendar(workspace: Workspace) -> None:
    setup_days(workspace)
    run = workspace.amp_luigi("status", "--start", "2024-03-01", "--stop", "2024-03-08", "--check")
    assert run.returncode == 1, run.stderr  # --check: days 03-06 are failed or missing
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"s3://{workspace.bucket}/python_import/  2024-03-01 .. 2024-03-07")
    assert lines[1].split() == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    # 2024-03-01 is a Friday: the first week starts on Monday 2024-02-26.
    assert lines[2].split() == ["2024-02-26", "01", "4.96k/22", "02", "empty", "03", "FAILED"]
    assert lines[3].split() == [
        "2024-03-04",
        "04",
        "FAILED",
        "05",
        "missing",
        "06",
        "missing",
        "07",
        "missing",
    ]
    assert "1 done, 1 empty, 3 missing, 2 FAILED, 0 not yet; 4,956 events in 22 objects" in run.stdout
    assert "2024-03-03 failed (or is running now): an _uploaded marker without a _verified one" in run.stdout
    assert "2024-03-04 failed (or is running now): a staging directory left behind" in run.stdout
    assert "missing: 2024-03-05..2024-03-07" in run.stdout
    for secret in SECRETS:
        assert secret not in run.stdout + run.stderr


def test_status_names_a_missing_setting(workspace: Workspace, tmp_path: Path) -> None:
    run = workspace.amp_luigi("status", "--start", "2024-03-01", env={"AWS_BUCKET_NAME": ""})
    assert run.returncode == 2
    assert "AWS_BUCKET_NAME" in run.stderr


def test_a_volume_anomaly_is_marked_named_and_can_fail_the_check(workspace: Workspace) -> None:
    """One rule (amp_luigi.volume) for the calendar's mark, --fail-on-anomaly and the metrics."""
    setup_weeks(workspace)
    window = ("--start", str(WEEKS_START), "--stop", str(WEEKS_STOP))
    run = workspace.amp_luigi("status", *window)
    assert run.returncode == 0, run.stderr
    week = next(line for line in run.stdout.splitlines() if line.startswith("2024-03-04 "))
    assert "06!200/4" in week and "05 1.1k/4" in week  # the anomalous Wednesday, the Tuesday before
    assert (
        f"{ANOMALOUS} volume anomaly: 200 events, 0.19x the usual 1,050 (below the 0.5x-2x band; median of "
        "the same weekday over 4 week(s))" in run.stdout
    )
    assert "! a volume anomaly" in run.stdout.splitlines()[0]
    assert run.stdout.count("volume anomaly:") == 1
    assert workspace.amp_luigi("status", *window, "--fail-on-anomaly").returncode == 1
    # The band is a setting: at 0.1x the day passes.
    workspace.configure("volume", low=0.1)
    assert workspace.amp_luigi("status", *window, "--fail-on-anomaly").returncode == 0
    workspace.configure("volume", low=0.5)
    # The metrics count the anomalies of the 7 newest verified days: the week after it, and then not.
    week_after = ("--start", str(WEEKS_START), "--stop", str(ANOMALOUS + dt.timedelta(days=4)))
    metrics = workspace.amp_luigi("status", *week_after, "--metrics-file", "-").stdout
    assert re.search(r"amp_luigi_volume_anomalies\{[^}]*\} 1\.0", metrics), metrics
    later = workspace.amp_luigi("status", *window, "--metrics-file", "-").stdout
    assert re.search(r"amp_luigi_volume_anomalies\{[^}]*\} 0\.0", later) and "anomaly_ratio{" not in later
    ratio = re.search(
        rf'amp_luigi_day_volume_anomaly_ratio\{{[^}}]*date="{ANOMALOUS}"[^}}]*\}} (\S+)', metrics
    )
    assert ratio and abs(float(ratio[1]) - 200 / 1050) < 1e-9
