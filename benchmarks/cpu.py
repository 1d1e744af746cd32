"""Where a realistic day's client CPU goes, per stage of the data path, and what line checking could cost.

    .venv/bin/python benchmarks/cpu.py                 # ~20 MiB of realistic NDJSON, a few seconds
    .venv/bin/python benchmarks/cpu.py --mib 100 --repeat 5

In this process, single-threaded, on the emulator's realistic events (the day benchmark's default),
the best of `--repeat` timings (CPU time, not wall: other load only adds to it), per MiB of NDJSON
and per event:

- the stages amp-luigi runs over every byte: inflate (ISA-L), the two CRC32s, the line check
  (`lines.LineChecker`), the MD5 of the etag proof (every part, in the upload threads);
- the line check against its baseline (`ViewChecker`, the loop before issue 13) and against its
  floor: simdjson's parse of every line with no Python loop around it. LineChecker is proven to
  decide as the standard library alone does (`json.loads`, then "is it an object") on the day and
  on every line of `REFUSED` and `TRICKY_ACCEPTED`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amp_luigi.checksum import crc32
from amp_luigi.emulator.events import DatasetSpec, hour_lines
from amp_luigi.errors import ArchiveError
from amp_luigi.gzip_stream import CHUNK, inflate
from amp_luigi.lines import LineChecker, _simdjson
from amp_luigi.members import Limits

MIB = 1024 * 1024
NEWLINE = b"\n"
LIMITS = Limits()
# Lines LineChecker refuses or must send to the standard library: every candidate must agree.
REFUSED = [b"[1,2]", b"42", b'"text"', b"{", b'{"a":1} {"b":2}', b'{"a":1},{"b":2}', b"", b" ", b"nul"]
TRICKY_ACCEPTED = [
    b'{"big":123456789012345678901234567890}',
    b'{"nan":NaN}',
    b' {"a":1} ',
    b'{"a":"\\ud800"}',
]


class ViewChecker(LineChecker):
    """The line check as it was before issue 13: lines as memoryview slices of the chunk (no copy).

    The baseline the applied change is measured against. pysimdjson takes a memoryview through a
    slower path than bytes, which cost more than copying each line. Tried and lost as well (figures
    in docs/performance.md): a chunk at a time (split, then parse and type-check through `map` in C)
    and the same over 8-128 KiB slices of the chunk; the copies of `split` leave the cache.
    """

    def _check_lines(self, data: bytes, start: int) -> int:
        view, find, parse = memoryview(data), data.find, self._parse
        event_type, limit = self._event_type, self.max_line
        passed = 0
        while (end := find(b"\n", start)) >= 0:
            line = view[start:end]
            try:
                fine = parse is not None and end - start <= limit and isinstance(parse(line), event_type)
            except (ValueError, RuntimeError):
                fine = False
            if fine:
                passed += 1
            else:
                self.events += passed
                passed = 0
                self._check(line)
            start = end + 1
        self.events += passed
        return start


def realistic_ndjson(mib: float, noise: int) -> bytes:
    lines: list[str] = []
    spec = DatasetSpec(events_per_hour=4000, noise_bytes=noise)
    hour = dt.datetime(2024, 3, 1)
    while sum(map(len, lines)) < mib * MIB:
        lines += hour_lines(spec, hour)
        hour += dt.timedelta(hours=1)
    return ("\n".join(lines) + "\n").encode()


def cpu_time(function: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        function()
        best = min(best, time.process_time() - started)
    return best


def chunks(data: bytes) -> list[bytes]:
    return [data[n : n + CHUNK] for n in range(0, len(data), CHUNK)]


def check_with(cls: type[LineChecker], pieces: list[bytes]) -> int:
    checker = cls("bench.json.gz", LIMITS.max_line_bytes)
    for piece in pieces:
        checker.feed(piece)
    checker.finish()
    return checker.events


def verdict(cls: type[LineChecker], line: bytes) -> str:
    try:
        return f"events={check_with(cls, [line + NEWLINE])}"
    except ArchiveError as error:
        return f"refused: {str(error).split(' ', 4)[-1]}"


def stdlib_verdict(line: bytes) -> str:
    """What the standard library alone decides for one line: an object is one event."""
    try:
        accepted = isinstance(json.loads(line), dict)
    except ValueError:
        return "refused"
    return "events=1" if accepted else "refused"


def forked_clients() -> None:
    """What a task forked by `luigi --workers N` pays for its S3 client, with and without the session.

    settings._session is keyed on the process id, so every forked task builds a boto3 session (and
    loads S3's service model) again before its first request; a client from the session the parent
    already holds costs a few ms. Tiny days in a backfill pay this two or three times a day.
    """
    import os

    import boto3

    options = {"region_name": "us-east-1", "aws_access_key_id": "k", "aws_secret_access_key": "s"}
    session = boto3.session.Session()
    session.client("s3", **options)  # the parent has checked completeness: its session is loaded
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        started = time.process_time()
        boto3.session.Session().client("s3", **options)
        fresh = time.process_time() - started
        started = time.process_time()
        session.client("s3", **options)
        inherited = time.process_time() - started
        os.write(write, f"{fresh} {inherited}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    fresh, inherited = map(float, os.read(read, 100).split())
    print(
        f"\nS3 client in a forked task: a new session {fresh * 1000:.0f} ms CPU, "
        f"a client from the parent's session {inherited * 1000:.0f} ms CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=float, default=20)
    parser.add_argument("--noise", type=int, default=160)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = realistic_ndjson(args.mib, args.noise)
    events = data.count(b"\n")
    gz = gzip.compress(data, 6)
    pieces, gz_pieces = chunks(data), chunks(gz)
    lines, parse = data.splitlines(), _simdjson().Parser().parse
    mib = len(data) / MIB
    print(
        f"{mib:.0f} MiB of NDJSON, {events} events of {len(data) / events:.0f} bytes, gzip {len(data) / len(gz):.1f}:1; "
        f"CPU seconds, best of {args.repeat}, one thread\n"
    )
    _simdjson()  # its import is not a per-event cost

    def md5() -> None:
        digest = hashlib.md5(usedforsecurity=False)
        for piece in pieces:
            digest.update(piece)

    stages = {
        "inflate (ISA-L, gzip_stream.inflate)": lambda: sum(
            map(len, inflate(gz_pieces, "bench", LIMITS.max_inflate_ratio))
        ),
        "CRC32 of the gzip and of the NDJSON (checksum.crc32)": lambda: [
            crc32(p) for p in gz_pieces + pieces
        ],
        "line check (lines.LineChecker)": lambda: check_with(LineChecker, pieces),
        "MD5 of every part (upload_proof = etag)": md5,
        "line check, stdlib json.loads per line (for scale)": lambda: [
            json.loads(line) for line in data.splitlines()
        ],
        "baseline: ViewChecker (memoryview lines, before issue 13)": lambda: check_with(ViewChecker, pieces),
        "floor: simdjson's parse of every line alone, no Python loop": lambda: set(
            map(type, map(parse, lines))
        ),
    }
    print("| stage | CPU s | s per GiB | µs per event |")
    print("| --- | ---: | ---: | ---: |")
    timings = {}
    for name, function in stages.items():
        seconds = timings[name] = cpu_time(function, args.repeat)
        print(f"| {name} | {seconds:.3f} | {seconds / mib * 1024:.2f} | {seconds / events * 1e6:.2f} |")
    checker = timings["line check (lines.LineChecker)"]
    baseline = timings["baseline: ViewChecker (memoryview lines, before issue 13)"]
    floor = timings["floor: simdjson's parse of every line alone, no Python loop"]
    print(
        f"\nLineChecker: {baseline / checker:.2f}x less CPU per event than the baseline; "
        f"the parse alone would be {baseline / floor:.2f}x"
    )

    forked_clients()

    # LineChecker must decide as the standard library alone does.
    assert check_with(LineChecker, pieces) == check_with(ViewChecker, pieces) == events
    for line in REFUSED + TRICKY_ACCEPTED:
        assert verdict(LineChecker, line).split(":")[0] == stdlib_verdict(line), (
            line,
            verdict(LineChecker, line),
        )
        for context in ([line], [b'{"ok":1}', line, b'{"ok":2}']):
            text = b"\n".join(context)
            assert verdict(LineChecker, text) == verdict(ViewChecker, text), (line, text)
    print("LineChecker decides as the standard library on the day and on every refused and tricky line.")


if __name__ == "__main__":
    main()
