"""Faults the emulator injects on demand, so client tests can prove each failure is handled.

A test queues rules with `Emulator.add_fault(kind, times=1, match=None, **opts)`; each request takes the
first rule that matches its range and still has uses left. The kinds:

- `status` (opts `status=500`, `headers={}`, `body=""`) and `rate_limit` (429, opt `retry_after=1`).
- `drop`: close the connection without answering.
- `drop_mid_body`: announce the full Content-Length, send a part (opt `fraction=0.5`), then reset the
  connection (RST); `truncate`: the same, but closing cleanly (FIN), so the client just sees a short body.
- `slow_first_byte`: wait `seconds=5` (or until the `until` threading.Event is set) before the status line.
- Archive faults, all answered 200 with a zip that must be rejected: `broken_zip` (not a zip at all),
  `bad_gzip_crc`, `non_json_line`, `evil_name` (`../../evil.json.gz`), `absolute_name`
  (`/tmp/evil.json.gz`), `symlink_member`, `gzip_bomb` (`size=2 GiB` of `fill=b" "` from ~2 MiB) and
  `zip_crc` (member data that fails the zip's CRC-32).

A `Gate` (`Emulator.gate(times=1, match=None)`) is not a fault: the answer is the usual one, only held
back until the test releases it, so a test can look at the client while a request is known to be in
progress (a task RUNNING in luigid, its status message) instead of guessing a latency long enough.
"""

from __future__ import annotations

import gzip
import stat
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any

from amp_luigi.emulator.events import day_hours, parse_hour, write_members, zip_member_info

CONNECTION_KINDS = frozenset({"drop", "drop_mid_body", "truncate", "slow_first_byte"})
ARCHIVE_KINDS = frozenset(
    {"broken_zip", "bad_gzip_crc", "non_json_line", "evil_name", "absolute_name", "symlink_member"}
    | {"gzip_bomb", "zip_crc"}
)
KINDS = frozenset({"status", "rate_limit"}) | CONNECTION_KINDS | ARCHIVE_KINDS

#: A rule applies to every request (None), to ranges touching a date, to one exact (start, end)
#: range, or to whatever a predicate of (start, end) accepts.
Match = Callable[[datetime, datetime], bool] | date | tuple[str, str] | None

CHUNK = 1024 * 1024
NOT_A_ZIP = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"


@dataclass
class Fault:
    kind: str
    times: int | None  # uses left; None for every matching request
    match: Match = None
    opts: dict[str, Any] = field(default_factory=dict)
    hits: int = 0

    def matches(self, start: datetime, end: datetime) -> bool:
        if self.match is None:
            return True
        if isinstance(self.match, tuple):
            return (parse_hour(self.match[0]), parse_hour(self.match[1])) == (start, end)
        if isinstance(self.match, date):
            first, last = day_hours(self.match)
            return start <= last and end >= first
        return self.match(start, end)


class FaultQueue:
    """Thread-safe rules, used up in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind: str, times: int | None = 1, match: Match = None, **opts: Any) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(KINDS))}")
        fault = Fault(kind, times, match, opts)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, start: datetime, end: datetime) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times != 0 and fault.matches(start, end):
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class Gate:
    """Where the emulator holds requests until the test releases them.

    Each request the gate matches (the first `times` of them; None: every one) waits here after it
    took its project's concurrency slot and before its answer is made; `wait_held` returns once
    `count` requests have arrived. `release()` lets them go on and opens the gate for good, so no
    later request waits; stopping the emulator releases every gate, so no server thread is left waiting.
    """

    def __init__(self, times: int | None = 1, match: Match = None) -> None:
        self._rule = Fault("gate", times, match)
        self._changed = threading.Condition()
        self._open = False
        self.held = 0  # requests that have waited here, released or not

    def wait_held(self, count: int = 1, timeout: float = 60.0) -> bool:
        """Block until `count` requests have reached the gate; False if `timeout` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: self.held >= count, timeout)

    def release(self) -> None:
        """Let the held requests go on, and every later one pass."""
        with self._changed:
            self._open = True
            self._changed.notify_all()

    def hold(self, start: datetime, end: datetime) -> bool:
        """The server's side: wait here until released if the gate takes this request; whether it did."""
        with self._changed:
            if self._open or self._rule.times == 0 or not self._rule.matches(start, end):
                return False
            if self._rule.times is not None:
                self._rule.times -= 1
            self.held += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._open)
            return True


def write_faulty_zip(fault: Fault, out: IO[bytes], members: list[tuple[str, bytes]], spare_name: str) -> None:
    """Write the zip an archive fault answers with, built around the range's real members.

    `spare_name` is a plausible member name for added members, and for the one event used when the
    range has no data of its own.
    """
    if fault.kind == "broken_zip":
        out.write(NOT_A_ZIP)
        return
    sample = b'{"$insert_id":"fault-sample","event_type":"sample"}\n'
    members = list(members) or [(spare_name, gzip.compress(sample, mtime=0))]
    name, data = members[0]
    if fault.kind == "bad_gzip_crc":
        members[0] = (name, _bad_crc(data))
    elif fault.kind == "non_json_line":
        lines = gzip.decompress(data).splitlines(keepends=True)
        lines.insert(1, b"this is not JSON {\n")
        members[0] = (name, gzip.compress(b"".join(lines), mtime=0))
    with zipfile.ZipFile(out, "w") as zf:
        write_members(zf, members)
        if fault.kind == "evil_name":
            zf.writestr(zip_member_info(fault.opts.get("name", "../../evil.json.gz")), data)
        elif fault.kind == "absolute_name":
            zf.writestr(zip_member_info(fault.opts.get("name", "/tmp/evil.json.gz")), data)
        elif fault.kind == "symlink_member":
            info = zip_member_info(spare_name)
            info.create_system = 3  # Unix, so the mode bits in external_attr are honoured
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, fault.opts.get("target", "/etc/passwd"))
        elif fault.kind == "gzip_bomb":
            with zf.open(zip_member_info(spare_name), "w") as member:
                write_gzip_bomb(member, fault.opts.get("size", 2 * 1024**3), fault.opts.get("fill", b" "))
        first = zf.infolist()[0]
    if fault.kind == "zip_crc":
        _flip_member_byte(out, first)


def _bad_crc(gz: bytes) -> bytes:
    # A gzip member ends with CRC-32 then the uncompressed size, 4 bytes each, little-endian.
    (crc,) = struct.unpack("<I", gz[-8:-4])
    return gz[:-8] + struct.pack("<I", crc ^ 0xFFFFFFFF) + gz[-4:]


def _flip_member_byte(out: IO[bytes], info: zipfile.ZipInfo) -> None:
    # A local file header is 30 bytes, then the name and extra field whose lengths end it.
    out.seek(info.header_offset + 26)
    name_len, extra_len = struct.unpack("<HH", out.read(4))
    offset = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    out.seek(offset)
    byte = out.read(1)[0]
    out.seek(offset)
    out.write(bytes([byte ^ 0xFF]))
    out.seek(0, 2)


def write_gzip_bomb(out: IO[bytes], size: int, fill: bytes = b" ") -> None:
    """Write a gzip of `size` bytes of `fill`, streaming, in about size / 1000 bytes.

    One MiB is deflated once and its output repeated: a full flush ends it byte-aligned with an empty
    dictionary, so the copies are valid deflate blocks that each inflate to the same MiB.
    """
    chunk = fill * (CHUNK // len(fill))
    copies, rest = divmod(size, len(chunk))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    out.write(
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    )  # magic, deflate, no flags, mtime 0, max compression
    crc = 0
    for _ in range(copies):
        out.write(block)
        crc = zlib.crc32(chunk, crc)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    out.write(tail.compress(chunk[:rest]) + tail.flush())
    crc = zlib.crc32(chunk[:rest], crc)
    out.write(struct.pack("<II", crc, size & 0xFFFFFFFF))
