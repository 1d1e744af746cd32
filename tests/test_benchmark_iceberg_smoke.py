"""A tiny run of benchmarks/iceberg.py: IcebergDay beside ParquetDay, a backfill, a refresh, and the
table read back against the raw layer.

Timings are not asserted (the machine is shared); the benchmark itself exits non-zero when the
table's rows per event-time day, its uuids or the markers disagree with the raw layer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # the benchmark starts the emulator and moto_server

REPO = Path(__file__).resolve().parent.parent


def test_the_iceberg_benchmark_runs_and_the_table_matches_the_raw_layer(tmp_path: Path) -> None:
    dirs = ["--work-dir", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache")]
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "iceberg.py"), "--quick", "--dev-venv", *dirs],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Correctness: OK: " in run.stdout, run.stdout[-4000:]
