"""Right-sized requests, planned: windows within the budget, growth where nothing is known, heavy days
split up front, waves, and the forecast the plan command prints."""

from __future__ import annotations

import datetime as dt

from amp_luigi.windows import Budget, Known, Window, consecutive, estimate, forecast, in_batches, plan, wave

DAY = dt.date(2024, 3, 1)
MiB = 1024 * 1024
BUDGET = Budget(512 * MiB, 31)


def days(first: int, count: int) -> list[dt.date]:
    return [DAY + dt.timedelta(days=first + n) for n in range(count)]


def known(dates: list[dt.date], size: int | None = MiB, hours: int = 24) -> dict[dt.date, Known]:
    return dict.fromkeys(dates, Known(size, hours))


def test_a_window_never_spans_a_day_that_is_not_missing() -> None:
    missing = [*days(0, 3), *days(4, 2)]
    assert consecutive(missing) == [days(0, 3), days(4, 2)]
    windows = plan(missing, known(days(-10, 10)), BUDGET)
    assert [window.days for window in windows] == [tuple(days(0, 3)), tuple(days(4, 2))]


def test_where_nothing_is_known_the_first_day_goes_alone_and_is_learnt_first() -> None:
    windows = plan(days(0, 20), {}, BUDGET)
    assert windows[0].days == (DAY,) and windows[0].learning and windows[0].estimate is None
    assert wave(windows, 4) == windows[:1]


def test_windows_grow_to_twice_the_days_known_before_them() -> None:
    windows = plan(days(1, 20), known(days(0, 1)), BUDGET)
    assert [len(window.days) for window in windows[:2]] == [2, 2]
    assert not windows[0].learning
    assert len(plan(days(3, 20), known(days(0, 3)), BUDGET)[0].days) == 6


def test_a_window_holds_days_while_their_estimate_fits_the_budget() -> None:
    windows = plan(days(10, 10), known(days(0, 10), size=100 * MiB), BUDGET)
    assert [len(window.days) for window in windows] == [5, 5]
    assert windows[0].estimate == 500 * MiB
    assert all(len(window.days) <= 31 for window in plan(days(40, 200), known(days(0, 40), size=1), BUDGET))


def test_the_estimate_is_the_largest_of_the_nearest_seven_and_the_narrowest_range() -> None:
    near = {**known(days(0, 6), size=MiB), DAY + dt.timedelta(days=6): Known(9 * MiB, 6, split=True)}
    far = {DAY - dt.timedelta(days=100): Known(900 * MiB, 1, split=True)}
    guess = estimate(DAY + dt.timedelta(days=7), {**near, **far})
    assert guess == Known(9 * MiB, 6, split=True)
    assert estimate(DAY, {}) is None


def test_a_day_split_up_front_without_a_refusal_does_not_keep_its_neighbours_split() -> None:
    """Only a refusal says a day needs smaller ranges: once the refused day is no longer among the
    nearest seven, days are asked for whole again (and learn anew if still refused)."""
    refused = {DAY: Known(3000 * MiB, 6, split=True)}
    up_front = known(days(1, 7), size=3000 * MiB, hours=6)
    assert estimate(DAY + dt.timedelta(days=3), {**refused, **up_front}) == Known(3000 * MiB, 6, split=True)
    assert estimate(DAY + dt.timedelta(days=8), {**refused, **up_front}) == Known(3000 * MiB, 24)


def test_a_heavy_neighbour_splits_each_day_up_front_in_its_ranges() -> None:
    windows = plan(days(1, 3), {DAY: Known(3000 * MiB, 6, split=True)}, BUDGET)
    assert [window.days for window in windows] == [(day,) for day in days(1, 3)]
    ranges = windows[0].requests()
    assert [(r.start.hour, r.end.hour) for r in ranges] == [(0, 5), (6, 11), (12, 17), (18, 23)]
    assert "in 6-hour ranges" in windows[0].label()


def test_a_day_over_the_budget_goes_alone_and_whole() -> None:
    windows = plan(days(1, 2), known(days(0, 1), size=600 * MiB), BUDGET)
    assert [(window.days, window.hours_each) for window in windows] == [((day,), 24) for day in days(1, 2)]


def test_a_window_of_days_asks_for_them_in_one_range() -> None:
    window = Window(tuple(days(0, 3)), 24, None)
    [whole] = window.requests()
    assert whole.query() == {"start": "20240301T00", "end": "20240303T23"}
    assert window.label() == "2024-03-01..2024-03-03 (3 days)"


def test_the_forecast_plans_batch_by_batch_and_wave_by_wave_as_the_run_does() -> None:
    waves = forecast(days(0, 12), {}, BUDGET, cap=2, batch_days=50)
    assert [[len(window.days) for window in each] for each in waves] == [[1], [2, 2], [7]]
    assert all(window.estimate is None for each in waves for window in each), "sizes nothing tells"
    batched = forecast(days(0, 12), {}, BUDGET, cap=2, batch_days=6)
    assert [[len(window.days) for window in each] for each in batched] == [[1], [2, 2], [1], [1], [2, 2], [1]]
    assert in_batches(days(0, 5), 2) == [days(0, 2), days(2, 2), days(4, 1)]
