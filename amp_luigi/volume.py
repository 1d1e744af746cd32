"""Volume anomalies: a verified day whose event count departs from its usual level.

A day that landed can still be wrong: a release that broke the SDK, a tracking plan change, a day
Amplitude exported half of. Event volume against its usual level is the first check every data
observability tool makes, and the one rule here serves `status` (a marked cell), `status --check
--fail-on-anomaly`, the metrics file and the HTML report alike.

The usual level of day D is the median event count of the same weekday over the previous `weeks`
weeks (D-7, D-14, ...), among those days that are verified: the same weekday because traffic has a
weekly rhythm (weekends are often a third of weekdays, and comparing a Sunday with a Friday would
flag every weekend); the median because one holiday or outage among them must not move the level
(a mean would, and would then flag the normal day after it). D is anomalous below `low` times that
level or above `high` times it: by default half and double, wide enough that ordinary growth,
campaigns and a quiet national holiday in one market pass, narrow enough that losing half of the
day's events (an SDK release that stops sending, a day exported in part) or a duplicate send shows.
With fewer than `min_history` of those weeks verified, or a level of zero events, there is no
verdict: too little history is not an alarm.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

WEEK = dt.timedelta(days=7)


@dataclass(frozen=True)
class VolumeRule:
    """[volume] weeks, min_history, low, high (amp_luigi.settings)."""

    weeks: int = 4
    min_history: int = 3
    low: float = 0.5
    high: float = 2.0

    def history(self, day: dt.date) -> list[dt.date]:
        """The days whose counts make `day`'s usual level: its weekday, the `weeks` weeks before."""
        return [day - WEEK * n for n in range(1, self.weeks + 1)]

    @property
    def reach(self) -> dt.timedelta:
        """How far back the history of the first judged day goes."""
        return WEEK * self.weeks

    def describe(self) -> str:
        return (
            f"below {self.low:g}x or above {self.high:g}x the median of the same weekday over the previous "
            f"{self.weeks} weeks (at least {self.min_history} of them verified)"
        )


@dataclass(frozen=True)
class Verdict:
    """What the rule says of one verified day: its usual level (None: no verdict) and whether it departs."""

    events: int
    level: float | None
    history: int  # how many of the weeks before were verified
    anomalous: bool = False

    @property
    def ratio(self) -> float | None:
        return None if not self.level else self.events / self.level

    def explain(self, rule: VolumeRule) -> str:
        if self.level is None:
            return f"no verdict: {self.history} of the {rule.weeks} weeks before verified, {rule.min_history} needed"
        if self.level == 0:
            return "no verdict: the same weekday had no events in the weeks before"
        ratio = self.events / self.level
        direction = "below" if ratio < 1 else "above"
        return (
            f"{self.events:,} events, {ratio:.2f}x the usual {self.level:,.0f} ({direction} the "
            f"{rule.low:g}x-{rule.high:g}x band; median of the same weekday over {self.history} week(s))"
        )


def judge(counts: Mapping[dt.date, int], days: Iterable[dt.date], rule: VolumeRule) -> dict[dt.date, Verdict]:
    """The verdict on each of `days` that is verified, from `counts` (events of every verified day,
    those of the weeks before included)."""
    verdicts = {}
    for day in days:
        if day not in counts:
            continue
        before = [counts[other] for other in rule.history(day) if other in counts]
        if len(before) < rule.min_history:
            verdicts[day] = Verdict(counts[day], None, len(before))
            continue
        level = float(statistics.median(before))
        events = counts[day]
        departs = level > 0 and not rule.low * level <= events <= rule.high * level
        verdicts[day] = Verdict(events, level, len(before), departs)
    return verdicts
