"""`python -m amp_luigi report`: the export at a glance, in one self-contained HTML file.

    python -m amp_luigi report --start 2024-01-01 --out report.html
    python -m amp_luigi report --start 2024-01-01 --out s3://team-bucket/reports/amplitude.html

Per project: a calendar heatmap of events per day (weeks by weekday, a colour scale with its
legend), the days missing, failed, empty, not yet exportable and anomalous each marked distinctly
and named on hover and in a table; freshness (the newest verified day and its age); and per day the
events, objects, bytes and the query layers it is in. It reads what `status` reads
(amp_luigi.commands.days: the markers, one bounded set of requests), never the data objects, and
judges volume with `status`'s rule (amp_luigi.volume). Everything is inline HTML, CSS and SVG: no
script, font or image from the network, so it opens offline, from a mail or from S3.
"""

from __future__ import annotations

import datetime as dt
import html
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from amp_luigi.commands.days import DONE, EMPTY, FAILED, MISSING, NOT_YET, DayStatus, Layer, short_count
from amp_luigi.commands.status import WEEKDAYS, range_stop, survey
from amp_luigi.proof import digest
from amp_luigi.staging_area import LOCAL
from amp_luigi.validation import Setting, s3_location
from amp_luigi.volume import VolumeRule

# The heatmap's geometry, in CSS pixels: a cell, the gap between cells, the margins for the labels.
CELL, GAP = 18, 3
STEP = CELL + GAP
LEFT, TOP = 34, 18
# Events per day, light to dark (ColorBrewer's Blues), and the states that have no volume.
SCALE = ("#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c")
FILLS = {EMPTY: "#ffffff", MISSING: "#d9d9d9", FAILED: "#d62728", NOT_YET: "#f7f7f7"}
ANOMALY = "#ff7f0e"  # the ring around an anomalous day, whatever its fill
OUTLINE = "#969696"  # the thin border of the light states, so they show on white
SWATCH = 12
STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 4px; }
p { margin: 4px 0; } .muted { color: #666; }
svg.heatmap, svg.legend { display: block; margin: 8px 0; } svg text { font: 10px system-ui, sans-serif; fill: #555; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 2px 10px 2px 0; text-align: left; }
th { border-bottom: 1px solid #ccc; } td.day { white-space: nowrap; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td.state { color: #d62728; font-weight: 600; } tr.anomalous td.volume { color: #d45f00; font-weight: 600; }
details { margin: 8px 0; } summary { cursor: pointer; }
"""


@dataclass(frozen=True)
class ProjectReport:
    """One project's part of the report: where it is, its days, and the layers the settings enable."""

    where: str
    days: list[DayStatus]
    layers: tuple[Layer, ...]


def render(
    projects: list[ProjectReport], rule: VolumeRule, start: dt.date, stop: dt.date, now: dt.datetime
) -> str:
    """The whole page."""
    title = f"Amplitude export {start} .. {stop - dt.timedelta(days=1)}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">Made by amp-luigi at {now:%Y-%m-%d %H:%M} UTC from the S3 markers. Volume '
        f"anomaly: a verified day {html.escape(rule.describe())}.</p>",
    ]
    for project in projects:
        parts.extend(_project(project, rule, now))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _project(project: ProjectReport, rule: VolumeRule, now: dt.datetime) -> Iterator[str]:
    days = project.days
    yield f"<section><h2>{html.escape(project.where)}</h2>"
    yield f"<p>{html.escape(_freshness(days, now))}</p>"
    counts = Counter(day.state for day in days)
    anomalous = [day for day in days if day.anomalous]
    states = ", ".join(f"{counts[state]} {state}" for state in (DONE, EMPTY, MISSING, FAILED, NOT_YET))
    events, objects = sum(day.events for day in days), sum(day.objects for day in days)
    yield (
        f"<p>{states}, {len(anomalous)} anomalous; {events:,} events in {objects:,} objects, "
        f"{_mib(sum(day.bytes for day in days))}.</p>"
    )
    bins = _bins(days)
    yield _heatmap(days, bins, rule)
    yield _legend(bins)
    problems = [day for day in days if day.state != DONE or day.anomalous]
    if problems:
        yield "<table class='problems'><tr><th>day</th><th>state</th><th>what it means</th></tr>"
        for day in problems:
            yield _row(day, ["day", "state", "what"], rule, project.layers)
        yield "</table>"
    else:
        yield "<p>Every day of the range is verified, none anomalous.</p>"
    yield "<details><summary>Every day</summary><table class='days'><tr>"
    columns = [
        "day",
        "weekday",
        "state",
        "events",
        "objects",
        "size",
        *(each.name for each in project.layers),
    ]
    columns.append("volume")
    yield "".join(f"<th>{html.escape(column)}</th>" for column in columns) + "</tr>"
    for day in days:
        yield _row(day, columns, rule, project.layers)
    yield "</table></details></section>"


def _freshness(days: list[DayStatus], now: dt.datetime) -> str:
    verified = [day for day in days if day.state in (DONE, EMPTY)]
    if not verified:
        return "Freshness: no day of the range is verified yet."
    newest = verified[-1]
    age = (now.date() - newest.date).days
    when = f", verified {newest.verified_at:%Y-%m-%d %H:%M} UTC" if newest.verified_at else ""
    return f"Freshness: the newest verified day is {newest.date}, {age} day(s) old{when}."


def _bins(days: list[DayStatus]) -> list[tuple[int, int]]:
    """The colour scale's bins (lowest and highest events of each), of equal widths from the
    quietest to the busiest day shown: the day-to-day variation is what the eye should see."""
    counts = [day.events for day in days if day.state == DONE] or [0]
    low, high = min(counts), max(counts)
    width = max(1, -(-(high - low + 1) // len(SCALE)))
    return [(low + n * width, low + (n + 1) * width - 1) for n in range(len(SCALE))]


def _fill(day: DayStatus, bins: list[tuple[int, int]]) -> str:
    if day.state != DONE:
        return FILLS[day.state]
    return SCALE[next((n for n, (_, high) in enumerate(bins) if day.events <= high), len(SCALE) - 1)]


def _title(day: DayStatus, rule: VolumeRule) -> str:
    """What hovering a cell says."""
    said = f"{day.date} ({WEEKDAYS[day.date.weekday()]}): "
    if day.state == DONE:
        said += f"{day.events:,} events in {day.objects:,} objects, {_mib(day.bytes)}"
    elif day.state == EMPTY:
        said += "verified, no events"
    elif day.state == FAILED:
        said += f"failed (or running now): {day.reason}"
    elif day.state == MISSING:
        said += "missing: not exported yet"
    else:
        said += "not yet exportable: Amplitude does not have all of it yet"
    if day.anomalous:
        assert day.volume is not None
        said += f"; VOLUME ANOMALY: {day.volume.explain(rule)}"
    elif day.volume is not None and day.volume.ratio is None:  # say why a day is not judged
        said += f"; volume: {day.volume.explain(rule)}"
    return said


def _heatmap(days: list[DayStatus], bins: list[tuple[int, int]], rule: VolumeRule) -> str:
    first = days[0].date - dt.timedelta(days=days[0].date.weekday())
    weeks = (days[-1].date - first).days // 7 + 1
    width, height = LEFT + weeks * STEP + 40, TOP + 7 * STEP  # room for the last month's label
    out = [
        f'<svg class="heatmap" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="events per day">'
    ]
    for row in (0, 2, 4):
        out.append(f'<text x="0" y="{TOP + row * STEP + CELL - 5}">{WEEKDAYS[row]}</text>')
    labelled = -3  # the column of the last month's label: labels keep three columns apart
    for day in days:
        column, row = (day.date - first).days // 7, day.date.weekday()
        x, y = LEFT + column * STEP, TOP + row * STEP
        starts = day.date.day == 1 or (day is days[0] and day.date.day < 25)
        if starts and column - labelled >= 3:
            out.append(f'<text x="{x}" y="{TOP - 6}">{day.date:%b %Y}</text>')
            labelled = column
        stroke = ""
        if day.anomalous:
            stroke = f' stroke="{ANOMALY}" stroke-width="4"'
        elif day.state in (EMPTY, NOT_YET):
            dash = ' stroke-dasharray="3 2"' if day.state == NOT_YET else ""
            stroke = f' stroke="{OUTLINE}" stroke-width="1"{dash}'
        out.append(
            f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{_fill(day, bins)}"{stroke} '
            f'data-date="{day.date}" data-state="{day.state}"><title>{html.escape(_title(day, rule))}</title></rect>'
        )
    out.append("</svg>")
    return "".join(out)


def _legend(bins: list[tuple[int, int]]) -> str:
    """The colour scale's bins with their bounds on one line, each state's mark on the next."""
    scale = [
        (colour, f"{short_count(low)}-{short_count(high)} events", "")
        for colour, (low, high) in zip(SCALE, bins, strict=True)
    ]
    states = [
        (FILLS[EMPTY], "verified, empty", f' stroke="{OUTLINE}"'),
        (FILLS[MISSING], "missing", ""),
        (FILLS[FAILED], "failed", ""),
        (FILLS[NOT_YET], "not yet exportable", f' stroke="{OUTLINE}" stroke-dasharray="3 2"'),
        ("#ffffff", "volume anomaly", f' stroke="{ANOMALY}" stroke-width="3"'),
    ]
    out, width = [], 0
    for line, entries in enumerate((scale, states)):
        x, y = 0, 4 + line * 20
        for colour, label, stroke in entries:
            out.append(
                f'<rect x="{x + 2}" y="{y}" width="{SWATCH}" height="{SWATCH}" fill="{colour}"{stroke}></rect>'
                f'<text x="{x + SWATCH + 6}" y="{y + 10}">{html.escape(label)}</text>'
            )
            x += SWATCH + 16 + 6 * len(label)
        width = max(width, x)
    return (
        f'<svg class="legend" width="{width}" height="42" role="img" aria-label="legend">{"".join(out)}</svg>'
    )


def _row(day: DayStatus, columns: list[str], rule: VolumeRule, layers: tuple[Layer, ...]) -> str:
    values = {
        "day": str(day.date),
        "weekday": WEEKDAYS[day.date.weekday()],
        "state": "anomalous" if day.state == DONE and day.anomalous else day.state,
        "events": f"{day.events:,}" if day.state in (DONE, EMPTY) else "",
        "objects": f"{day.objects:,}" if day.state in (DONE, EMPTY) else "",
        "size": _mib(day.bytes) if day.state == DONE else "",
        "what": _title(day, rule).split(": ", 1)[1],
        "volume": _volume(day, rule),
        **{
            layer.name: ("yes" if day.layers.get(layer.name) else "no")
            for layer in layers
            if day.state in (DONE, EMPTY)
        },
    }
    classes = " ".join(
        filter(None, (day.state.replace(" ", "-").lower(), "anomalous" if day.anomalous else ""))
    )
    numeric = {"events", "objects", "size"}
    cells = "".join(
        f'<td class="{"n" if column in numeric else column}">{html.escape(values.get(column, ""))}</td>'
        for column in columns
    )
    return f'<tr class="{classes}">{cells}</tr>'


def _volume(day: DayStatus, rule: VolumeRule) -> str:
    if day.volume is None:
        return ""
    if day.volume.ratio is None:
        return "no verdict"
    return f"{day.volume.ratio:.2f}x" + (" anomaly" if day.volume.anomalous else "")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.1f} MiB"


def main(start: dt.date, stop: dt.date | None, *, project: str | None, out: str) -> int:
    """Write the report of [start, stop) (every project, or `project`) to `out`: a path, or
    `s3://bucket/key.html` (uploaded proven, as every object is). 2 for a bad target; ConfigError
    for a range without a day."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    stop = range_stop(start, stop, now.date())
    surveys, rule = survey(start, stop, project, now)
    reports = [ProjectReport(each.settings.where(), each.days, each.layers) for each in surveys]
    page = render(reports, rule, start, stop, now).encode()
    if out.startswith("s3://"):
        bucket_name, key = s3_location(out, Setting.env_only("--out"))
        if not key:
            print(
                f"--out {out}: name the object, e.g. s3://{bucket_name}/reports/amplitude.html",
                file=sys.stderr,
            )
            return 2
        bucket = surveys[0].settings.open_bucket(bucket_name, key.rsplit("/", 1)[0] if "/" in key else "")
        bucket.put(key, page, digest(page, bucket.proof), ContentType="text/html; charset=utf-8")
    else:
        try:
            LOCAL.write_bytes(Path(out), page)
        except OSError as error:
            print(f"--out {out}: {error.strerror or error}", file=sys.stderr)
            return 2
    flagged = sum(day.anomalous for each in surveys for day in each.days)
    print(f"wrote {out}: {len(surveys)} project(s), {flagged} volume anomal{'y' if flagged == 1 else 'ies'}")
    return 0
