"""Hour ranges as the Export API sees them, and when a day becomes exportable."""

from __future__ import annotations

import datetime as dt

import pytest

from amp_luigi.hours import HOUR, HourRange, available_after, last_available_day


def leaves(hours: HourRange) -> list[HourRange]:
    """Split down to single hours, as the client does when every range is refused."""
    if hours.hours == 1:
        return [hours]
    return [leaf for half in hours.halves() for leaf in leaves(half)]


def test_a_day_is_hours_00_to_23_inclusive() -> None:
    day = HourRange.day(dt.date(2024, 3, 1))
    assert day.start == dt.datetime(2024, 3, 1, 0)
    assert day.end == dt.datetime(2024, 3, 1, 23)
    assert day.hours == 24
    assert day.query() == {"start": "20240301T00", "end": "20240301T23"}


def test_a_single_hour_is_asked_for_with_start_equal_to_end() -> None:
    hour = HourRange(dt.datetime(2024, 3, 1, 5), dt.datetime(2024, 3, 1, 5))
    assert hour.hours == 1
    assert hour.query() == {"start": "20240301T05", "end": "20240301T05"}


@pytest.mark.parametrize("length", [2, 3, 5, 7, 12, 23, 24])
def test_halves_are_ordered_and_cover_every_hour_exactly_once(length: int) -> None:
    start = dt.datetime(2024, 3, 1, 0)
    whole = HourRange(start, start + (length - 1) * HOUR)
    first, second = whole.halves()
    assert first.start == whole.start and second.end == whole.end
    assert second.start == first.end + HOUR
    assert first.hours + second.hours == whole.hours
    assert abs(first.hours - second.hours) <= 1


def test_halving_down_to_single_hours_covers_the_day_once() -> None:
    day = HourRange.day(dt.date(2024, 2, 29))
    single = leaves(day)
    assert [leaf.start for leaf in single] == [day.start + i * HOUR for i in range(24)]
    assert all(leaf.start == leaf.end for leaf in single)


def test_a_single_hour_cannot_be_split_and_a_backwards_range_is_refused() -> None:
    hour = dt.datetime(2024, 3, 1, 5)
    with pytest.raises(ValueError):
        HourRange(hour, hour).halves()
    with pytest.raises(ValueError):
        HourRange(hour, hour - HOUR)


def test_labels_are_distinct_file_names_for_distinct_ranges() -> None:
    labels = [leaf.label() for leaf in leaves(HourRange.day(dt.date(2024, 3, 1)))]
    assert len(set(labels)) == 24
    assert labels[5] == "20240301T05-20240301T05"
    assert all("/" not in label for label in labels)


def test_a_day_is_available_after_its_end_plus_the_lag() -> None:
    assert available_after(dt.date(2024, 3, 1), 2) == dt.datetime(2024, 3, 2, 2)
    assert available_after(dt.date(2024, 3, 1), 0) == dt.datetime(2024, 3, 2, 0)
    assert available_after(dt.date(2024, 12, 31), 0.5) == dt.datetime(2025, 1, 1, 0, 30)


@pytest.mark.parametrize(
    ("now", "lag", "newest"),
    [
        (dt.datetime(2024, 3, 2, 1, 59), 2, dt.date(2024, 2, 29)),  # 1 March not complete yet
        (dt.datetime(2024, 3, 2, 2, 0), 2, dt.date(2024, 3, 1)),  # exactly when it becomes available
        (dt.datetime(2024, 3, 2, 23, 0), 2, dt.date(2024, 3, 1)),
        (dt.datetime(2024, 3, 2, 0, 0), 0, dt.date(2024, 3, 1)),
        (dt.datetime(2024, 3, 3, 1, 0), 26, dt.date(2024, 2, 29)),  # a lag over a day
    ],
)
def test_last_available_day_agrees_with_available_after(
    now: dt.datetime, lag: float, newest: dt.date
) -> None:
    assert last_available_day(now, lag) == newest
    assert available_after(newest, lag) <= now
    assert available_after(newest + dt.timedelta(days=1), lag) > now
