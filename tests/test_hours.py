"""Hour ranges as the Export API sees them, and when a day becomes exportable."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_luigi.hours import HOUR, HourRange, available_after, days_between, last_available_day


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


# Properties: any day, any sequence of halvings, any range (hypothesis).

days = st.dates(min_value=dt.date(2012, 1, 1), max_value=dt.date(2100, 12, 31))


@settings(max_examples=40)
@given(day=days, choices=st.lists(st.integers(0, 10_000), max_size=40))
def test_any_sequence_of_halvings_covers_every_hour_of_the_day_exactly_once(
    day: dt.date, choices: list[int]
) -> None:
    parts = [HourRange.day(day)]
    for choice in choices:
        splittable = [part for part in parts if part.hours > 1]
        if not splittable:
            break
        part = splittable[choice % len(splittable)]
        index = parts.index(part)
        parts[index : index + 1] = list(part.halves())
    covered = [part.start + i * HOUR for part in parts for i in range(part.hours)]
    start = dt.datetime.combine(day, dt.time())
    assert covered == [start + i * HOUR for i in range(24)], "every hour once, in order"
    for earlier, later in itertools.pairwise(parts):
        assert earlier.end < later.start, "inclusive ends never overlap"
        assert later.start - earlier.end == HOUR, "and leave no gap"
    assert sum(part.hours for part in parts) == 24


@settings(max_examples=40)
@given(
    start=st.datetimes(min_value=dt.datetime(2012, 1, 1), max_value=dt.datetime(2100, 1, 1)),
    hours=st.integers(1, 24 * 40),
)
def test_a_range_round_trips_through_its_query_and_halves_exactly(start: dt.datetime, hours: int) -> None:
    start = start.replace(minute=0, second=0, microsecond=0)
    hour_range = HourRange(start, start + (hours - 1) * HOUR)
    query = hour_range.query()
    parsed = HourRange(*(dt.datetime.strptime(query[end], "%Y%m%dT%H") for end in ("start", "end")))
    assert parsed == hour_range
    assert hour_range.label() == f"{query['start']}-{query['end']}"
    if hours > 1:
        first, second = hour_range.halves()
        assert (first.start, second.end) == (hour_range.start, hour_range.end)
        assert first.end + HOUR == second.start
        assert abs(first.hours - second.hours) <= 1


def test_days_between_is_the_half_open_range() -> None:
    assert days_between(dt.date(2024, 2, 28), dt.date(2024, 3, 2)) == [
        dt.date(2024, 2, 28),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 1),
    ]
    assert days_between(dt.date(2024, 3, 1), dt.date(2024, 3, 1)) == []
