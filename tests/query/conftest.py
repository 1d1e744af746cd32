from __future__ import annotations

from pathlib import Path

import pytest

from tests.query.iceberg_lake import Lake, make_lake


@pytest.fixture
def lake(tmp_path: Path, moto_endpoint: str) -> Lake:
    """An Iceberg table on the session's moto server (tests/query/iceberg_lake.py)."""
    return make_lake(tmp_path, moto_endpoint)
