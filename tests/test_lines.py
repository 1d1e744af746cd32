"""LineChecker's fast path (simdjson over each line's bytes) decides as the standard library alone."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amp_luigi.errors import ArchiveError
from amp_luigi.lines import LineChecker

# Lines simdjson refuses or does not take as an object, each decided by the standard library.
EDGES = [
    b'{"big":123456789012345678901234567890}',
    b'{"nan":NaN}',
    b' {"a":1} \r',
    b'{"a":"\\ud800"}',
    b"[1,2]",
    b"42",
    b"{",
    b'{"a":1} {"b":2}',
    b'{"a":1},{"b":2}',
    b"",
    b'{"a":"\xff"}',
]
EVENTS = [json.dumps({"event_type": "click", "n": n, "text": "x" * n}).encode() for n in range(0, 3000, 300)]


def stdlib_accepts(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def check(data: bytes, cuts: list[int]) -> int:
    checker = LineChecker("m.json.gz", 1024 * 1024)
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    for start, end in itertools.pairwise(bounds):
        checker.feed(data[start:end])
    checker.finish()
    return checker.events


@given(
    lines=st.lists(st.sampled_from(EVENTS + EDGES), min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
)
def test_any_lines_in_any_chunks_are_decided_as_json_loads_decides(
    lines: list[bytes], cuts: list[int]
) -> None:
    data = b"\n".join(lines) + b"\n"
    refused = [number for number, line in enumerate(lines, start=1) if not stdlib_accepts(line)]
    if not refused:
        assert check(data, cuts) == len(lines)
        return
    with pytest.raises(ArchiveError, match=f"line {refused[0]} "):
        check(data, cuts)
