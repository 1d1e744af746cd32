"""ExportDay's stage: a day refused before any request when Amplitude cannot export it whole, else
downloaded (halved where Amplitude finds it too large, archives on disk kept) and indexed last."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path

import pytest

from amp_luigi.errors import ArchiveError, FatalError, NotYetAvailableError, TooLargeError
from amp_luigi.export import check_exportable, export_day, locked_days, split_by_day
from amp_luigi.export_client import ByteProgress
from amp_luigi.hours import HourRange
from amp_luigi.layout import DayLayout
from amp_luigi.members import Limits
from amp_luigi.records import ExportedRange, ExportIndex
from amp_luigi.staging_area import LOCAL, StagingArea

DAY = dt.date(2024, 3, 1)
WHOLE = HourRange.day(DAY)
FIRST, SECOND = WHOLE.halves()


class Amplitude:
    """ExportClient.download as the stage sees it: ranges over `max_hours` are too large, ranges
    starting at an hour of `empty` have no data, one of `failing` fails for good."""

    def __init__(self, max_hours: int = 24, empty: frozenset[int] = frozenset(), failing: str = "") -> None:
        self.max_hours, self.empty, self.failing = max_hours, empty, failing
        self.asked: list[str] = []

    def download(
        self, hours: HourRange, dest: Path, on_bytes: ByteProgress | None = None, area: StagingArea = LOCAL
    ) -> bool:
        self.asked.append(hours.label())
        if hours.hours > self.max_hours:
            raise TooLargeError(f"HTTP 400 for {hours.label()}")
        if hours.label() == self.failing:
            raise FatalError(f"Amplitude refused {hours.label()}")
        if hours.start.hour in self.empty:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest, "w") as archive:
            archive.writestr(f"187520/187520_{DAY}_{hours.start.hour}#0.json.gz", b"")
        if on_bytes:
            on_bytes(dest.stat().st_size, dest.stat().st_size)
        return True


@pytest.fixture
def layout(tmp_path: Path) -> DayLayout:
    return DayLayout(DAY, tmp_path / "staging", "python_import", keep_gzip=False)


def test_a_day_is_asked_for_whole_and_its_index_names_the_archive(layout: DayLayout) -> None:
    amplitude = Amplitude()
    index = export_day(amplitude, layout)
    assert amplitude.asked == ["20240301T00-20240301T23"]
    assert index == ExportIndex(DAY, [ExportedRange(WHOLE.label(), f"{WHOLE.label()}.zip")])
    assert ExportIndex.load(layout.export_index) == index
    assert zipfile.is_zipfile(layout.archive_path(WHOLE))


def test_a_day_too_large_is_halved_and_the_halves_indexed_in_order(layout: DayLayout) -> None:
    amplitude = Amplitude(max_hours=12)
    index = export_day(amplitude, layout)
    assert amplitude.asked == [WHOLE.label(), FIRST.label(), SECOND.label()]
    assert [part.hours for part in index.ranges] == [FIRST.label(), SECOND.label()]
    assert all(layout.archive_path(part).exists() for part in (FIRST, SECOND))
    assert not layout.archive_path(WHOLE).exists()


def test_hours_without_data_are_indexed_without_an_archive(layout: DayLayout) -> None:
    index = export_day(Amplitude(max_hours=12, empty=frozenset({12})), layout)
    assert index.ranges == [
        ExportedRange(FIRST.label(), f"{FIRST.label()}.zip"),
        ExportedRange(SECOND.label(), None),
    ]


def test_an_archive_already_on_disk_is_kept_and_not_asked_for_again(layout: DayLayout) -> None:
    kept = layout.archive_path(FIRST)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"downloaded by the run that was killed")
    amplitude = Amplitude(max_hours=12)
    index = export_day(amplitude, layout)
    assert amplitude.asked == [WHOLE.label(), SECOND.label()]
    assert kept.read_bytes() == b"downloaded by the run that was killed"
    assert [part.archive for part in index.ranges] == [f"{FIRST.label()}.zip", f"{SECOND.label()}.zip"]


def test_no_index_is_written_when_a_part_fails_and_the_parts_downloaded_stay(layout: DayLayout) -> None:
    with pytest.raises(FatalError, match="refused 20240301T12-20240301T23"):
        export_day(Amplitude(max_hours=12, failing=SECOND.label()), layout)
    assert not layout.export_index.exists(), "the index exists only once the whole day is on disk"
    assert layout.archive_path(FIRST).exists(), "the rerun reuses it"


def test_bytes_are_reported_with_the_range_they_belong_to(layout: DayLayout) -> None:
    seen: list[tuple[str, int, int | None]] = []
    export_day(
        Amplitude(max_hours=12), layout, lambda hours, got, total: seen.append((hours.label(), got, total))
    )
    sizes = [layout.archive_path(part).stat().st_size for part in (FIRST, SECOND)]
    assert seen == [(FIRST.label(), sizes[0], sizes[0]), (SECOND.label(), sizes[1], sizes[1])]


def test_a_day_before_the_first_date_is_refused_naming_the_setting() -> None:
    with pytest.raises(
        FatalError,
        match=r"2024-03-01 is before the project's first day 2024-03-02 \(\[amplitude\] first_date\)",
    ):
        check_exportable(DAY, dt.date(2024, 3, 2), 2, now=dt.datetime(2024, 6, 1))


@pytest.mark.parametrize(
    ("now", "lag"),
    [
        (dt.datetime(2024, 3, 2, 1, 59), 2),
        (dt.datetime(2024, 3, 1, 23, 0), 0),
        (dt.datetime(2024, 3, 2, 5), 6),
    ],
)
def test_a_day_before_its_end_plus_the_lag_is_not_yet_available(now: dt.datetime, lag: float) -> None:
    ready = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time()) + dt.timedelta(hours=lag)
    with pytest.raises(NotYetAvailableError) as raised:
        check_exportable(DAY, DAY, lag, now=now)
    assert f"from {ready:%Y-%m-%d %H:%M} UTC" in str(raised.value)
    assert f"availability_lag_hours = {lag:g}" in str(raised.value)


def test_a_day_is_exportable_from_its_end_plus_the_lag() -> None:
    check_exportable(DAY, DAY, 2, now=dt.datetime(2024, 3, 2, 2, 0))
    check_exportable(DAY, dt.date(2024, 1, 1), 0.5, now=dt.datetime(2024, 3, 2, 0, 30))


def test_without_a_time_given_now_is_the_current_utc_time() -> None:
    tomorrow = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)
    with pytest.raises(NotYetAvailableError):
        check_exportable(tomorrow, DAY, 0)


def member(day: dt.date, hour: int, part: int = 0) -> str:
    return f"187520/187520_{day}_{hour}#{part}.json.gz"


def window_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return path


def test_a_window_is_split_by_each_members_date_into_each_days_archive(tmp_path: Path) -> None:
    days = [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]
    bodies = {member(DAY, 0): b"a" * 100, member(DAY, 23, 1): b"b", member(days[2], 5): b"c"}
    source = window_zip(tmp_path / "window.zip", bodies)
    destinations = {day: tmp_path / str(day) / "day.zip" for day in days}

    assert split_by_day(source, destinations, Limits()) == {DAY, days[2]}, "the day between has no data"
    assert not source.exists() and not destinations[days[1]].exists()
    with zipfile.ZipFile(destinations[DAY]) as first:
        assert {name: first.read(name) for name in first.namelist()} == {
            member(DAY, 0): b"a" * 100,
            member(DAY, 23, 1): b"b",
        }


def test_a_member_of_no_day_of_the_window_discards_the_whole_answer_naming_it(tmp_path: Path) -> None:
    stray = member(DAY + dt.timedelta(days=9), 1)
    source = window_zip(tmp_path / "window.zip", {member(DAY, 0): b"a", stray: b"b"})
    destinations = {DAY: tmp_path / "day.zip"}
    with pytest.raises(ArchiveError, match=re.escape(stray)):
        split_by_day(source, destinations, Limits())
    assert not source.exists() and list(tmp_path.iterdir()) == [], "nothing of the window is kept"


def test_a_member_inflating_past_the_limit_is_refused_as_a_zip_bomb(tmp_path: Path) -> None:
    source = window_zip(tmp_path / "window.zip", {member(DAY, 0): b"\0" * 1_000_000})
    with pytest.raises(ArchiveError, match="zip bomb"):
        split_by_day(source, {DAY: tmp_path / "day.zip"}, Limits(max_inflate_ratio=10))


def test_a_days_export_lock_is_held_against_an_overlapping_writer(tmp_path: Path) -> None:
    later = DAY + dt.timedelta(days=1)
    with locked_days(tmp_path, [DAY], wait=True) as mine:
        assert mine == [DAY]
        with locked_days(tmp_path, [DAY, later], wait=False) as theirs:
            assert theirs == [later], "a window leaves out the day another writer holds"
    with locked_days(tmp_path, [DAY], wait=False) as again:
        assert again == [DAY], "released with its holder"
