"""The status view: per day, done / empty / missing / failed, as a calendar, from the S3 markers.

    python -m amp_luigi status --start 2024-03-01 --stop 2024-04-01

It reads the same settings as the `luigi` command (luigi.cfg in the working directory, the
environment, `.env`) and asks S3 a bounded number of questions whatever the range (amp_luigi.commands.days).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

from amp_luigi.commands.days import (
    DONE,
    EMPTY,
    FAILED,
    ICEBERG,
    MISSING,
    NOT_YET,
    PARQUET,
    DayStatus,
    Layer,
    collect,
)
from amp_luigi.hours import last_available_day

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CELL = 17


def _cell(day: DayStatus) -> str:
    """`DD events/objects` for a verified day with data, `DD state` for any other."""
    if day.state == DONE:
        text = f"{day.date.day:02d} {_short(day.events)}/{day.objects}"
        text += "".join(f" {layer.mark}" for layer in (PARQUET, ICEBERG) if day.layers.get(layer.name))
    else:
        text = f"{day.date.day:02d} {day.state}"
    return text[: CELL - 1].ljust(CELL)


def shown_layers(parquet: bool, iceberg: bool) -> tuple[Layer, ...]:
    """The query layers the settings enable, which the calendar shows."""
    return tuple(layer for layer, enabled in ((PARQUET, parquet), (ICEBERG, iceberg)) if enabled)


def _short(count: int) -> str:
    for size, unit in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if count >= size:
            return f"{count / size:.3g}{unit}"
    return str(count)


def render(days: list[DayStatus], where: str, out: TextIO, fill: str = "ExportRange") -> None:
    """A calendar: one row per week (Monday first), one cell per day: `DD events/objects` or a state.

    `fill` is the command that fills the gaps (`ExportRange --project web` for a named project)."""
    if not days:
        print(f"{where}: no days in the range", file=out)
        return
    first, last = days[0].date, days[-1].date
    print(f"{where}  {first} .. {last} ({len(days)} days; done cells show events/objects)", file=out)
    print(" " * 12 + "".join(name.ljust(CELL) for name in WEEKDAYS).rstrip(), file=out)
    by_date = {day.date: day for day in days}
    monday = first - dt.timedelta(days=first.weekday())
    while monday <= last:
        cells = [
            _cell(by_date[date]) if date in by_date else " " * CELL
            for date in (monday + dt.timedelta(days=n) for n in range(7))
        ]
        print(f"{monday:%Y-%m-%d}  " + "".join(cells).rstrip(), file=out)
        monday += dt.timedelta(days=7)
    counts = Counter(day.state for day in days)
    states = ", ".join(f"{counts[state]} {state}" for state in (DONE, EMPTY, MISSING, FAILED, NOT_YET))
    events = sum(day.events for day in days)
    objects = sum(day.objects for day in days)
    print(f"\n{states}; {events:,} events in {objects:,} objects", file=out)
    verified = [day for day in days if day.state in (DONE, EMPTY)]
    for layer in (PARQUET, ICEBERG):
        if not any(layer.name in day.layers for day in days):
            continue
        outside = [day.date for day in verified if not day.layers.get(layer.name)]
        print(f"  {layer.name}: {len(verified) - len(outside)} of {len(verified)} verified days", file=out)
        if outside:
            print(
                f"  not in {layer.name} yet: {_ranges(outside)}; `{fill} --of {layer.task}` adds them",
                file=out,
            )
    for day in days:
        if day.state == FAILED:
            print(f"  {day.date} failed (or is running now): {day.reason}", file=out)
    missing = [day.date for day in days if day.state == MISSING]
    if missing:
        print(f"  missing: {_ranges(missing)}; `{fill} --start {missing[0]}` fills them", file=out)


def _ranges(dates: list[dt.date]) -> str:
    spans: list[tuple[dt.date, dt.date]] = []
    for date in dates:
        if spans and date - spans[-1][1] == dt.timedelta(days=1):
            spans[-1] = (spans[-1][0], date)
        else:
            spans.append((date, date))
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in spans)


def main(
    start: dt.date,
    stop: dt.date | None = None,
    *,
    project: str | None = None,
    check: bool = False,
    metrics_file: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print one calendar per project (`project` alone when given); with `check`, exit 1 when a day
    in the range is missing or failed.

    With `metrics_file`, also write the Prometheus metrics there (atomically), one target per
    project; `-` prints them instead of the calendars.
    """
    from amp_luigi import projects
    from amp_luigi.settings import amplitude, iceberg, parquet

    now_utc = dt.datetime.now(dt.timezone.utc)
    now = now_utc.replace(tzinfo=None)
    stop = stop or now.date()
    if stop <= start:
        print(f"--stop {stop} must be after --start {start}", file=sys.stderr)
        return 2
    chosen = projects.each(project)
    newest = last_available_day(now, amplitude().availability_lag_hours)
    calendars = []
    for settings in chosen:
        bucket = settings.open_bucket()
        layers = shown_layers(parquet().enabled, iceberg().enabled)
        days = collect(
            bucket, settings.prefix, settings.staging_root, start, stop, newest, layers, settings.staging
        )
        named = {"project": settings.name} if settings.name else {}
        labels = {"bucket": bucket.name, "prefix": settings.prefix, **named}
        calendars.append((settings, labels, days))
    if metrics_file is not None:
        from amp_luigi.commands import metrics

        targets = [metrics.Target(labels, days) for _, labels, days in calendars]
        if metrics_file == "-":
            out.write(metrics.render(targets, now_utc))
        else:
            try:
                metrics.write(Path(metrics_file), targets, now_utc)
            except OSError as error:  # the textfile directory missing or not writable: say so
                print(f"--metrics-file {metrics_file}: {error.strerror or error}", file=sys.stderr)
                return 2
    if metrics_file != "-":
        for index, (settings, _, days) in enumerate(calendars):
            fill = f"ExportRange --project {settings.name}" if settings.name else "ExportRange"
            print("\n" * bool(index), end="", file=out)
            render(days, settings.where(), out, fill)
    every = [day for _, _, days in calendars for day in days]
    return 1 if check and any(day.state in (MISSING, FAILED) for day in every) else 0
