"""The volume rule: a day against the median of its weekday over the weeks before, or no verdict."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from amp_luigi import settings
from amp_luigi.volume import Verdict, VolumeRule, judge
from tests.conftest import Configure

RULE = VolumeRule()
MONDAY = dt.date(2024, 3, 4)


def weeks_of(per_weekday: list[int], weeks: int, start: dt.date = MONDAY) -> dict[dt.date, int]:
    """`weeks` weeks from `start` (a Monday), each day the count of its weekday."""
    return {start + dt.timedelta(days=n): per_weekday[n % 7] for n in range(7 * weeks)}


def flagged(counts: dict[dt.date, int], rule: VolumeRule = RULE) -> list[dt.date]:
    return sorted(day for day, verdict in judge(counts, counts, rule).items() if verdict.anomalous)


def test_a_weekly_rhythm_is_not_an_anomaly() -> None:
    """Weekends at a fifth of weekdays: each day is judged against its own weekday."""
    counts = weeks_of([10_000, 10_500, 9_800, 10_200, 9_000, 2_000, 1_800], weeks=8)
    assert flagged(counts) == []
    verdict = judge(counts, [MONDAY + dt.timedelta(days=7 * 5 + 5)], RULE)  # a Saturday, week 6
    [saturday] = verdict.values()
    assert saturday.level == 2_000 and saturday.history == 4 and saturday.ratio == 1.0


def test_too_little_history_gives_no_verdict_not_an_alarm() -> None:
    counts = weeks_of([10_000] * 7, weeks=3)  # two weeks before the third at most
    counts[MONDAY + dt.timedelta(days=14)] = 1  # a collapse in week 3: 2 weeks of history only
    verdicts = judge(counts, counts, RULE)
    assert flagged(counts) == []
    day = verdicts[MONDAY + dt.timedelta(days=14)]
    assert day == Verdict(1, None, 2)
    assert day.explain(RULE) == "no verdict: 2 of the 4 weeks before verified, 3 needed"
    # The weeks that are not verified do not count: with three of four, there is a verdict.
    counts.update({MONDAY - dt.timedelta(days=7): 10_000})
    assert flagged(counts) == [MONDAY + dt.timedelta(days=14)]


def test_an_empty_day_with_a_usual_level_is_an_anomaly() -> None:
    counts = weeks_of([5_000] * 7, weeks=6)
    empty = MONDAY + dt.timedelta(days=7 * 5 + 2)
    counts[empty] = 0
    assert flagged(counts) == [empty]
    assert (
        judge(counts, [empty], RULE)[empty].explain(RULE).startswith("0 events, 0.00x the usual 5,000 (below")
    )


def test_a_holiday_like_single_drop_is_flagged_once_and_does_not_move_the_level() -> None:
    """The median: the week after a holiday is judged against the usual level, not against the dip."""
    counts = weeks_of([8_000] * 7, weeks=10)
    holiday = MONDAY + dt.timedelta(days=7 * 5 + 3)
    counts[holiday] = 1_500
    assert flagged(counts) == [holiday]
    after = holiday + dt.timedelta(days=7)
    assert judge(counts, [after], RULE)[after].level == 8_000


def test_double_is_the_upper_edge_and_a_zero_level_gives_no_verdict() -> None:
    counts = weeks_of([1_000] * 7, weeks=5)
    last = MONDAY + dt.timedelta(days=7 * 4)
    counts[last] = 2_000  # exactly double: inside the band
    assert flagged(counts) == []
    counts[last] = 2_001
    assert flagged(counts) == [last]
    quiet = weeks_of([0] * 7, weeks=5)
    quiet[last] = 50
    assert flagged(quiet) == [] and judge(quiet, [last], RULE)[last].explain(RULE).startswith("no verdict")


def test_the_band_and_the_history_are_settable() -> None:
    counts = weeks_of([1_000] * 7, weeks=3)
    day = MONDAY + dt.timedelta(days=14)
    counts[day] = 700
    assert flagged(counts, VolumeRule(weeks=2, min_history=2, low=0.8, high=1.2)) == [day]
    assert flagged(counts, VolumeRule(weeks=2, min_history=2)) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("low = 1.5", r"\[volume\] low = 1.5 must be between 0 and 1"),
        ("high = 0.8", r"\[volume\] high = 0.8 must be at least 1"),
        ("weeks = 2\nmin_history = 3", r"\[volume\] min_history = 3 must be between 1 and 2"),
    ],
)
def test_a_rule_that_cannot_judge_is_named_with_the_other_settings(
    configure: Configure, options: str, message: str
) -> None:
    configure(f"[volume]\n{options}\n")
    assert any(re.search(message, problem) for problem in settings.problems()), settings.problems()


def test_the_settings_make_the_rule(configure: Configure) -> None:
    configure("[volume]\nweeks = 6\nmin_history = 4\nlow = 0.25\nhigh = 3\n")
    assert settings.volume().rule() == VolumeRule(6, 4, 0.25, 3.0)
