"""The sandbox command (commands/sandbox.py), the README's first command: `python -m amp_luigi sandbox`,
run as a user would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

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
