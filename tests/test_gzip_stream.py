"""Gzip streams as untrusted input: the original bytes from any chunking of any run of gzip members,
in bounded pieces; a corrupt, truncated or bomb-like stream refused naming the member."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_luigi.emulator.faults import write_gzip_bomb
from amp_luigi.errors import ArchiveError
from amp_luigi.gzip_stream import CHUNK, inflate, read_chunks
from amp_luigi.members import Limits

NAME = "187520_2024-03-01_7#0.json.gz"

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


def inflated(data: bytes, max_ratio: int = Limits().max_inflate_ratio) -> bytes:
    return b"".join(inflate(read_chunks(io.BytesIO(data)), NAME, max_ratio))


def ndjson(count: int, start: int = 0) -> bytes:
    return b"".join(
        json.dumps({"$insert_id": f"id-{i}", "n": i}).encode() + b"\n" for i in range(start, start + count)
    )


@settings(max_examples=40)
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


def test_an_empty_member_and_a_multi_stream_gzip_are_accepted() -> None:
    assert inflated(gzip.compress(b"")) == b""
    assert inflated(gzip.compress(ndjson(2)) + gzip.compress(ndjson(3, 2))) == ndjson(5)


def test_a_member_within_the_inflate_ratio_is_accepted() -> None:
    # Events with repeated properties compress well; an honest member must never look like a bomb.
    raw = b"".join(
        json.dumps({"$insert_id": hashlib.md5(str(i).encode()).hexdigest(), "p": {"k": "v" * 300}}).encode()
        + b"\n"
        for i in range(10_000)
    )
    data = gzip.compress(raw, compresslevel=9)
    assert len(raw) / len(data) > 10
    assert inflated(data) == raw


def test_output_comes_in_pieces_of_at_most_a_chunk_however_big_the_input_chunk() -> None:
    raw = b"\0" * (5 * CHUNK + 123)
    pieces = list(inflate([gzip.compress(raw)], NAME, 10_000))
    assert b"".join(pieces) == raw
    assert max(len(piece) for piece in pieces) <= CHUNK


def bad_crc(data: bytes) -> bytes:
    (crc,) = struct.unpack("<I", data[-8:-4])
    return data[:-8] + struct.pack("<I", crc ^ 0xFFFFFFFF) + data[-4:]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (bad_crc(gzip.compress(ndjson(4))), "gzip data is corrupt"),
        (gzip.compress(ndjson(3)) + bad_crc(gzip.compress(ndjson(4))), "gzip data is corrupt"),
        (gzip.compress(ndjson(2)) + b"trailing garbage", "gzip data is corrupt"),
        (b"plain text, not gzip", "gzip data is corrupt"),
        (gzip.compress(ndjson(40))[:-30], "gzip data ends early"),
        (gzip.compress(ndjson(3)) + gzip.compress(ndjson(3))[:5], "gzip data ends early"),
        (b"", "gzip data ends early"),
    ],
    ids=["bad crc", "bad crc in a later member", "trailing garbage", "not gzip", "truncated",
         "a second member cut in its header", "no bytes at all"],
)  # fmt: skip
def test_a_broken_stream_is_refused_naming_the_member(data: bytes, words: str) -> None:
    with pytest.raises(ArchiveError, match=f"^member {NAME}: {words}"):
        inflated(data)


def test_a_gzip_bomb_is_refused_early_in_bounded_memory() -> None:
    bomb = io.BytesIO()
    write_gzip_bomb(bomb, 200 * 1024 * 1024, b"\0")  # 200 MiB of zeros from about 200 kB
    assert bomb.tell() < 512 * 1024
    produced = 0
    tracemalloc.start()
    try:
        with pytest.raises(
            ArchiveError, match=rf"member {NAME} inflates more than 20 times .*max_inflate_ratio"
        ):
            for piece in inflate(read_chunks(io.BytesIO(bomb.getvalue()), 64 * 1024), NAME, 20):
                produced += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Refused within a chunk of 20 times what was read so far, never after the whole 200 MiB.
    assert produced <= 20 * bomb.tell() + CHUNK
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"


def test_chunks_are_read_until_the_end_in_pieces_of_the_size_asked() -> None:
    assert list(read_chunks(io.BytesIO(b"abcdefg"), 3)) == [b"abc", b"def", b"g"]
    assert list(read_chunks(io.BytesIO(b""))) == []
