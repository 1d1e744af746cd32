"""UploadDay's stage: the manifest's members in S3 under their keys, exactly (inflated, or as gzip with
keep_gzip), each with its event count; strays of an earlier export deleted, abandoned multipart
uploads aborted first, and a member changed since extraction never committed."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from amp_luigi.errors import ArchiveError, StorageError
from amp_luigi.layout import DayLayout
from amp_luigi.members import Limits
from amp_luigi.records import Manifest, MemberRecord
from amp_luigi.s3 import Bucket
from amp_luigi.upload import upload_day
from tests.conftest import MOCK_BUCKET, crc32_of

DAY = dt.date(2024, 3, 1)
PREFIX = "python_import/2024-03-01/"


def events(hour: int, count: int) -> bytes:
    return b"".join(json.dumps({"$insert_id": f"{hour}-{n}"}).encode() + b"\n" for n in range(count))


BODIES = {f"187520_2024-03-01_{hour}#0.json.gz": events(hour, hour + 1) for hour in (0, 5, 23)}


def stage(layout: DayLayout, bodies: dict[str, bytes]) -> dict[str, bytes]:
    """Members and a manifest as ExtractDay leaves them; returns each member's gzip bytes."""
    layout.members_dir.mkdir(parents=True, exist_ok=True)
    members, stored = [], {}
    for hour, (name, raw) in enumerate(bodies.items()):
        data = stored[name] = gzip.compress(raw, mtime=0)
        (layout.members_dir / name).write_bytes(data)
        members.append(
            MemberRecord(name, hour, raw.count(b"\n"), len(data), crc32_of(data), len(raw), crc32_of(raw))
        )
    Manifest(DAY, members).save(layout.manifest_path)
    return stored


@pytest.fixture
def bucket(mock_s3_client: Any) -> Bucket:
    return Bucket(mock_s3_client, MOCK_BUCKET, threads=2)


def layout_in(tmp_path: Path, keep_gzip: bool = False) -> DayLayout:
    return DayLayout(DAY, tmp_path / "staging", "python_import", keep_gzip)


def objects(bucket: Bucket, prefix: str = "") -> dict[str, bytes]:
    return {key: bucket.read_bytes(key) for key in bucket.listing(prefix)}


def test_each_member_lands_inflated_under_its_key_with_its_event_count(
    bucket: Bucket, tmp_path: Path
) -> None:
    layout = layout_in(tmp_path)
    stage(layout, BODIES)

    record = upload_day(bucket, layout, Limits())

    expected = {PREFIX + name.removesuffix(".gz"): raw for name, raw in BODIES.items()}
    assert objects(bucket) == expected
    listing = bucket.listing(PREFIX)
    assert {obj.key: obj.etag for obj in record.objects} == {key: item.etag for key, item in listing.items()}
    assert [obj.events for obj in record.objects] == [1, 6, 24] and record.events == 31
    assert (record.date, record.format, record.proof) == (DAY, "json", "checksum")
    head = bucket.client.head_object(Bucket=MOCK_BUCKET, Key=PREFIX + "187520_2024-03-01_5#0.json")
    assert head["Metadata"] == {"events": "6"}


def test_with_keep_gzip_the_members_land_as_they_were_extracted(bucket: Bucket, tmp_path: Path) -> None:
    layout = layout_in(tmp_path, keep_gzip=True)
    stored = stage(layout, BODIES)
    record = upload_day(bucket, layout, Limits())
    assert objects(bucket) == {PREFIX + name: data for name, data in stored.items()}
    assert record.format == "json.gz"
    assert [obj.crc32 for obj in record.objects] == [crc32_of(data) for data in stored.values()]


def test_objects_of_an_earlier_export_are_deleted_and_nothing_outside_the_day_is_touched(
    bucket: Bucket, tmp_path: Path
) -> None:
    layout = layout_in(tmp_path)
    stage(layout, BODIES)
    for key in (PREFIX + "187520_2024-03-01_9#0.json", PREFIX + "nested/old.json"):
        bucket.client.put_object(Bucket=MOCK_BUCKET, Key=key, Body=b"{}\n")
    others = {"python_import/2024-03-02/x.json": b"{}\n", "python_import/_verified/2024-02-29.json": b"{}"}
    for key, body in others.items():
        bucket.client.put_object(Bucket=MOCK_BUCKET, Key=key, Body=body)

    record = upload_day(bucket, layout, Limits())

    assert sorted(bucket.listing(PREFIX)) == sorted(obj.key for obj in record.objects)
    assert {key: body for key, body in objects(bucket).items() if not key.startswith(PREFIX)} == others


def test_a_rerun_lands_the_same_objects_and_nothing_more(bucket: Bucket, tmp_path: Path) -> None:
    layout = layout_in(tmp_path)
    stage(layout, BODIES)
    first = upload_day(bucket, layout, Limits())
    again = upload_day(bucket, layout, Limits())
    assert [obj.key for obj in again.objects] == [obj.key for obj in first.objects]
    assert objects(bucket) == {PREFIX + name.removesuffix(".gz"): raw for name, raw in BODIES.items()}


def test_a_member_changed_since_extraction_is_never_committed(bucket: Bucket, tmp_path: Path) -> None:
    layout = layout_in(tmp_path)
    stage(layout, BODIES)
    changed = layout.members_dir / "187520_2024-03-01_5#0.json.gz"
    changed.write_bytes(
        gzip.compress(events(5, 6).replace(b"5-0", b"5-X"), mtime=0)
    )  # same size, other bytes
    with pytest.raises(
        ArchiveError, match=r"187520_2024-03-01_5#0\.json have CRC32 .* the staged member changed"
    ):
        upload_day(bucket, layout, Limits())
    assert PREFIX + "187520_2024-03-01_5#0.json" not in bucket.listing(PREFIX)


def test_a_member_gone_from_staging_is_named_so_the_extraction_is_redone(
    bucket: Bucket, tmp_path: Path
) -> None:
    """A lifecycle rule (or a hand) removed it: ArchiveError, which discards the extraction."""
    layout = layout_in(tmp_path)
    stage(layout, BODIES)
    gone = layout.members_dir / "187520_2024-03-01_5#0.json.gz"
    gone.unlink()
    with pytest.raises(ArchiveError, match=f"the extracted member {gone} vanished from staging"):
        upload_day(bucket, layout, Limits())


def test_multipart_uploads_a_killed_run_left_under_the_day_are_aborted_first(
    bucket: Bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = bucket.client
    left = client.create_multipart_upload(Bucket=MOCK_BUCKET, Key=PREFIX + "187520_2024-03-01_0#0.json")
    other_day = client.create_multipart_upload(Bucket=MOCK_BUCKET, Key="python_import/2024-03-02/x.json")
    layout = layout_in(tmp_path)
    stage(layout, BODIES)

    upload_day(bucket, layout, Limits())

    open_uploads = client.list_multipart_uploads(Bucket=MOCK_BUCKET).get("Uploads", [])
    assert [upload["UploadId"] for upload in open_uploads] == [other_day["UploadId"]]
    assert left["Key"] in caplog.text and "aborted 1 multipart upload(s) left by a killed run" in caplog.text


def test_without_the_permission_to_abort_uploads_the_day_still_lands_with_a_warning(
    bucket: Bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(prefix: str) -> list[str]:
        raise StorageError("access denied: grant s3:ListBucketMultipartUploads")

    monkeypatch.setattr(bucket, "abort_uploads", denied)
    layout = layout_in(tmp_path)
    stage(layout, BODIES)
    caplog.set_level(logging.WARNING)

    record = upload_day(bucket, layout, Limits())

    assert len(record.objects) == len(BODIES)
    assert "could not clean up multipart uploads left by a killed run" in caplog.text
    assert "s3:ListBucketMultipartUploads" in caplog.text


def test_progress_counts_every_object_once(bucket: Bucket, tmp_path: Path) -> None:
    layout = layout_in(tmp_path)
    stage(layout, BODIES)
    seen: list[tuple[int, int]] = []
    upload_day(bucket, layout, Limits(), lambda done, total: seen.append((done, total)))
    assert sorted(seen) == [(1, 3), (2, 3), (3, 3)]


def test_a_day_without_events_uploads_nothing_and_clears_the_prefix(bucket: Bucket, tmp_path: Path) -> None:
    bucket.client.put_object(Bucket=MOCK_BUCKET, Key=PREFIX + "old.json", Body=b"{}\n")
    layout = layout_in(tmp_path)
    stage(layout, {})
    record = upload_day(bucket, layout, Limits())
    assert record.objects == [] and bucket.listing(PREFIX) == {}
