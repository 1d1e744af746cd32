"""Freshness and completeness of the export as Prometheus gauges, for node_exporter's textfile
collector.

    python -m amp_luigi status --start 2024-01-01 --metrics-file /var/lib/node_exporter/textfile/amp_luigi.prom

The numbers are the status view's (`days.collect`: one listing of each marker directory and one GET
per verified day), so a probe costs the same few requests whatever the range. Every series carries
the labels of the export it describes (`bucket`, `prefix`); when several Amplitude projects are
exported, each is one more `Target` with its own labels and the rules below work per project.

Freshness is measured from the end of the newest verified day (00:00 UTC of the day after): the
cron run at 02:30 UTC verifies yesterday, so a healthy export is 2.5 h to 26.5 h old, and an age over
36 h means a morning's run did not land its day.

prometheus_client renders the text format (escaping the label values) and writes the file: its
`write_to_textfile` writes `<path>.<pid>.<thread id>` beside it, a name node_exporter skips (it reads
`*.prom` only), and renames that over the file, so node_exporter never reads half of it. A file no
longer rewritten shows in node_exporter's own `node_textfile_mtime_seconds`, and in
`amp_luigi_status_timestamp_seconds` here.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import generate_latest, write_to_textfile
from prometheus_client.core import GaugeMetricFamily

from amp_luigi.commands.days import DONE, EMPTY, FAILED, MISSING, NOT_YET, DayStatus

NEWEST_DAYS = 7
STATES = {DONE: "done", EMPTY: "empty", MISSING: "missing", FAILED: "failed", NOT_YET: "not_yet"}
DAY_SECONDS = 86400


@dataclass(frozen=True)
class Target:
    """One project's export (its bucket, prefix and project labels) and the status of each day of its range."""

    labels: dict[str, str]
    days: list[DayStatus] = field(default_factory=list)


def _midnight(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


class StatusCollector:
    """The gauges of `targets` as of `now` (an aware datetime), for prometheus_client to render.

    The families are built anew by each `collect()` from the days' states, not kept in `Gauge`s: a
    Gauge is state of the process (a file of its own under PROMETHEUS_MULTIPROC_DIR), these are one
    status run's facts. A sample's labels are its target's plus the family's own (`state`, `date`).

    A target with no verified day in its range has no `newest_verified_day_*` and no
    `last_verified_timestamp_seconds` sample: alert on their absence rather than on a made-up age.
    """

    def __init__(self, targets: Sequence[Target], now: dt.datetime, newest_days: int = NEWEST_DAYS) -> None:
        self.targets, self.now, self.newest_days = targets, now, newest_days

    def collect(self) -> Iterator[GaugeMetricFamily]:
        newest_days, now = self.newest_days, self.now
        families = {
            name: GaugeMetricFamily(f"amp_luigi_{name}", text)
            for name, text in (
                ("newest_verified_day_timestamp_seconds", "Start (00:00 UTC) of the newest verified day."),
                (
                    "newest_verified_day_age_seconds",
                    "Seconds from the end (next 00:00 UTC) of the newest verified day to this status run.",
                ),
                ("newest_verified_day_events", "Events of the newest verified day."),
                ("newest_verified_day_objects", "Data objects of the newest verified day."),
                ("days", "Days of the checked range by state (failed: left half done, or running now)."),
                ("day_events", f"Events of each of the {newest_days} newest verified days, by date."),
                ("day_objects", f"Data objects of each of the {newest_days} newest verified days, by date."),
                (
                    "last_verified_timestamp_seconds",
                    "When the newest _verified marker of the range was written (its verified_at).",
                ),
                (
                    "volume_anomalies",
                    f"Volume anomalies among the {newest_days} newest verified days: events far from their usual level ([volume]).",
                ),
                (
                    "day_volume_anomaly_ratio",
                    f"Each volume anomaly among the {newest_days} newest verified days, by date: its events over the usual level of its weekday.",
                ),
                ("range_start_timestamp_seconds", "Start (00:00 UTC) of the first day of the checked range."),
                ("status_timestamp_seconds", "When this status run read the markers."),
            )
        }

        def add(name: str, labels: dict[str, str], value: float) -> None:
            families[name].add_sample(families[name].name, labels, value)

        for target in self.targets:
            labels = target.labels
            verified = [day for day in target.days if day.state in (DONE, EMPTY)]
            if verified:
                newest = verified[-1]
                ended = _midnight(newest.date) + DAY_SECONDS
                add("newest_verified_day_timestamp_seconds", labels, _midnight(newest.date))
                add("newest_verified_day_age_seconds", labels, max(0.0, now.timestamp() - ended))
                add("newest_verified_day_events", labels, newest.events)
                add("newest_verified_day_objects", labels, newest.objects)
            for state, value in STATES.items():
                add("days", {**labels, "state": value}, sum(day.state == state for day in target.days))
            for day in verified[-newest_days:] if newest_days > 0 else []:
                add("day_events", {**labels, "date": day.date.isoformat()}, day.events)
                add("day_objects", {**labels, "date": day.date.isoformat()}, day.objects)
            # The newest days only, as day_events: an alert on the count must clear once the week has passed.
            anomalous = [day for day in (verified[-newest_days:] if newest_days > 0 else []) if day.anomalous]
            add("volume_anomalies", labels, len(anomalous))
            for day in anomalous:
                assert day.volume is not None and day.volume.ratio is not None  # anomalous: a level
                add("day_volume_anomaly_ratio", {**labels, "date": day.date.isoformat()}, day.volume.ratio)
            stamps = [day.verified_at.timestamp() for day in verified if day.verified_at is not None]
            if stamps:
                add("last_verified_timestamp_seconds", labels, max(stamps))
            if target.days:
                add("range_start_timestamp_seconds", labels, _midnight(target.days[0].date))
            add("status_timestamp_seconds", labels, now.timestamp())
        yield from families.values()


def render(targets: Sequence[Target], now: dt.datetime, newest_days: int = NEWEST_DAYS) -> str:
    """The metrics of `targets` as of `now` in Prometheus' text format, every family with HELP and TYPE."""
    return generate_latest(StatusCollector(targets, now, newest_days)).decode("utf-8")


def write(path: Path, targets: Sequence[Target], now: dt.datetime) -> None:
    """Replace `path` with the metrics of `targets` as of `now`, by prometheus_client's write_to_textfile.

    The umask is 022 for the call: write_to_textfile creates the file with open(), so its mode is 0666
    less the umask of the process, and node_exporter runs as another user and must read it whatever
    umask cron or systemd gave this run (077 would leave it 0600). The status command writes it from
    its only thread, so no other file is created meanwhile.
    """
    umask = os.umask(0o022)
    try:
        write_to_textfile(str(path), StatusCollector(targets, now))
    finally:
        os.umask(umask)
