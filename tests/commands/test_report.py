"""`python -m amp_luigi report`: one self-contained HTML page, checked as text and as a person sees it,
rendered by a real headless Chromium to a PNG whose pixels are read back."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from amp_luigi.commands import report
from amp_luigi.commands.days import DONE, EMPTY, ICEBERG, NOT_YET, PARQUET, DayStatus
from amp_luigi.testing.browser import read_png, screenshot
from amp_luigi.volume import VolumeRule
from tests.conftest import SECRETS, Workspace
from tests.expect import (
    ANOMALOUS,
    FAILED_DAY,
    MISSING_DAY,
    UNJUDGED,
    WEEKS_START,
    WEEKS_STOP,
    setup_weeks,
)


def rgb(colour: str) -> tuple[int, int, int]:
    red, green, blue = (int(colour[n : n + 2], 16) for n in (1, 3, 5))
    return red, green, blue


def make_report(workspace: Workspace, out: str) -> str:
    run = workspace.amp_luigi("report", "--start", str(WEEKS_START), "--stop", str(WEEKS_STOP), "--out", out)
    assert run.returncode == 0, run.stdout + run.stderr
    for secret in SECRETS:
        assert secret not in run.stdout + run.stderr
    return run.stdout


@pytest.fixture
def page(workspace: Workspace, tmp_path: Path) -> Path:
    setup_weeks(workspace)
    out = tmp_path / "report.html"
    said = make_report(workspace, str(out))
    assert f"wrote {out}: 1 project(s), 1 volume anomaly" in said
    return out


def cell(text: str, day: dt.date) -> str:
    """The heatmap cell of `day`, with its hover text."""
    found = re.search(rf'<rect [^>]*data-date="{day}"[^>]*>.*?</rect>', text)
    assert found, day
    return found.group(0)


def test_the_page_names_every_kind_of_day_and_needs_nothing_from_the_network(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"<script|<link|<img|@import|url\(|https?://", text), "self-contained"
    for secret in SECRETS:
        assert secret not in text
    assert 'data-state="FAILED"' in cell(text, FAILED_DAY)
    assert "failed (or running now): an _uploaded marker without a _verified one" in cell(text, FAILED_DAY)
    assert 'data-state="missing"' in cell(text, MISSING_DAY) and "missing: not exported yet" in text
    anomalous = cell(text, ANOMALOUS)
    assert f'stroke="{report.ANOMALY}"' in anomalous
    assert "VOLUME ANOMALY: 200 events, 0.19x the usual 1,050 (below the 0.5x-2x band" in anomalous
    assert report.ANOMALY not in cell(text, UNJUDGED)  # a Wednesday without history: no verdict
    assert "Freshness: the newest verified day is 2024-03-17" in text
    assert "40 done, 0 empty, 1 missing, 1 FAILED, 0 not yet, 1 anomalous" in text
    # The tables: the problems, then every day with its figures.
    problems = text[text.index("class='problems'") : text.index("<details>")]
    assert [str(day) for day in (ANOMALOUS, FAILED_DAY, MISSING_DAY)] == re.findall(
        r"<td class=\"day\">([\d-]+)", problems
    )
    assert (
        '<td class="day">2024-02-05</td><td class="weekday">Mon</td><td class="state">done</td><td class="n">1,000</td>'
        in text
    )


def test_the_rendered_heatmap_shows_each_day_in_its_colour_with_the_legend(
    page: Path, tmp_path: Path
) -> None:
    png = tmp_path / "report.png"
    screenshot(page, png, width=900, height=700)
    image = read_png(png)
    # The failed day's cell: the one red square of a cell's size (the legend's swatch is smaller).
    red = [
        box for box in image.regions(rgb(report.FILLS["FAILED"])) if _size(box) == (report.CELL, report.CELL)
    ]
    assert len(red) == 1, image.regions(rgb(report.FILLS["FAILED"]))
    left, top = red[0][:2]

    def at(day: dt.date, dx: int, dy: int) -> tuple[int, int, int]:
        """A pixel of `day`'s cell, placed from the failed day's by the calendar: weeks across, weekdays down."""
        weeks = (_monday(day) - _monday(FAILED_DAY)).days // 7
        x = left + weeks * report.STEP + dx
        y = top + (day.weekday() - FAILED_DAY.weekday()) * report.STEP + dy
        return image.pixel(x, y)

    middle = report.CELL // 2
    assert at(MISSING_DAY, middle, middle) == rgb(report.FILLS["missing"])
    assert at(ANOMALOUS, 1, 1) == rgb(report.ANOMALY)  # the ring
    # The scale's five bins span the quietest (200) to the busiest (1,100) day: 181 events each.
    assert at(ANOMALOUS, middle, middle) == rgb(report.SCALE[0])  # its volume, 200: the lightest bin
    assert at(ANOMALOUS - dt.timedelta(days=7), middle, middle) == rgb(report.SCALE[4])  # 1,050 events
    assert at(ANOMALOUS + dt.timedelta(days=2), middle, middle) == rgb(report.SCALE[3])  # a Friday, 900
    assert at(ANOMALOUS - dt.timedelta(days=3), middle, middle) == rgb(report.SCALE[0])  # a Sunday, 250
    # The legend: a swatch of every colour the heatmap uses.
    for colour in (*report.SCALE, report.FILLS["FAILED"], report.FILLS["missing"]):
        swatches = [box for box in image.regions(rgb(colour)) if _size(box) == (report.SWATCH, report.SWATCH)]
        assert swatches, colour
    assert image.regions(rgb(report.ANOMALY)), "the anomaly's ring, in the legend and the heatmap"


def _size(box: tuple[int, int, int, int]) -> tuple[int, int]:
    return box[2] - box[0] + 1, box[3] - box[1] + 1


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def test_the_report_goes_to_s3_as_one_html_object(workspace: Workspace, tmp_path: Path) -> None:
    setup_weeks(workspace)
    make_report(workspace, f"s3://{workspace.bucket}/reports/amplitude.html")
    answer = workspace.s3.get_object(Bucket=workspace.bucket, Key="reports/amplitude.html")
    assert answer["ContentType"] == "text/html; charset=utf-8"
    body = answer["Body"].read().decode()
    assert body.startswith("<!doctype html>") and f'data-date="{FAILED_DAY}"' in body
    bad = workspace.amp_luigi("report", "--start", str(WEEKS_START), "--out", f"s3://{workspace.bucket}")
    assert bad.returncode == 2 and "name the object" in bad.stderr


def test_every_kind_of_day_has_its_own_mark_and_words_and_the_layers_their_column() -> None:
    """render() alone: the states a workspace cannot make cheaply (not yet exportable, empty) and
    the query layers' columns."""
    rule = VolumeRule()
    first = dt.date(2024, 3, 4)
    days = [
        DayStatus(first, DONE, 1_000, 4, bytes=3 * 1024 * 1024, layers={"Parquet": True, "Iceberg": False}),
        DayStatus(first + dt.timedelta(days=1), EMPTY, layers={"Parquet": True, "Iceberg": True}),
        DayStatus(first + dt.timedelta(days=2), NOT_YET),
    ]
    page = report.render(
        [report.ProjectReport("s3://b/p/", days, (PARQUET, ICEBERG))], rule, first, first + dt.timedelta(days=3),
        dt.datetime(2024, 3, 6, 12, 0),
    )  # fmt: skip
    empty, not_yet = cell(page, days[1].date), cell(page, days[2].date)
    assert (
        f'fill="{report.FILLS[EMPTY]}" stroke="{report.OUTLINE}"' in empty and "verified, no events" in empty
    )
    assert (
        'stroke-dasharray="3 2"' in not_yet
        and "not yet exportable: Amplitude does not have all of it" in not_yet
    )
    assert "Freshness: the newest verified day is 2024-03-05, 1 day(s) old." in page
    header = re.search(r"<table class='days'><tr>(.*?)</tr>", page, re.S)
    assert header and re.findall(r"<th>(.*?)</th>", header[1]) == [
        "day", "weekday", "state", "events", "objects", "size", "Parquet", "Iceberg", "volume",
    ]  # fmt: skip
    assert '<td class="n">3.0 MiB</td><td class="Parquet">yes</td><td class="Iceberg">no</td>' in page
    assert "1 done, 1 empty, 0 missing, 0 FAILED, 1 not yet, 0 anomalous" in page
