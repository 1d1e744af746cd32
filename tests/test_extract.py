"""ExtractDay's stage: the archives the index names extracted and checked, then the manifest, last;
an archive gone, a damaged index or a failing member leave no manifest behind."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zipfile
from pathlib import Path

import pytest

from amp_luigi.errors import ArchiveError, StaleStateError
from amp_luigi.extract import extract_day
from amp_luigi.hours import HourRange
from amp_luigi.layout import DayLayout
from amp_luigi.members import Limits
from amp_luigi.records import ExportedRange, ExportIndex, Manifest

DAY = dt.date(2024, 3, 1)
FIRST, SECOND = HourRange.day(DAY).halves()


def events(hour: int, count: int) -> bytes:
    return b"".join(
        json.dumps({"$insert_id": f"{hour}-{n}", "hour": hour}).encode() + b"\n" for n in range(count)
    )


def download(layout: DayLayout, hours: HourRange, members: dict[int, bytes]) -> ExportedRange:
    """An archive as ExportDay leaves it: one member per hour, under Amplitude's folder."""
    path = layout.archive_path(hours)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for hour, data in members.items():
            archive.writestr(f"187520/187520_{DAY}_{hour}#0.json.gz", data)
    return ExportedRange(hours.label(), path.name)


@pytest.fixture
def layout(tmp_path: Path) -> DayLayout:
    return DayLayout(DAY, tmp_path / "staging", "python_import", keep_gzip=False)


def test_every_member_of_the_indexed_archives_is_in_the_manifest_with_the_ranges(layout: DayLayout) -> None:
    ranges = [
        download(layout, FIRST, {1: gzip.compress(events(1, 3)), 5: gzip.compress(events(5, 2))}),
        download(layout, SECOND, {17: gzip.compress(events(17, 4))}),
    ]
    ExportIndex(DAY, ranges).save(layout.export_index)
    seen: list[tuple[int, int, int]] = []

    manifest = extract_day(layout, Limits(), lambda *args: seen.append(args))

    assert Manifest.load(layout.manifest_path) == manifest
    assert manifest.ranges == ranges
    assert [(member.hour, member.events) for member in manifest.members] == [(1, 3), (5, 2), (17, 4)]
    assert manifest.events == 9
    assert {path.name for path in layout.members_dir.iterdir()} == {m.name for m in manifest.members}
    assert [members for _, _, members in seen] == [1, 2, 3]


def test_a_range_without_data_needs_no_archive(layout: DayLayout) -> None:
    ranges = [download(layout, FIRST, {3: gzip.compress(events(3, 1))}), ExportedRange(SECOND.label(), None)]
    ExportIndex(DAY, ranges).save(layout.export_index)
    manifest = extract_day(layout, Limits())
    assert manifest.ranges == ranges
    assert [member.hour for member in manifest.members] == [3]


def test_a_day_without_any_data_has_an_empty_manifest(layout: DayLayout) -> None:
    ExportIndex(DAY, [ExportedRange(HourRange.day(DAY).label(), None)]).save(layout.export_index)
    manifest = extract_day(layout, Limits())
    assert manifest.members == [] and manifest.events == 0
    assert Manifest.load(layout.manifest_path) == manifest


def test_a_vanished_archive_is_named_and_no_manifest_is_written(layout: DayLayout) -> None:
    ranges = [download(layout, FIRST, {1: gzip.compress(events(1, 1))}), download(layout, SECOND, {})]
    ExportIndex(DAY, ranges).save(layout.export_index)
    layout.archive_path(SECOND).unlink()
    with pytest.raises(ArchiveError, match=rf"{SECOND.label()}\.zip vanished from {layout.export_dir}"):
        extract_day(layout, Limits())
    assert not layout.manifest_path.exists()


def test_a_damaged_index_is_stale_and_no_manifest_is_written(layout: DayLayout) -> None:
    layout.export_dir.mkdir(parents=True)
    layout.export_index.write_text('{"date": "2024-03-01", "par')
    with pytest.raises(StaleStateError, match=r"the export index .*parts\.json is damaged"):
        extract_day(layout, Limits())
    assert not layout.manifest_path.exists()


def test_a_member_failing_its_checks_leaves_no_manifest(layout: DayLayout) -> None:
    bad = gzip.compress(events(2, 1) + b"not JSON\n")
    ExportIndex(DAY, [download(layout, FIRST, {1: gzip.compress(events(1, 1)), 2: bad})]).save(
        layout.export_index
    )
    with pytest.raises(ArchiveError, match=f"member 187520_{DAY}_2#0.json.gz, line 2 is not JSON"):
        extract_day(layout, Limits())
    assert not layout.manifest_path.exists()
