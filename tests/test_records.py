"""The records the stages hand each other: typed, versioned, and a damaged or other form named."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from amp_luigi.errors import NewerRecordError, StaleStateError
from amp_luigi.records import (
    VERSION,
    DayRecord,
    ExpectedObject,
    ExportedRange,
    ExportIndex,
    Manifest,
    MemberRecord,
    read_marker,
)
from amp_luigi.s3 import Bucket
from tests.conftest import MOCK_BUCKET

DAY = dt.date(2024, 3, 1)
MEMBER = MemberRecord("x_2024-03-01_1#0.json.gz", 1, 3, 10, "AAAAAA==", 30, "BBBBBB==")
OBJECT = ExpectedObject("p/2024-03-01/x.json", 30, "BBBBBB==", 3, MEMBER.name, '"etag"')


def test_the_index_and_the_manifest_survive_a_round_trip_with_their_version(tmp_path: Path) -> None:
    ranges = [ExportedRange("20240301T00-20240301T23", "20240301T00-20240301T23.zip")]
    ExportIndex(DAY, ranges).save(tmp_path / "parts.json")
    Manifest(DAY, [MEMBER], ranges).save(tmp_path / "manifest.json")

    assert ExportIndex.load(tmp_path / "parts.json") == ExportIndex(DAY, ranges)
    assert Manifest.load(tmp_path / "manifest.json") == Manifest(DAY, [MEMBER], ranges)
    assert json.loads((tmp_path / "manifest.json").read_text())["version"] == VERSION
    assert not list(tmp_path.glob(".*partial")), "written beside and renamed"


def test_a_marker_survives_a_round_trip_and_counts_are_written_for_people() -> None:
    record = DayRecord(DAY, [OBJECT], "json", "etag", verified_at=dt.datetime(2024, 3, 2, 3, 0, 1))
    data = json.loads(json.dumps(record.to_json()))
    assert DayRecord.from_json(data, "m") == record
    assert (data["object_count"], data["events"], data["bytes"]) == (1, 3, 30)
    assert data["verified_at"] == "2024-03-02T03:00:01+00:00"


def test_a_marker_from_before_versions_reads_as_version_one() -> None:
    old = {"date": "2024-03-01", "objects": [vars(OBJECT)], "object_count": 1, "events": 3, "format": "json"}
    record = DayRecord.from_json(old, "m")
    assert record.objects == [OBJECT] and record.proof == "" and record.verified_at is None


@pytest.mark.parametrize(
    "data",
    [
        {
            "date": "2024-03-01",
            "objects": [{"key": "k", "bytes": 1, "sha256": "x", "events": 1, "member": "m"}],
        },
        {"version": 0, "date": "2024-03-01", "objects": []},
        {"date": "March first", "objects": []},
        {"objects": []},
    ],
    ids=["sha256-era", "version-0", "bad-date", "no-date"],
)
def test_another_form_is_stale_and_named(data: dict[str, Any]) -> None:
    with pytest.raises(StaleStateError, match="s3://b/k"):
        DayRecord.from_json(data, "s3://b/k")


def test_a_damaged_local_record_is_stale_and_named(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"date": "2024-03-01", "memb')
    with pytest.raises(StaleStateError, match=r"manifest .*manifest\.json is damaged"):
        Manifest.load(tmp_path / "manifest.json")


def test_a_marker_of_a_newer_amp_luigi_is_refused_and_kept(mock_s3_client: Any) -> None:
    key = "p/_verified/2024-03-01.json"
    body = json.dumps({"version": VERSION + 1, "date": "2024-03-01", "objects": []})
    mock_s3_client.put_object(Bucket=MOCK_BUCKET, Key=key, Body=body)
    with pytest.raises(NewerRecordError, match="newer amp-luigi"):
        read_marker(Bucket(mock_s3_client, MOCK_BUCKET), key)
    assert mock_s3_client.get_object(Bucket=MOCK_BUCKET, Key=key)["Body"].read() == body.encode()
