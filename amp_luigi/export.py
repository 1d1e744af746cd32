"""ExportDay's stage: a whole UTC day downloaded from Amplitude into staging, then its index.

A day is requested whole (`T00` to `T23`); Amplitude refuses a range over 4 GB (400) or times out
building it (504), and then export_client.export_hours halves it, down to single hours. The index
is written last, after every zip is on disk in full, so its existence means the download is done.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from amp_luigi.errors import FatalError, NotYetAvailableError
from amp_luigi.export_client import ExportClient, export_hours
from amp_luigi.hours import HourRange, available_after
from amp_luigi.layout import DayLayout
from amp_luigi.records import ExportedRange, ExportIndex


def check_exportable(
    date: dt.date, first_date: dt.date, lag_hours: float, now: dt.datetime | None = None
) -> None:
    """Refuse, before any request, a day Amplitude cannot export completely (`now`: naive UTC)."""
    if date < first_date:
        raise FatalError(
            f"{date} is before the project's first day {first_date} ([amplitude] first_date): "
            "check the date, or set first_date to the day your Amplitude project started."
        )
    ready = available_after(date, lag_hours)
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    if now < ready:
        raise NotYetAvailableError(
            f"{date} cannot be exported yet: Amplitude has all of it only from {ready:%Y-%m-%d %H:%M} UTC "
            f"(the day's end plus [amplitude] availability_lag_hours = {lag_hours:g}); "
            "exporting it now would mark a partial day complete. Run again after that time."
        )


def export_day(
    client: ExportClient,
    layout: DayLayout,
    on_bytes: Callable[[HourRange, int, int | None], None] | None = None,
) -> ExportIndex:
    """Download the day's hours (archives already on disk are kept) and write the index last."""
    parts = export_hours(client, HourRange.day(layout.date), layout.archive_path, on_bytes)
    index = ExportIndex(
        layout.date,
        [ExportedRange(part.hours.label(), part.archive.name if part.archive else None) for part in parts],
    )
    index.save(layout.export_index)
    return index
