"""Freshness and completeness of the export in Prometheus' text format, for node_exporter's textfile
collector.

    python -m amp_luigi status --start 2024-01-01 --metrics-file /var/lib/node_exporter/textfile/amp_luigi.prom

The numbers are the status view's (`days.collect`: one listing of each marker directory and one GET
per verified day), so a probe costs the same few requests whatever the range. Every series carries
the labels of the export it describes (`bucket`, `prefix`); when several Amplitude projects are
exported, each is one more `Target` with its own labels and the rules below work per project.

Freshness is measured from the end of the newest verified day (00:00 UTC of the day after): the
cron run at 02:30 UTC verifies yesterday, so a healthy export is 2.5 h to 26.5 h old, and an age over
36 h means a morning's run did not land its day. The file is replaced by a rename, so
node_exporter never reads half of it; a file no longer rewritten shows in node_exporter's own
`node_textfile_mtime_seconds`, and in `amp_luigi_status_timestamp_seconds` here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from amp_luigi.commands.days import DONE, EMPTY, FAILED, MISSING, NOT_YET, DayStatus

NEWEST_DAYS = 7
STATES = {DONE: "done", EMPTY: "empty", MISSING: "missing", FAILED: "failed", NOT_YET: "not_yet"}
DAY_SECONDS = 86400


@dataclass(frozen=True)
class Target:
    """One export (a bucket and prefix; later a project) and the status of each day of its range."""

    labels: dict[str, str]
    days: list[DayStatus] = field(default_factory=list)


@dataclass
class _Family:
    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float) -> None:
        self.samples.append((labels, value))


def _midnight(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def render(targets: Sequence[Target], now: dt.datetime, newest_days: int = NEWEST_DAYS) -> str:
    """The metrics of `targets` as of `now` (an aware datetime), every family with HELP and TYPE.

    A target with no verified day in its range has no `newest_verified_day_*` and no
    `last_verified_timestamp_seconds` sample: alert on their absence rather than on a made-up age.
    """
    families = {
        name: _Family(f"amp_luigi_{name}", text)
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
            ("range_start_timestamp_seconds", "Start (00:00 UTC) of the first day of the checked range."),
            ("status_timestamp_seconds", "When this status run read the markers."),
        )
    }
    for target in targets:
        labels = target.labels
        verified = [day for day in target.days if day.state in (DONE, EMPTY)]
        if verified:
            newest = verified[-1]
            ended = _midnight(newest.date) + DAY_SECONDS
            families["newest_verified_day_timestamp_seconds"].add(labels, _midnight(newest.date))
            families["newest_verified_day_age_seconds"].add(labels, max(0.0, now.timestamp() - ended))
            families["newest_verified_day_events"].add(labels, newest.events)
            families["newest_verified_day_objects"].add(labels, newest.objects)
        for state, value in STATES.items():
            count = sum(day.state == state for day in target.days)
            families["days"].add({**labels, "state": value}, count)
        for day in verified[-newest_days:] if newest_days > 0 else []:
            families["day_events"].add({**labels, "date": day.date.isoformat()}, day.events)
            families["day_objects"].add({**labels, "date": day.date.isoformat()}, day.objects)
        stamps = [day.verified_at.timestamp() for day in verified if day.verified_at is not None]
        if stamps:
            families["last_verified_timestamp_seconds"].add(labels, max(stamps))
        if target.days:
            families["range_start_timestamp_seconds"].add(labels, _midnight(target.days[0].date))
        families["status_timestamp_seconds"].add(labels, now.timestamp())
    return "".join(_family_text(family) for family in families.values())


def _family_text(family: _Family) -> str:
    lines = [f"# HELP {family.name} {_escape_help(family.help)}", f"# TYPE {family.name} gauge"]
    lines += [f"{family.name}{_labels(labels)} {_value(value)}" for labels, value in family.samples]
    return "\n".join(lines) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` by a rename in its own directory, so a reader sees the old file or the
    new one, never a part. The temporary name does not end in `.prom`: node_exporter skips it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp creates 0600; node_exporter usually runs as another user and must read the file.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
