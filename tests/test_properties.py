"""Property-based tests (hypothesis) for the archive reader and the hour-range splitting."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import itertools
import json
import tempfile
import warnings
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amp_luigi.errors import ArchiveError
from amp_luigi.gzip_stream import inflate
from amp_luigi.hours import HOUR, HourRange
from amp_luigi.members import Limits, extract_archives
from tests.conftest import crc32_of

# derandomize: the same examples on every run, so CI is deterministic; the search is still broad.
FAST = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
events = st.dictionaries(st.text(max_size=10), json_values, max_size=4)


def gzip_streams(raw: bytes, cuts: list[int]) -> bytes:
    """`raw` as one or more concatenated gzip streams, split at `cuts` (Amplitude's members may be)."""
    points = sorted({min(max(cut, 0), len(raw)) for cut in cuts} | {0, len(raw)})
    pieces = [raw[a:b] for a, b in itertools.pairwise(points)] or [b""]
    return b"".join(gzip.compress(piece, mtime=0) for piece in pieces)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, offset = [], 0
    for size in sizes:
        if offset >= len(data):
            break
        chunks.append(data[offset : offset + size])
        offset += size
    if offset < len(data):
        chunks.append(data[offset:])
    return chunks


@FAST
@given(
    lines=st.lists(events, max_size=30),
    trailing_newline=st.booleans(),
    cuts=st.lists(st.integers(0, 5000), max_size=4),
    sizes=st.lists(st.integers(1, 300), max_size=40),
)
def test_inflating_any_chunking_of_any_gzip_split_gives_the_original_bytes(
    lines: list[dict], trailing_newline: bool, cuts: list[int], sizes: list[int]
) -> None:
    raw = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    if lines and trailing_newline:
        raw += b"\n"
    compressed = gzip_streams(raw, cuts)
    assert b"".join(inflate(chunked(compressed, sizes), "m.json.gz", Limits().max_inflate_ratio)) == raw


@settings(FAST, max_examples=20)
@given(
    members=st.lists(
        st.tuples(st.lists(events, max_size=20), st.lists(st.integers(0, 3000), max_size=3)),
        min_size=1,
        max_size=4,
    )
)
def test_extracted_counts_and_hashes_match_a_direct_computation(tmp_path: Path, members: list) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis may run one example twice
    archive = work / "export.zip"
    expected = {}
    with zipfile.ZipFile(archive, "w") as zf:
        for index, (lines, cuts) in enumerate(members):
            raw = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
            data = gzip_streams(raw, cuts)
            name = f"187520_2024-03-01_{index}#0.json.gz"
            zf.writestr(f"187520/{name}", data)
            expected[name] = (
                len(lines),
                len(data),
                crc32_of(data),
                len(raw),
                crc32_of(raw),
            )

    records = extract_archives([archive], work / "members", Limits())
    got = {r.name: (r.events, r.gz_bytes, r.gz_crc32, r.json_bytes, r.json_crc32) for r in records}
    assert got == expected
    assert [r.hour for r in records] == list(range(len(members)))
    for name, (_, _, gz_crc32, _, _) in expected.items():
        assert crc32_of((work / "members" / name).read_bytes()) == gz_crc32


def _zip_with(names: list[str], payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as zf:
        warnings.simplefilter("ignore")  # duplicate names are part of the hostile input
        for name in names:
            zf.writestr(name, payload)
    return buffer.getvalue()


hostile_archives = st.one_of(
    st.binary(max_size=2000),
    # real zips with arbitrary member names and bodies (valid gzip of arbitrary bytes or garbage)
    st.builds(
        _zip_with,
        st.lists(
            # zipfile itself cuts a name at NUL and then fails on the empty rest while writing.
            st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=30).map(
                lambda s: s + ".json.gz"
            ),
            min_size=1,
            max_size=4,
        ),
        st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: gzip.compress(b, mtime=0)),
    ),
    # valid zips with bytes flipped
    st.tuples(
        st.builds(
            _zip_with, st.just(["a/187520_2024-03-01_1#0.json.gz"]), st.just(gzip.compress(b'{"a":1}\n' * 20))
        ),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=5),
    ).map(lambda t: _flip(*t)),
)


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for offset, mask in flips:
        out[offset % len(out)] ^= mask
    return bytes(out)


@settings(FAST, max_examples=150)
@given(data=hostile_archives)
def test_arbitrary_archive_bytes_only_raise_archive_error_and_stay_in_the_destination(
    tmp_path: Path, data: bytes
) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "in.zip").write_bytes(data)
    dest = work / "deep" / "members"
    try:
        records = extract_archives([work / "in.zip"], dest, Limits(max_inflate_ratio=50, max_line_bytes=4096))
    except ArchiveError:
        records = None
    written = {path for path in work.rglob("*") if path.is_file()} - {work / "in.zip"}
    assert all(path.parent == dest for path in written), written
    if records is not None:
        assert {path.name for path in written} == {record.name for record in records}
    assert not any(path.name.endswith(".partial") for path in written)


# Hour ranges.

days = st.dates(min_value=dt.date(2012, 1, 1), max_value=dt.date(2100, 12, 31))


@FAST
@given(day=days, choices=st.lists(st.integers(0, 10_000), max_size=40))
def test_any_sequence_of_halvings_covers_every_hour_of_the_day_exactly_once(
    day: dt.date, choices: list[int]
) -> None:
    parts = [HourRange.day(day)]
    for choice in choices:
        splittable = [part for part in parts if part.hours > 1]
        if not splittable:
            break
        part = splittable[choice % len(splittable)]
        index = parts.index(part)
        parts[index : index + 1] = list(part.halves())
    covered = [part.start + i * HOUR for part in parts for i in range(part.hours)]
    start = dt.datetime.combine(day, dt.time())
    assert covered == [start + i * HOUR for i in range(24)], "every hour once, in order"
    for earlier, later in itertools.pairwise(parts):
        assert earlier.end < later.start, "inclusive ends never overlap"
        assert later.start - earlier.end == HOUR, "and leave no gap"
    assert sum(part.hours for part in parts) == 24


@FAST
@given(
    start=st.datetimes(min_value=dt.datetime(2012, 1, 1), max_value=dt.datetime(2100, 1, 1)),
    hours=st.integers(1, 24 * 40),
)
def test_a_range_round_trips_through_its_query_and_halves_exactly(start: dt.datetime, hours: int) -> None:
    start = start.replace(minute=0, second=0, microsecond=0)
    hour_range = HourRange(start, start + (hours - 1) * HOUR)
    query = hour_range.query()
    parsed = HourRange(*(dt.datetime.strptime(query[end], "%Y%m%dT%H") for end in ("start", "end")))
    assert parsed == hour_range
    assert hour_range.label() == f"{query['start']}-{query['end']}"
    if hours > 1:
        first, second = hour_range.halves()
        assert (first.start, second.end) == (hour_range.start, hour_range.end)
        assert first.end + HOUR == second.start
        assert abs(first.hours - second.hours) <= 1
