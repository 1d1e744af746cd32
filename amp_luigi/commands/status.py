"""The status view: per day, done / empty / missing / failed, as a calendar, from the S3 markers.

    python -m amp_luigi status --start 2024-03-01 --stop 2024-04-01

It reads the same settings as the `luigi` command (luigi.cfg in the working directory, the
environment, `.env`) and asks S3 a bounded number of questions whatever the range (amp_luigi.commands.days).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from dataclasses import dataclass
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
    short_count,
)
from amp_luigi.errors import ConfigError
from amp_luigi.hours import last_available_day
from amp_luigi.projects import Project
from amp_luigi.volume import VolumeRule

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CELL = 17


def _cell(day: DayStatus) -> str:
    """`DD events/objects` for a verified day with data, `DD state` for any other; `DD!` when the
    day is a volume anomaly."""
    mark = "!" if day.anomalous else " "
    if day.state == DONE:
        text = f"{day.date.day:02d}{mark}{short_count(day.events)}/{day.objects}"
        text += "".join(f" {layer.mark}" for layer in (PARQUET, ICEBERG) if day.layers.get(layer.name))
    else:
        text = f"{day.date.day:02d}{mark}{day.state}"
    return text[: CELL - 1].ljust(CELL)


def shown_layers(parquet: bool, iceberg: bool) -> tuple[Layer, ...]:
    """The query layers the settings enable, which the calendar shows."""
    return tuple(layer for layer, enabled in ((PARQUET, parquet), (ICEBERG, iceberg)) if enabled)


def render(
    days: list[DayStatus], where: str, out: TextIO, fill: str = "ExportRange", rule: VolumeRule | None = None
) -> None:
    """A calendar: one row per week (Monday first), one cell per day: `DD events/objects` or a state.

    `fill` is the command that fills the gaps (`ExportRange --project web` for a named project)."""
    if not days:
        print(f"{where}: no days in the range", file=out)
        return
    first, last = days[0].date, days[-1].date
    shown = "done cells show events/objects, ! a volume anomaly" if rule else "done cells show events/objects"
    print(f"{where}  {first} .. {last} ({len(days)} days; {shown})", file=out)
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
    for day in days:
        if rule and day.volume and day.volume.anomalous:
            print(f"  {day.date} volume anomaly: {day.volume.explain(rule)}", file=out)


def _ranges(dates: list[dt.date]) -> str:
    spans: list[tuple[dt.date, dt.date]] = []
    for date in dates:
        if spans and date - spans[-1][1] == dt.timedelta(days=1):
            spans[-1] = (spans[-1][0], date)
        else:
            spans.append((date, date))
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in spans)


@dataclass(frozen=True)
class Survey:
    """One project's days as `status`, its metrics and the report read them."""

    settings: Project
    labels: dict[str, str]  # the project's labels in the metrics
    layers: tuple[Layer, ...]
    days: list[DayStatus]


def range_stop(start: dt.date, stop: dt.date | None, today: dt.date) -> dt.date:
    """--stop, today when not given; ConfigError when the range would hold no day."""
    stop = stop or today
    if stop <= start:
        raise ConfigError(f"--stop {stop} must be after --start {start}")
    return stop


def survey(
    start: dt.date, stop: dt.date, project: str | None, now: dt.datetime
) -> tuple[list[Survey], VolumeRule]:
    """Every project's days of [start, stop) (`project` alone when given), judged by the volume rule;
    `now` is naive UTC."""
    from amp_luigi import projects
    from amp_luigi.settings import amplitude, iceberg, parquet, volume

    chosen = projects.each(project)
    newest = last_available_day(now, amplitude().availability_lag_hours)
    rule = volume().rule()
    layers = shown_layers(parquet().enabled, iceberg().enabled)
    found = []
    for settings in chosen:
        bucket = settings.open_bucket()
        days = collect(
            bucket,
            settings.prefix,
            settings.staging_root,
            start,
            stop,
            newest,
            layers,
            settings.staging,
            rule,
        )
        named = {"project": settings.name} if settings.name else {}
        found.append(
            Survey(settings, {"bucket": bucket.name, "prefix": settings.prefix, **named}, layers, days)
        )
    return found, rule


def main(
    start: dt.date,
    stop: dt.date | None = None,
    *,
    project: str | None = None,
    check: bool = False,
    fail_on_anomaly: bool = False,
    metrics_file: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print one calendar per project (`project` alone when given); with `check`, exit 1 when a day
    in the range is missing or failed, with `fail_on_anomaly` when one is a volume anomaly.

    With `metrics_file`, also write the Prometheus metrics there (atomically), one target per
    project; `-` prints them instead of the calendars.
    """
    now_utc = dt.datetime.now(dt.timezone.utc)
    calendars, rule = survey(
        start, range_stop(start, stop, now_utc.date()), project, now_utc.replace(tzinfo=None)
    )
    if metrics_file is not None:
        from amp_luigi.commands import metrics

        targets = [metrics.Target(each.labels, each.days) for each in calendars]
        if metrics_file == "-":
            out.write(metrics.render(targets, now_utc))
        else:
            try:
                metrics.write(Path(metrics_file), targets, now_utc)
            except OSError as error:  # the textfile directory missing or not writable: say so
                print(f"--metrics-file {metrics_file}: {error.strerror or error}", file=sys.stderr)
                return 2
    if metrics_file != "-":
        for index, each in enumerate(calendars):
            name = each.settings.name
            fill = f"ExportRange --project {name}" if name else "ExportRange"
            print("\n" * bool(index), end="", file=out)
            render(each.days, each.settings.where(), out, fill, rule)
    every = [day for each in calendars for day in each.days]
    gaps = check and any(day.state in (MISSING, FAILED) for day in every)
    anomalies = fail_on_anomaly and any(day.anomalous for day in every)
    return 1 if gaps or anomalies else 0
