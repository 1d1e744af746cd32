"""The sandbox command (commands/sandbox.py), the README's first command: `python -m amp_luigi sandbox`,
run as a user would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from amp_luigi.commands import report
from amp_luigi.testing.browser import read_png
from tests.conftest import REPO

pytestmark = pytest.mark.e2e  # the sandbox starts the emulator and a moto server


def sandbox(*args: str) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "AMP_", "LUIGI_"))}
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "amp_luigi", "sandbox", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sandbox_exports_the_newest_days_of_two_projects_then_skips_them_all() -> None:
    process = sandbox("--days", "2")
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    root = re.search(r"amp-luigi sandbox in (\S+)", output)
    assert root, output
    for project in ("web", "ios"):
        assert re.search(
            rf"^project {project}: data landed in s3://\S+/python_import/{project}/", output, re.M
        )
    days = re.findall(r"^  (\d{4}-\d{2}-\d{2})\s+(\d+)\s+([\d,]+)\s+[\d.]+ [KM]iB$", output, re.MULTILINE)
    assert len(days) == 4 and all(int(objects) > 0 for _, objects, _ in days), output
    web, ios = days[:2], days[2:]
    assert [day for day, _, _ in web] == [day for day, _, _ in ios]
    assert [events for _, _, events in web] != [events for _, _, events in ios], "each its own events"
    # One range per project and the range over both, a batch per project and its two windows (the
    # first day's answer is learnt before the next request), then three tasks a day and project:
    # each ExportDay was done by its window before it was scheduled.
    assert "* 21 ran successfully" in output
    assert "* 4 complete ones were encountered" in output
    assert re.search(r"(ExtractDay|UploadDay|VerifyDay)\(date=[\d-]+, project=(ios|web)\)", output), output
    for day, _, _ in web:
        for project in ("web", "ios"):
            assert f"{project} {day}: skipped, verified marker unchanged" in output
    assert "export requests the emulator answered: web 2, ios 2" in output
    assert "export requests the emulator answered: web 0, ios 0" in output
    assert "Every day was skipped without a request to Amplitude." in output
    assert not os.path.exists(root.group(1)), "the sandbox removes its directory"


def test_sandbox_with_scheduler_prints_the_visualiser_and_stops_on_ctrl_c() -> None:
    process = sandbox("--days", "1", "--with-scheduler")
    lines: list[str] = []
    assert process.stdout is not None
    try:
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        url = re.search(r"open (http://127\.0\.0\.1:\d+/static/visualiser/index\.html)", output)
        assert url, output
        assert "--scheduler-host 127.0.0.1 --scheduler-port" in output
        assert "export requests the emulator answered: web 0, ios 0" in output
        import urllib.request

        with urllib.request.urlopen(url.group(1), timeout=10) as page:
            assert page.status == 200
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output + rest
    port = url.group(1).split(":")[2].split("/")[0]
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    except OSError:
        pass
    else:
        raise AssertionError("luigid still answers after the sandbox stopped")


def test_sandbox_writes_the_report_of_its_range_with_the_web_projects_outage(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    process = sandbox("--days", "2", "--report", str(page))
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert re.search(rf"wrote {page}: 2 project\(s\), 0 volume anomalies", output), output  # no history yet
    text = page.read_text()
    sections = text.split("<section>")[1:]
    assert [re.search(r"<h2>project (\w+),", section)[1] for section in sections] == ["ios", "web"]  # type: ignore[index]
    ios, web = sections
    assert 'data-state="empty"' in web and 'data-state="empty"' not in ios  # the web project's outage
    assert "no verdict: 0 of the 4 weeks before verified, 3 needed" in web


def test_the_readme_picture_is_a_report_as_chromium_draws_it() -> None:
    """docs/report.png (made by `sandbox --days 42 --report`, README): the report's colours, its legend,
    the outage ringed as an anomaly."""
    readme = (REPO / "README.md").read_text()
    assert "](docs/report.png)" in readme and "sandbox --days 42 --report report.html" in readme
    image = read_png(REPO / "docs" / "report.png")
    for colour in (*report.SCALE, report.FILLS["FAILED"], report.FILLS["missing"]):
        red, green, blue = (int(colour[n : n + 2], 16) for n in (1, 3, 5))
        swatches = image.regions((red, green, blue))
        assert any(box[2] - box[0] + 1 == report.SWATCH for box in swatches), colour  # the legend's
    ring = (0xFF, 0x7F, 0x0E)
    rings = [box for box in image.regions(ring) if box[2] - box[0] + 1 > report.CELL]
    assert len(rings) == 1, "the web project's outage, ringed in its heatmap"
