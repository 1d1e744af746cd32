"""Reading Amplitude's export archives as untrusted input, one bounded chunk at a time.

Each `*.json.gz` member is copied out of the zip (its zip CRC checked by `zipfile`), inflated on
the fly (its gzip CRC checked by the codec) and every line parsed as JSON, in the same pass that
computes the CRC32s (of the member and of its NDJSON) and counts the bytes and events. Nothing is ever held whole: a member that inflates far beyond its size (a
bomb) or a line longer than the limit is refused as soon as it shows, with the member named.
Members are written under their base name only, so no name can reach outside the staging directory,
and names that try (absolute, `..`, symlinks) reject the whole archive.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import logging
import multiprocessing
import os
import re
import signal
import stat
import sys
import types
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, NoReturn

from amp_luigi.checksum import crc32, crc32_text
from amp_luigi.errors import ArchiveError
from amp_luigi.layout import partial_path

gzip_codec: types.ModuleType
try:  # ISA-L inflates several times faster than zlib; the standard library is the fallback.
    from isal import isal_zlib as gzip_codec
except ImportError:  # pragma: no cover - isal is a declared dependency
    gzip_codec = zlib
CODEC_ERRORS: tuple[type[Exception], ...] = (gzip_codec.error, zlib.error)

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
EXTRACT_WORKERS = 2
# Worker processes where fork is safe and a worker can be tied to its parent's life (Linux); elsewhere
# the members are checked one after the other in this process.
FORK = sys.platform == "linux"
PR_SET_PDEATHSIG = 1
MEMBER_SUFFIX = ".json.gz"
# Amplitude names members `<project>/<project>_<YYYY-MM-DD>_<H>#<n>.json.gz`, the hour not zero-padded.
MEMBER_NAME = re.compile(r"_(?P<date>\d{4}-\d{2}-\d{2})_(?P<hour>\d{1,2})#(?P<part>\d+)\.json\.gz$")


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
    max_inflate_ratio: int = 200
    max_line_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class MemberRecord:
    """One checked member: what the manifest says about it."""

    name: str
    hour: int | None
    events: int
    gz_bytes: int
    gz_crc32: str
    json_bytes: int
    json_crc32: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemberRecord:
        return cls(**data)


def read_chunks(stream: IO[bytes], size: int = CHUNK) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def inflate(chunks: Iterable[bytes], member: str, limits: Limits) -> Iterator[bytes]:
    """Gunzip a stream (several gzip members allowed), in bounded pieces, refusing bombs."""
    decoder = gzip_codec.decompressobj(wbits=31)
    started = False
    consumed = produced = 0
    try:
        for chunk in chunks:
            pending = chunk
            while pending:
                started = True
                out = decoder.decompress(pending, CHUNK)
                left = (
                    decoder.unused_data + decoder.unconsumed_tail if decoder.eof else decoder.unconsumed_tail
                )
                # Count only the input inflated so far, so a bomb is caught within a few MiB of output
                # rather than after `max_inflate_ratio` times a whole read chunk.
                consumed += len(pending) - len(left)
                pending = left
                if decoder.eof:
                    decoder = gzip_codec.decompressobj(wbits=31)
                    started = False
                if out:
                    produced += len(out)
                    if produced > limits.max_inflate_ratio * consumed + CHUNK:
                        raise ArchiveError(
                            f"member {member} inflates more than {limits.max_inflate_ratio} times its size "
                            "(a gzip bomb?); refusing it. Raise [staging] max_inflate_ratio if it is genuine."
                        )
                    yield out
    except CODEC_ERRORS as error:
        raise ArchiveError(f"member {member}: gzip data is corrupt ({error})") from error
    if started or consumed == 0:
        raise ArchiveError(f"member {member}: gzip data ends early (truncated member)")


class LineChecker:
    """Counts events and proves every line is a JSON object; a last line without newline is fine."""

    def __init__(self, member: str, limits: Limits) -> None:
        self.member = member
        self.max_line = limits.max_line_bytes
        self.lines = 0
        self.events = 0
        self._carry = bytearray()  # grows in place: a long line is not copied again per chunk
        self._parse, self._event_type = _fast_parser()

    def feed(self, data: bytes) -> None:
        start = 0
        if self._carry:  # the line begun in an earlier chunk: only its bytes are joined, once
            end = data.find(b"\n")
            self._carry += data if end < 0 else data[:end]
            if end < 0:
                if len(self._carry) > self.max_line:
                    self._fail(self.lines + 1, f"longer than {self.max_line} bytes")
                return
            self._check(memoryview(self._carry))
            self._carry = bytearray()
            start = end + 1
        start = self._check_lines(data, start)
        self._carry = bytearray(memoryview(data)[start:])
        if len(self._carry) > self.max_line:
            self._fail(self.lines + 1, f"longer than {self.max_line} bytes")

    def _check_lines(self, data: bytes, start: int) -> int:
        """Checks the complete lines of `data` from `start`; returns where the unfinished one begins.

        The common case, an event object simdjson accepts, costs no method call: real events are
        ~1-2 KB, so per-line overhead is most of the time. Any other line takes the exact path.
        """
        # Lines are memoryview slices of the chunk: no copy of the bytes per line.
        view, find, parse = memoryview(data), data.find, self._parse
        event_type, limit = self._event_type, self.max_line
        passed = 0
        while (end := find(b"\n", start)) >= 0:
            line = view[start:end]
            try:
                # The parsed document is a view into the parser, dropped before the next line.
                fine = parse is not None and end - start <= limit and isinstance(parse(line), event_type)
            except (ValueError, RuntimeError):
                fine = False
            if fine:
                passed += 1
            else:
                self.lines += passed
                self.events += passed
                passed = 0
                self._check(line)
            start = end + 1
        self.lines += passed
        self.events += passed
        return start

    def finish(self) -> None:
        if self._carry:
            self._check(memoryview(self._carry))
            self._carry = bytearray()

    def _check(self, line: bytes | memoryview) -> None:
        self.lines += 1
        if len(line) > self.max_line:
            self._fail(self.lines, f"longer than {self.max_line} bytes")
        if not self._is_object(line):
            self._fail(self.lines, "is JSON but not an event object")
        self.events += 1

    def _is_object(self, line: bytes | memoryview) -> bool:
        if self._parse is not None:
            try:
                return isinstance(self._parse(line), self._event_type)
            except (ValueError, RuntimeError):
                # simdjson is stricter than the standard library (integers over 64 bits, NaN, lone
                # surrogates): the standard library decides, so the same lines are accepted either way.
                pass
        return isinstance(self._loads(line), dict)

    def _loads(self, line: bytes | memoryview) -> Any:
        try:
            return json.loads(bytes(line))
        except ValueError as error:
            self._fail(self.lines, f"is not JSON ({error})")

    def _fail(self, line: int, why: str) -> NoReturn:
        raise ArchiveError(f"member {self.member}, line {line} {why}")


@functools.cache
def _simdjson() -> Any:
    # Imported on first use: its 36 ms would otherwise be paid by every run, also those with nothing to do.
    try:  # simdjson validates an event several times faster than a parser that builds Python objects
        import simdjson
    except ImportError:  # pragma: no cover - pysimdjson is a declared dependency
        return None
    return simdjson


def _fast_parser() -> tuple[Callable[[bytes | memoryview], Any] | None, type]:
    """A new simdjson parser's parse (one per member: a parser is not thread-safe), and its object type."""
    simdjson = _simdjson()
    return (simdjson.Parser().parse, simdjson.Object) if simdjson else (None, dict)


def safe_member_name(archive: Path, info: zipfile.ZipInfo) -> str:
    """The member's base name, or ArchiveError if its path or type could escape the staging directory."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\x00" in name:
        raise ArchiveError(f"{archive.name}: member {name!r} has an unsafe path (absolute or with '..')")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ArchiveError(f"{archive.name}: member {name!r} is a symbolic link")
    return parts[-1]


def extract_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, limits: Limits
) -> MemberRecord:
    """Copy one member to `dest` (atomically) while checking, checksumming and counting it."""
    name = dest.name
    gz_crc = json_crc = 0
    checker = LineChecker(name, limits)
    gz_bytes = json_bytes = 0
    partial = partial_path(dest)

    def copied(source: IO[bytes], out: IO[bytes]) -> Iterator[bytes]:
        nonlocal gz_bytes, gz_crc
        for chunk in read_chunks(source):
            out.write(chunk)
            gz_crc = crc32(chunk, gz_crc)
            gz_bytes += len(chunk)
            yield chunk

    try:
        with archive.open(info) as source, partial.open("wb") as out:
            for data in inflate(copied(source, out), name, limits):
                json_crc = crc32(data, json_crc)
                json_bytes += len(data)
                checker.feed(data)
        checker.finish()
        os.replace(partial, dest)
    except UNREADABLE as error:
        if isinstance(error, OSError) and not _malformed(error):
            raise  # the staging disk, not the archive
        raise ArchiveError(f"member {info.filename}: {error or type(error).__name__}") from error
    finally:
        partial.unlink(missing_ok=True)
    match = MEMBER_NAME.search(name)
    return MemberRecord(
        name=name,
        hour=int(match["hour"]) if match else None,
        events=checker.events,
        gz_bytes=gz_bytes,
        gz_crc32=crc32_text(gz_crc),
        json_bytes=json_bytes,
        json_crc32=crc32_text(json_crc),
    )


def extract_archives(
    archives: list[Path],
    dest_dir: Path,
    limits: Limits,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[MemberRecord]:
    """Extract and check every `*.json.gz` member of `archives` into `dest_dir`, at any depth.

    `progress` gets (archive bytes done, archive bytes in all, members done).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    total = sum(path.stat().st_size for path in archives)
    done = 0
    records: dict[str, MemberRecord] = {}
    for path in archives:
        try:
            archive = zipfile.ZipFile(path)
        except UNREADABLE as error:
            raise ArchiveError(f"{path.name} is not a readable zip archive ({error})") from error
        with archive:
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
        for record in _extract_all(path, members, dest_dir, limits):
            records[record.name] = record
            done += members[record.name].compress_size
            if progress:
                progress(min(done, total), total, len(records))
    return sorted(records.values(), key=lambda record: (record.hour is None, record.hour, record.name))


def _extract_all(
    path: Path, members: dict[str, zipfile.ZipInfo], dest_dir: Path, limits: Limits
) -> Iterator[MemberRecord]:
    """extract_member for each of `members`, EXTRACT_WORKERS at a time, in order.

    Checking a line holds Python's GIL, and with events of a realistic size (1-2 KB) that is most
    of the work: threads would take turns, so the members are checked in worker processes, forked
    (they start at once and share the parent's memory). A worker dies with the process that forked
    it, so a killed run leaves none writing into the staging directory the rerun uses. On the first
    failure the members not yet started are cancelled.
    """
    if not FORK:
        with zipfile.ZipFile(path) as archive:
            for name, info in members.items():
                yield extract_member(archive, info, dest_dir / name, limits)
        return
    job = functools.partial(_extract_in_worker, path, dest_dir, limits)
    names = [(info.filename, name) for name, info in members.items()]
    pool = ProcessPoolExecutor(
        EXTRACT_WORKERS,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        yield from pool.map(job, names)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_opened: dict[Path, zipfile.ZipFile] = {}  # a worker's own handle on each archive, gone with the worker


def _extract_in_worker(path: Path, dest_dir: Path, limits: Limits, member: tuple[str, str]) -> MemberRecord:
    filename, name = member
    if path not in _opened:
        _opened[path] = zipfile.ZipFile(path)
    archive = _opened[path]
    return extract_member(archive, archive.getinfo(filename), dest_dir / name, limits)


def _die_with_parent(parent: int) -> None:
    """Have Linux kill this worker when the process that forked it dies, SIGKILL included."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)
