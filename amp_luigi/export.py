"""ExportDay's stage: days downloaded from Amplitude into staging, then each day's index.

A day is requested whole (`T00` to `T23`), or in the hour ranges its neighbours needed
(amp_luigi.windows); several light days are requested as one window and the answer split by each
member's date into each day's own archive, so a day's index and archives are what a one-day
export of it gives. Amplitude refuses a range over 4 GB (400) or times out building it (504), and
then export_client.export_hours halves it, days first, then hours. A day's index is written last,
after every archive of the request is on disk in full and split: its existence means the download
is done, and a window killed half way leaves none of its days exported.

While a day's export is written its lock file is held (`layout.day_lock`), so two overlapping runs
never write one day's staging at once: ExportDay waits for the holder and then finds the day done;
a window leaves a held day out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePath
from typing import IO, cast

from amp_luigi.errors import ArchiveError, FatalError, NewerRecordError, NotYetAvailableError, StaleStateError
from amp_luigi.export_client import ExportClient, ExportedPart, export_hours
from amp_luigi.hours import HourRange, available_after, days_between
from amp_luigi.layout import MEMBER_NAME, DayLayout, date_named, day_lock, window_dir
from amp_luigi.members import MEMBER_SUFFIX, ZIP_ERRORS, Limits
from amp_luigi.records import DayRecord, ExportedRange, ExportIndex
from amp_luigi.s3 import Bucket
from amp_luigi.staging_area import LOCAL, StagingArea
from amp_luigi.windows import NEIGHBOURS, Known, Window, consecutive

logger = logging.getLogger(__name__)
ByteProgress = Callable[[HourRange, int, int | None], None]
_COPY = 1024 * 1024


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
    client: ExportClient, layout: DayLayout, on_bytes: ByteProgress | None = None, hours_each: int = 24
) -> ExportIndex:
    """Download the day (archives already on disk are kept), in ranges of `hours_each` hours up
    front, and write the index last. A single day's answer is its own archive: nothing to split."""
    window = Window((layout.date,), hours_each, None)
    return export_window(client, window, {layout.date: layout}, Limits(), on_bytes)[layout.date]


def export_window(
    client: ExportClient,
    window: Window,
    layouts: dict[dt.date, DayLayout],
    limits: Limits,
    on_bytes: ByteProgress | None = None,
) -> dict[dt.date, ExportIndex]:
    """Download the window's days with as few requests as Amplitude accepts, split what covers
    several days into each day's own archive, then write every day's index.

    An answer that cannot be split (a member of no day of the window, a damaged zip) is discarded
    whole with an ArchiveError naming the member: none of the window's days is exported.
    """
    area = layouts[window.first].area
    spool = window_dir(layouts[window.first].staging_root, window.first, window.last)
    ranges: dict[dt.date, list[ExportedRange]] = {day: [] for day in window.days}
    split: set[dt.date] = set()
    for requested in window.requests():
        for part in export_hours(
            client, requested, lambda hours: _archive_for(hours, layouts, spool), on_bytes, area
        ):
            for day, exported in _days_of(part, layouts, limits).items():
                ranges[day].append(exported)
                if part.split and part.hours.whole_days == 0:  # refused whole: the day needed these hours
                    split.add(day)
    indices = {day: ExportIndex(day, parts, day in split) for day, parts in ranges.items()}
    for day, index in indices.items():
        index.save(layouts[day].export_index, area)
    area.remove_tree(spool)
    return indices


def _archive_for(hours: HourRange, layouts: dict[dt.date, DayLayout], spool: PurePath) -> PurePath:
    """A range within one day goes straight to that day's archives; a range of several days waits
    in the window's spool until split."""
    if hours.whole_days > 1:
        return spool / f"{hours.label()}.zip"
    return layouts[hours.start.date()].archive_path(hours)


def _days_of(
    part: ExportedPart, layouts: dict[dt.date, DayLayout], limits: Limits
) -> dict[dt.date, ExportedRange]:
    """What one answer gives each of its days: itself for a range within a day, else each day's
    members in the archive a one-day request of that day would have given (None: no data, as a 404)."""
    hours = part.hours
    if hours.whole_days <= 1:
        return {hours.start.date(): ExportedRange(hours.label(), part.archive.name if part.archive else None)}
    days = days_between(hours.start.date(), hours.end.date() + dt.timedelta(days=1))
    archives = {day: layouts[day].archive_path(HourRange.day(day)) for day in days}
    area = layouts[hours.start.date()].area
    written = split_by_day(part.archive, archives, limits, area) if part.archive else set()
    return {
        day: ExportedRange(HourRange.day(day).label(), archives[day].name if day in written else None)
        for day in days
    }


def split_by_day(
    archive: PurePath, destinations: dict[dt.date, PurePath], limits: Limits, area: StagingArea = LOCAL
) -> set[dt.date]:
    """Copy every member of `archive` whole into the archive of the day its name carries; returns
    the days that got members. The archive is removed once split; when it cannot be, it is discarded
    with every day's archive written from it.

    The days are written one after the other, each from its members wherever they lie in the
    archive (a seekable read, ranged in S3): one day's archive is open at a time, so an S3 staging
    area holds one part in memory, however many days the window has.
    """
    try:
        with area.open(archive) as handle, zipfile.ZipFile(handle) as source:
            by_day: dict[dt.date, list[zipfile.ZipInfo]] = {}
            for info in source.infolist():
                if info.is_dir():
                    continue
                if not info.filename.endswith(MEMBER_SUFFIX):
                    logger.warning("%s: ignoring member %r, not a .json.gz file", archive.name, info.filename)
                    continue
                day = _member_day(info.filename)
                if day not in destinations:
                    raise ArchiveError(
                        f"{archive.name}: member {info.filename!r} belongs to no day of the window "
                        f"({min(destinations)}..{max(destinations)}); Amplitude's export format may have changed"
                    )
                by_day.setdefault(day, []).append(info)
            for day, members in sorted(by_day.items()):
                # zipfile writes to a sink that cannot seek (data descriptors after each member).
                with (
                    area.create(destinations[day]) as out,
                    zipfile.ZipFile(cast(IO[bytes], out), "w", zipfile.ZIP_STORED) as copy,
                ):
                    for info in members:
                        _copy_member(source, info, copy, limits)
    except ZIP_ERRORS as error:
        _discard(archive, destinations, area)
        raise ArchiveError(
            f"{archive.name}: {error or type(error).__name__}; the window was discarded"
        ) from error
    except ArchiveError:
        _discard(archive, destinations, area)
        raise
    area.remove(archive)
    return set(by_day)


def _member_day(name: str) -> dt.date | None:
    match = MEMBER_NAME.search(name.rsplit("/", 1)[-1])
    return date_named(match["date"]) if match else None


def _copy_member(
    source: zipfile.ZipFile, info: zipfile.ZipInfo, out: zipfile.ZipFile, limits: Limits
) -> None:
    """The member's bytes, as they are (its zip CRC checked by the reading), refused past the
    inflation limit, a zip bomb's way in."""
    allowed = max(info.compress_size, 1) * limits.max_inflate_ratio
    copied = 0
    copy = zipfile.ZipInfo(info.filename, info.date_time)
    copy.external_attr = info.external_attr  # a symlink stays one, for extraction to refuse
    with source.open(info) as reader, out.open(copy, "w", force_zip64=True) as writer:
        for chunk in iter(lambda: reader.read(_COPY), b""):
            copied += len(chunk)
            if copied > allowed:
                raise ArchiveError(
                    f"member {info.filename} inflates beyond {limits.max_inflate_ratio}x its size in the zip "
                    "([staging] max_inflate_ratio): refused as a zip bomb"
                )
            writer.write(chunk)


def _discard(archive: PurePath, destinations: dict[dt.date, PurePath], area: StagingArea) -> None:
    area.remove(archive)
    for dest in destinations.values():
        area.remove(dest)


def known_near(
    bucket: Bucket,
    prefix: str,
    area: StagingArea,
    staging_root: PurePath,
    days: list[dt.date],
    verified: Iterable[dt.date],
) -> dict[dt.date, Known]:
    """What is known of the days around `days`: the verified markers of the NEIGHBOURS verified days
    nearest each run of them (read several at a time, never changed: one damaged, newer, or from
    before sizes were recorded says nothing) and every day exported in staging."""
    done = sorted(verified)
    nearest: set[dt.date] = set()
    for run in consecutive(days):
        by_distance = sorted(done, key=lambda day: min(abs((day - run[0]).days), abs((day - run[-1]).days)))
        nearest.update(by_distance[:NEIGHBOURS])
    wanted = sorted(nearest)

    def size_of(day: dt.date) -> DayRecord | None:
        key = DayLayout(day, staging_root, prefix, False).verified_key
        try:
            data = bucket.read_json_if_exists(key)
            return None if data is None else DayRecord.from_json(data, f"s3://{bucket.name}/{key}")
        except (StaleStateError, NewerRecordError):
            return None  # damaged or newer: it tells nothing here (VerifyDay repairs a damaged one)

    records = bucket.map(size_of, wanted)
    known = {
        day: Known(record.gz_bytes, widest_hours(record.ranges), record.split)
        for day, record in zip(wanted, records, strict=True)
        if record is not None and record.gz_bytes is not None
    }
    return {**known, **staged_known(area, staging_root)}


def staged_known(area: StagingArea, staging_root: PurePath) -> dict[dt.date, Known]:
    """What the days exported in staging (and not yet verified) weighed, from one listing of the
    staging area and their indices."""
    files = area.files(staging_root)
    found: dict[dt.date, Known] = {}
    for path in files:
        day = date_named(path.parent.parent.name)
        if day is None or path.parent.parent.parent != staging_root:
            continue
        layout = DayLayout(day, staging_root, "", False)
        if path != layout.export_index:
            continue
        try:
            index = ExportIndex.load(path, area)
        except (StaleStateError, FileNotFoundError):
            continue  # ExtractDay names and discards a damaged one; a removed one says nothing
        sizes = [files.get(layout.export_dir / part.archive, 0) for part in index.ranges if part.archive]
        found[day] = Known(sum(sizes), widest_hours(part.hours for part in index.ranges), index.split)
    return found


def widest_hours(labels: Iterable[str]) -> int:
    """The widest of the hour ranges (labels `YYYYMMDDTHH-YYYYMMDDTHH`) a day was fetched in, at most 24."""
    return min(24, max((HourRange.from_label(label).hours for label in labels), default=24))


@contextlib.contextmanager
def locked_days(work_dir: Path, days: list[dt.date], *, wait: bool) -> Iterator[list[dt.date]]:
    """Hold this host's export locks of `days`: each waited for (`wait`), or the days held elsewhere
    left out. Across hosts, luigid runs each task once at a time (the locks serve runs of one host
    with their own schedulers); a day two hosts fetch at once is whole either way, each object
    written whole or not at all."""
    held: list[dt.date] = []
    with contextlib.ExitStack() as stack:
        for day in days:
            path = day_lock(work_dir, day)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(path.open("a"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                continue
            held.append(day)
        yield held
