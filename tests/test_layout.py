"""Every key and path of a day, as the module docstring draws them: the layout users and Athena rely on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from amp_luigi.hours import HourRange
from amp_luigi.layout import (
    DayLayout,
    ParquetLayout,
    date_named,
    join_key,
    marker_date,
    marker_prefix,
    member_hour,
    parquet_location_template,
    parquet_prefix,
    probe_key,
    project_prefix,
    project_staging,
    raw_location_template,
)

DAY = dt.date(2024, 3, 1)
MEMBER = "187520_2024-03-01_5#0.json.gz"


def day(prefix: str = "python_import", keep_gzip: bool = False, root: Path = Path("/srv/amp")) -> DayLayout:
    return DayLayout(DAY, root, prefix, keep_gzip)


def test_staging_holds_the_day_under_its_date() -> None:
    layout = day()
    assert layout.day_dir == Path("/srv/amp/2024-03-01")
    assert layout.export_index == Path("/srv/amp/2024-03-01/export/parts.json")
    assert layout.archive_path(HourRange.day(DAY)) == Path(
        "/srv/amp/2024-03-01/export/20240301T00-20240301T23.zip"
    )
    assert layout.members_dir == Path("/srv/amp/2024-03-01/members")
    assert layout.manifest_path == Path("/srv/amp/2024-03-01/manifest.json")


def test_each_hour_range_has_its_own_archive() -> None:
    first, second = HourRange.day(DAY).halves()
    layout = day()
    assert layout.archive_path(first) != layout.archive_path(second)
    assert {layout.archive_path(first).parent, layout.archive_path(second).parent} == {layout.export_dir}


def test_a_member_becomes_one_json_object_or_keeps_its_gzip_name() -> None:
    assert day().object_key(MEMBER) == "python_import/2024-03-01/187520_2024-03-01_5#0.json"
    assert day().object_format == "json"
    assert day(keep_gzip=True).object_key(MEMBER) == "python_import/2024-03-01/187520_2024-03-01_5#0.json.gz"
    assert day(keep_gzip=True).object_format == "json.gz"


def test_markers_carry_the_date_in_their_name_outside_the_days_data() -> None:
    layout = day()
    assert layout.uploaded_key == "python_import/_uploaded/2024-03-01.json"
    assert layout.verified_key == "python_import/_verified/2024-03-01.json"
    # Luigi's range tools list a marker's parent directory: one directory per kind, dates in names.
    assert layout.verified_key.rsplit("/", 1)[0] + "/" == marker_prefix("python_import", "_verified")
    for key in (layout.uploaded_key, layout.verified_key):
        assert not key.startswith(layout.data_prefix), "a listing of the day's data never sees a marker"
        assert marker_date(key) == DAY


@pytest.mark.parametrize("prefix", ["python_import", "/python_import/", "python_import/"])
def test_slashes_around_a_prefix_never_make_an_empty_segment(prefix: str) -> None:
    layout = day(prefix)
    assert layout.data_prefix == "python_import/2024-03-01/"
    assert layout.verified_key == "python_import/_verified/2024-03-01.json"


def test_a_layout_at_the_bucket_root_has_no_leading_slash() -> None:
    layout = day("")
    assert layout.data_prefix == "2024-03-01/"
    assert layout.object_key(MEMBER) == "2024-03-01/187520_2024-03-01_5#0.json"
    assert layout.uploaded_key == "_uploaded/2024-03-01.json"
    assert probe_key("") == "_check/probe"


def test_join_key_skips_empty_parts_and_strips_slashes() -> None:
    assert join_key("a/", "/b/", "", "c") == "a/b/c"
    assert join_key("", "x") == "x"
    assert marker_prefix("p", "_verified") == "p/_verified/"


def test_the_probe_lives_apart_from_data_and_markers() -> None:
    assert probe_key("python_import") == "python_import/_check/probe"
    assert marker_date(probe_key("python_import")) is None


@pytest.mark.parametrize(
    "key",
    [
        "python_import/2024-03-01/187520_2024-03-01_5#0.json",
        "python_import/_verified/2024-03-01.json.partial",
        "python_import/_verified/notes.json",
        "python_import/_verified/2024-02-30.json",
        "python_import/_verified/",
    ],
)
def test_only_a_marker_name_has_a_marker_date(key: str) -> None:
    assert marker_date(key) is None


def test_a_day_is_named_by_its_iso_date_and_nothing_else_is_a_day() -> None:
    assert date_named("2024-02-29") == dt.date(2024, 2, 29)
    for name in ("2023-02-29", "not-a-day", "export", ""):
        assert date_named(name) is None


@pytest.mark.parametrize(
    ("name", "hour"),
    [
        ("187520/187520_2024-03-01_5#0.json.gz", 5),
        ("187520_2024-03-01_23#12.json.gz", 23),
        ("python_import/2024-03-01/187520_2024-03-01_0#1.json", 0),  # the object of a member
        ("python_import/2024-03-01/187520_2024-03-01_7#0.json.gz", 7),  # kept as gzip
        ("187520_2024-03-01_5.json.gz", None),
        ("187520_2024-03-01_5#0.json.zst", None),
        ("notes.json", None),
    ],
)
def test_the_hour_of_a_member_or_its_object_is_read_from_the_name(name: str, hour: int | None) -> None:
    assert member_hour(name) == hour


@pytest.mark.parametrize("keep_gzip", [False, True])
def test_an_object_key_keeps_the_hour_of_its_member(keep_gzip: bool) -> None:
    assert member_hour(day(keep_gzip=keep_gzip).object_key(MEMBER)) == 5


def test_a_named_project_lives_in_its_own_folder_and_staging() -> None:
    assert project_prefix("python_import", "web") == "python_import/web"
    assert project_prefix("", "web") == "web"
    assert project_staging(Path("/srv/amp"), "web") == Path("/srv/amp/web")


def test_the_parquet_prefix_sits_beside_the_raw_prefix_never_inside_it() -> None:
    raw = "python_import/web"
    pq = parquet_prefix(raw)
    assert pq == "python_import/web_parquet"
    assert not pq.startswith(raw + "/"), "a table over the raw prefix would read the Parquet files"


def test_a_parquet_day_is_a_dt_partition_of_hour_files_and_its_marker_is_with_the_others() -> None:
    layout = ParquetLayout(DAY, "python_import", "python_import_parquet")
    assert layout.partition_prefix == "python_import_parquet/dt=2024-03-01/"
    assert layout.hour_key(5) == "python_import_parquet/dt=2024-03-01/2024-03-01T05.parquet"
    assert layout.hour_key(23) == "python_import_parquet/dt=2024-03-01/2024-03-01T23.parquet"
    assert layout.marker_key == "python_import/_parquet/2024-03-01.json"
    assert not layout.marker_key.startswith("python_import_parquet/"), "outside what the table reads"
    assert marker_date(layout.marker_key) == DAY


@pytest.mark.parametrize("prefix", ["python_import", "team/amp/", ""])
def test_the_athena_templates_name_the_days_prefixes(prefix: str) -> None:
    """With `${dt}` as Athena fills it in, each template is where the layout puts the day."""
    pq = parquet_prefix(prefix) if prefix else "parquet"
    parquet = ParquetLayout(DAY, prefix, pq)
    assert parquet_location_template(pq).replace("${dt}", DAY.isoformat()) == parquet.partition_prefix
    assert raw_location_template(prefix).replace("${dt}", DAY.isoformat()) == day(prefix).data_prefix
