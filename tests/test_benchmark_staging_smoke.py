"""A tiny run of benchmarks/staging.py: one day staged locally and in S3, its requests counted.

Timings are not asserted (the machine is shared); the benchmark itself exits non-zero when the two
stagings land different objects or S3 staging leaves an object behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.expect import run_benchmark

pytestmark = pytest.mark.e2e  # the benchmark starts the emulator and moto_server


def test_the_staging_benchmark_counts_what_s3_staging_adds(tmp_path: Path) -> None:
    run = run_benchmark("staging.py", tmp_path, "--mib", "5", "--runs", "1")
    assert run.returncode == 0, run.stderr[-4000:]
    out = run.stdout
    assert "Both stagings landed the same" in out, out
    # S3 staging PUTs each member and reads it back; local staging reads nothing back but markers.
    puts = re.search(r"^PutObject\s+(\d+)\s+(\d+)", out, re.M)
    gets = re.search(r"^GetObject\s+(\d+)\s+(\d+)", out, re.M)
    assert puts and gets, out
    assert int(puts[2]) > int(puts[1]) and int(gets[2]) > int(gets[1])
    disk = re.search(r"^peak local disk \(MiB\)\s+(\S+) \(.*?\)\s+(\S+) ", out, re.M)
    assert disk and float(disk[2]) == 0.0, out
