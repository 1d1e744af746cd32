"""NDJSON line checking: every line of a member must be one JSON object, one event.

simdjson validates an event several times faster than a parser that builds Python objects, but it
is stricter than the standard library (integers over 64 bits, NaN, lone surrogates): any line it
does not accept as an object goes to `json.loads`, which decides, so the same lines are accepted
either way.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, NoReturn

from amp_luigi.errors import ArchiveError


class LineChecker:
    """Counts events and proves every line is a JSON object; a last line without newline is fine."""

    def __init__(self, member: str, max_line: int) -> None:
        self.member = member
        self.max_line = max_line
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
                    self._fail(f"longer than {self.max_line} bytes")
                return
            self._check(memoryview(self._carry))
            self._carry = bytearray()
            start = end + 1
        start = self._check_lines(data, start)
        self._carry = bytearray(memoryview(data)[start:])
        if len(self._carry) > self.max_line:
            self._fail(f"longer than {self.max_line} bytes")

    def _check_lines(self, data: bytes, start: int) -> int:
        """Checks the complete lines of `data` from `start`; returns where the unfinished one begins.

        The common case, an event object simdjson accepts, costs no method call: real events are
        ~1-2 KB, so per-line overhead is most of the time. Any other line takes the exact path.
        """
        find, parse = data.find, self._parse
        event_type, limit = self._event_type, self.max_line
        passed = 0
        while (end := find(b"\n", start)) >= 0:
            # A line as bytes, copied: simdjson takes bytes directly but a memoryview through a slower
            # path, which cost 0.4 us more per 1.9 KB event than the copy (benchmarks/cpu.py).
            line = data[start:end]
            try:
                # The parsed document is a view into the parser, dropped before the next line.
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

    def finish(self) -> None:
        if self._carry:
            self._check(memoryview(self._carry))
            self._carry = bytearray()

    def _check(self, line: bytes | memoryview) -> None:
        if len(line) > self.max_line:
            self._fail(f"longer than {self.max_line} bytes")
        if not self._is_object(line):
            self._fail("is JSON but not an event object")
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
            self._fail(f"is not JSON ({error})")

    def _fail(self, why: str) -> NoReturn:
        """Every line before the one in hand passed, and each was one event: it is line events + 1."""
        raise ArchiveError(f"member {self.member}, line {self.events + 1} {why}")


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
