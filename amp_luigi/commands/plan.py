"""`python -m amp_luigi plan`: before a backfill, what it will ask Amplitude, without asking it.

    python -m amp_luigi plan --start 2024-01-01 [--stop ...] [--project web] [--latency 60]

Per project: the days missing from the range (one listing of `_verified/`), those already
downloaded and waiting in staging (no request), then every request the run would make, planned by
the code the run plans with (amp_luigi.windows, batch by batch, wave by wave): each window's days
and its estimated size, or "unknown: grows from one day" where nothing near it is known yet; the
staging disk the run would hold at its peak; and how long Amplitude's side takes at `--latency`
seconds a request with the project's export cap. No request goes to Amplitude; S3 is read only
for the listing and the markers of the verified days nearest the gaps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TextIO

from amp_luigi import projects
from amp_luigi.export import known_near, staged_known
from amp_luigi.hours import exportable_days
from amp_luigi.layout import VERIFIED_DIR, marker_date, marker_prefix
from amp_luigi.progress import mib
from amp_luigi.settings import amplitude, export_cap
from amp_luigi.windows import BATCH_DAYS, Window, forecast


def peak_staging(waves: Sequence[Sequence[Window]]) -> int | None:
    """The most staging holds at once: a wave's windows while the days of the wave before them are
    still extracted and uploaded (DayBatch hands days over one wave late); None where unknown."""
    sizes = [[window.estimate for window in each] for each in waves]
    if any(size is None for each in sizes for size in each):
        return None
    totals = [sum(size or 0 for size in each) for each in sizes]
    return max((a + b for a, b in zip([0, *totals], totals, strict=False)), default=0)


def describe(window: Window) -> str:
    size = "unknown: grows from one day" if window.estimate is None else f"~{mib(window.estimate)}"
    return f"{window.label()}: {size}"


def main(
    start: dt.date,
    stop: dt.date | None,
    *,
    project: str | None = None,
    latency: float = 60.0,
    out: TextIO,
    now: dt.datetime | None = None,
) -> int:
    """Print the plan of every project covered (`project` alone when given)."""
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    budget, lag = amplitude().budget(), amplitude().availability_lag_hours
    for index, settings in enumerate(projects.each(project)):
        print("\n" * bool(index), end="", file=out)
        bucket = settings.open_bucket()
        days = exportable_days(start, stop, settings.first_date, now, lag)
        listing = bucket.listing(marker_prefix(settings.prefix, VERIFIED_DIR))
        verified = {day for day in map(marker_date, listing) if day is not None}
        staged = set(staged_known(settings.staging, settings.staging_root))
        missing = [day for day in days if day not in verified]
        asked = [day for day in missing if day not in staged]
        known = known_near(bucket, settings.prefix, settings.staging, settings.staging_root, asked, verified)
        cap = export_cap(settings.name)
        waves = forecast(missing, known, budget, cap, BATCH_DAYS, frozenset(staged))
        windows = [window for each in waves for window in each]
        print(f"{settings.where()}  {days[0] if days else start} .. {days[-1] if days else start}", file=out)
        print(
            f"  {len(days)} exportable day(s): {len(days) - len(missing)} verified, {len(missing)} missing"
            f" ({len(missing) - len(asked)} downloaded already, waiting in staging)",
            file=out,
        )
        requests = sum(len(window.requests()) for window in windows)
        bound = " at most" if len(missing) > BATCH_DAYS else ""  # later batches may know more by then
        print(f"  requests to Amplitude:{bound} {requests}, in {len(windows)} window(s):", file=out)
        for number, window in enumerate(windows, start=1):
            print(f"    {number:>4}. {describe(window)}", file=out)
        peak = peak_staging(waves)
        print(
            "  peak staging, estimated: " + ("unknown (sizes unknown)" if peak is None else f"~{mib(peak)}"),
            file=out,
        )
        # A window's hour ranges go one after the other; the windows of a wave at once.
        waits = sum(max(len(window.requests()) for window in each) for each in waves)
        print(
            f"  Amplitude's side: {len(waves)} wave(s) of up to {cap} window(s) at once, {waits} wait(s) "
            f"for a first byte in a row: at {latency:g} s each, ~{waits * latency / 60:.1f} min",
            file=out,
        )
    return 0
