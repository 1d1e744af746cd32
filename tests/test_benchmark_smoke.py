"""A tiny run of benchmarks/day.py: the naive script and amp-luigi put the same events in S3, and the
table judges each against the S3 floor measured in the same run.

Timings are not asserted (the machine is shared); the benchmark itself exits non-zero when the two
pipelines' objects differ by name, SHA-256 or event count, or miss any of the emulator's events.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.expect import run_benchmark

pytestmark = pytest.mark.e2e  # the benchmark starts the emulator and moto_server


def test_the_benchmark_runs_both_pipelines_and_they_land_the_same_events(tmp_path: Path) -> None:
    run = run_benchmark("day.py", tmp_path, "--mib", "3", "--runs", "1", "--quick", timeout=180)
    assert run.returncode == 0, run.stderr[-4000:]
    # One line per format, written after the objects were compared one by one.
    assert len(re.findall(r"same [1-9]\d* objects, [1-9]\d* events in S3", run.stderr)) == 2
    for row in ("| naive .json |", "| amp-luigi .json |", "| naive .json.gz |", "| amp-luigi .json.gz |"):
        assert row in run.stdout
    assert "| amp-luigi .json, upload_proof = none |" in run.stdout
    assert "| S3 alone: PUT the .json objects from memory |" in run.stdout
    assert "wall / (floor + start-up)" in run.stdout
    assert re.search(r"Proving every upload .*: \.json [+-]\d", run.stdout)
