"""Amplitude's export archives as untrusted input: zip safety, and each member extracted and checked.

Each `*.json.gz` member is copied out of the zip (its zip CRC checked by `zipfile`), inflated on
the fly (its gzip CRC checked by the codec) and every line checked as an event, in the same pass
that computes the CRC32s (of the member and of its NDJSON) and counts the bytes and events.
Nothing is ever held whole: a member that inflates far beyond its size (a bomb) or a line longer
than the limit is refused as soon as it shows, with the member named. Members are written under
their base name only, so no name can reach outside the staging directory, and names that try
(absolute, `..`, symlinks) reject the whole archive.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import re
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import IO

from amp_luigi.checksum import crc32, crc32_text
from amp_luigi.errors import ArchiveError
from amp_luigi.gzip_stream import inflate, read_chunks
from amp_luigi.layout import member_hour
from amp_luigi.lines import LineChecker
from amp_luigi.records import MemberRecord
from amp_luigi.staging_area import LOCAL, Sink, StagingArea
from amp_luigi.workers import FORK, map_in_workers

logger = logging.getLogger(__name__)

EXTRACT_WORKERS = 2
# An archive under this many compressed bytes (a few hundred events, a millisecond of checking) is
# checked in this process: starting the workers costs tens of ms, what a quiet day's whole
# extraction costs (docs/performance.md, backfills).
IN_PROCESS_BYTES = 64 * 1024
MEMBER_SUFFIX = ".json.gz"


# What zipfile raises on a malformed archive besides BadZipFile: a header's name in bad UTF-8, an
# "encrypted" or unknown-compression flag, a short read, an empty name; and a seek to a negative
# offset, an OSError with EINVAL (see _malformed).
ZIP_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    EOFError,
    NotImplementedError,
    RuntimeError,
    UnicodeDecodeError,
    IndexError,
    ValueError,
)
UNREADABLE: tuple[type[Exception], ...] = (*ZIP_ERRORS, OSError)


def _malformed(error: OSError) -> bool:
    return error.errno == errno.EINVAL


@dataclass(frozen=True)
class Limits:
    """What protects staging from a hostile archive ([staging] max_inflate_ratio, max_line_mib)."""

    max_inflate_ratio: int = 200
    max_line_bytes: int = 64 * 1024 * 1024


def safe_member_name(archive: PurePath, info: zipfile.ZipInfo) -> str:
    """The member's base name, or ArchiveError if its path or type could escape the staging directory."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\x00" in name:
        raise ArchiveError(f"{archive.name}: member {name!r} has an unsafe path (absolute or with '..')")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ArchiveError(f"{archive.name}: member {name!r} is a symbolic link")
    return parts[-1]


def extract_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: PurePath, limits: Limits, area: StagingArea = LOCAL
) -> MemberRecord:
    """Copy one member to `dest` in `area` (whole or not at all) while checking, checksumming and
    counting it."""
    name = dest.name
    gz_crc = json_crc = 0
    checker = LineChecker(name, limits.max_line_bytes)
    gz_bytes = json_bytes = 0

    def copied(source: IO[bytes], out: Sink) -> Iterator[bytes]:
        nonlocal gz_bytes, gz_crc
        for chunk in read_chunks(source):
            out.write(chunk)
            gz_crc = crc32(chunk, gz_crc)
            gz_bytes += len(chunk)
            yield chunk

    try:
        with archive.open(info) as source, area.create(dest) as out:
            for data in inflate(copied(source, out), name, limits.max_inflate_ratio):
                json_crc = crc32(data, json_crc)
                json_bytes += len(data)
                checker.feed(data)
            checker.finish()
    except UNREADABLE as error:
        if isinstance(error, OSError) and not _malformed(error):
            raise  # the staging disk, not the archive
        raise ArchiveError(f"member {info.filename}: {error or type(error).__name__}") from error
    return MemberRecord(
        name=name,
        hour=member_hour(name),
        events=checker.events,
        gz_bytes=gz_bytes,
        gz_crc32=crc32_text(gz_crc),
        json_bytes=json_bytes,
        json_crc32=crc32_text(json_crc),
    )


def extract_archives(
    archives: list[PurePath],
    dest_dir: PurePath,
    limits: Limits,
    progress: Callable[[int, int, int], None] | None = None,
    area: StagingArea = LOCAL,
) -> list[MemberRecord]:
    """Extract and check every `*.json.gz` member of `archives` into `dest_dir`, at any depth.

    `progress` gets (archive bytes done, archive bytes in all, members done).
    """
    total = sum(area.size(path) for path in archives)
    done = 0
    records: dict[str, MemberRecord] = {}
    for path in archives:
        with contextlib.ExitStack() as stack:
            try:
                archive = stack.enter_context(zipfile.ZipFile(stack.enter_context(area.open(path))))
            except UNREADABLE as error:
                raise ArchiveError(f"{path.name} is not a readable zip archive ({error})") from error
            members: dict[str, zipfile.ZipInfo] = {}
            ignored: list[str] = []
            for info in archive.infolist():
                if not info.filename:
                    raise ArchiveError(f"{path.name}: a member has an empty name")
                if info.is_dir():
                    continue
                name = safe_member_name(path, info)
                if not name.endswith(MEMBER_SUFFIX):
                    logger.warning("%s: ignoring member %r, not a .json.gz file", path.name, info.filename)
                    ignored.append(info.filename)
                    continue
                if name in records or name in members:
                    raise ArchiveError(f"{path.name}: member name {name!r} appears twice in the export")
                members[name] = info
        if ignored and not members:
            # Amplitude answers 404 for hours without events; an archive of other files means its
            # format changed, and taking it as an empty day would lose that day's events for good.
            raise ArchiveError(
                f"{path.name} holds {len(ignored)} file(s) but no *.json.gz member (first: {ignored[0]!r}); "
                "refusing to mark these hours complete and empty. Check Amplitude's export format."
            )
        for record in _extract_all(path, members, dest_dir, limits, area):
            records[record.name] = record
            done += members[record.name].compress_size
            if progress:
                progress(min(done, total), total, len(records))
    return sorted(records.values(), key=lambda record: (record.hour is None, record.hour, record.name))


def _extract_all(
    path: PurePath, members: dict[str, zipfile.ZipInfo], dest_dir: PurePath, limits: Limits, area: StagingArea
) -> Iterator[MemberRecord]:
    """extract_member for each of `members`, EXTRACT_WORKERS at a time, in order.

    Checking a line holds Python's GIL, and with events of a realistic size (1-2 KB) that is most
    of the work: threads would take turns, so the members are checked in forked worker processes
    (amp_luigi.workers), each with its own handle on the archive (and, in S3, its own client).
    Where there are none, or the archive is small, the members are checked one after the other here.
    """
    if not FORK or sum(info.compress_size for info in members.values()) < IN_PROCESS_BYTES:
        with area.open(path) as handle, zipfile.ZipFile(handle) as archive:
            for name, info in members.items():
                yield extract_member(archive, info, dest_dir / name, limits, area)
        return
    job = functools.partial(_extract_in_worker, path, dest_dir, limits, area)
    yield from map_in_workers(job, [(info.filename, name) for name, info in members.items()], EXTRACT_WORKERS)


# A worker's own handle on each archive, gone with the worker.
_opened: dict[PurePath, zipfile.ZipFile] = {}


def _extract_in_worker(
    path: PurePath, dest_dir: PurePath, limits: Limits, area: StagingArea, member: tuple[str, str]
) -> MemberRecord:
    filename, name = member
    if path not in _opened:
        _opened[path] = zipfile.ZipFile(area.open(path))
    archive = _opened[path]
    return extract_member(archive, archive.getinfo(filename), dest_dir / name, limits, area)
