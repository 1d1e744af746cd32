"""A tiny run of benchmarks/iceberg.py: IcebergDay beside ParquetDay, a backfill, a refresh, and the
table read back against the raw layer.

Timings are not asserted (the machine is shared); the benchmark itself exits non-zero when the
table's rows per event-time day, its uuids or the markers disagree with the raw layer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.expect import run_benchmark

pytestmark = pytest.mark.e2e  # the benchmark starts the emulator and moto_server


def test_the_iceberg_benchmark_runs_and_the_table_matches_the_raw_layer(tmp_path: Path) -> None:
    run = run_benchmark("iceberg.py", tmp_path, "--quick")
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Correctness: OK: " in run.stdout, run.stdout[-4000:]
