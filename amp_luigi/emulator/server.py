"""An HTTP emulator of Amplitude's Export API on 127.0.0.1, with limits and faults a test can switch.

It answers `GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH` like Amplitude does (from its Export
API documentation): 401 for wrong Basic credentials, 403 for the wrong region, 400 for a malformed
range or one over the size limit ("Shorten the time ranges"), 404 for a range without data, 504 when
the export would time out, 429 over the project's concurrency limit, else 200 with the zip.
It waits like Amplitude too: `latency_seconds` before the first byte of every answer (Amplitude
builds the export first) and, with `body_mib_per_second`, the body at that rate chunk by chunk;
both waits end at once when the emulator stops.
It serves several projects at once (`add_project`), each with its own key pair, events and
concurrency slots, as Amplitude does: the key pair decides the project.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import io
import logging
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast
from urllib.parse import parse_qs, urlsplit

from amp_luigi.emulator.events import (
    Dataset,
    DatasetSpec,
    Hour,
    RangeTooLarge,
    hours_between,
    member_name,
    parse_hour,
)
from amp_luigi.emulator.faults import ARCHIVE_KINDS, Fault, FaultQueue, Gate, Match, write_faulty_zip

logger = logging.getLogger(__name__)

EXPORT_PATH = "/api/2/export"
CHUNK = 256 * 1024
MIB = 1024 * 1024
SPOOL_BYTES = 16 * 1024**2  # zips up to this size stay in memory, bigger ones go to a temporary file
MAX_CONCURRENT = 5  # Amplitude's concurrent export requests per project
MAX_RANGE_BYTES = 4 * 1000**3  # Amplitude refuses exports over 4 GB
TOO_LARGE = "Raw data files were too large. Shorten the time ranges and try again. The limit is 4GB."


@dataclass
class RequestRecord:
    """One request as the emulator saw it; `status` is None when the connection was dropped unanswered."""

    start: str | None
    end: str | None
    project_id: int | None = None  # the project whose keys the request carried; None when they were wrong
    status: int | None = None
    auth_ok: bool = False
    duration: float = 0.0
    bytes_sent: int = 0
    fault: str | None = None


@dataclass
class _Response:
    status: int
    body: IO[bytes]
    headers: dict[str, str] = field(default_factory=dict)


def _text(status: int, message: str, **headers: str) -> _Response:
    return _Response(
        status, io.BytesIO(message.encode()), {"Content-Type": "text/plain; charset=utf-8", **headers}
    )


def _spool() -> IO[bytes]:
    """A response body that stays in memory while small; `Emulator._send` closes it."""
    return cast(IO[bytes], tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: Emulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and bodies delimited by Content-Length

    def do_GET(self) -> None:
        cast(_Server, self.server).emulator._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line and status only: the Authorization header is never logged.
        logger.debug("%s " + format, self.address_string(), *args)


class _Events:
    """What a project's `dataset` holds, asked of the project (or of the emulator, for its first)."""

    dataset: Dataset

    def expected_events(self, start: Hour, end: Hour) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(member name, events) for every member an export of the range holds."""
        return self.dataset.expected_events(start, end)

    def member_names(self, start: Hour, end: Hour) -> list[str]:
        return self.dataset.member_names(start, end)

    def day_event_count(self, day: date) -> int:
        return self.dataset.day_event_count(day)


class EmulatedProject(_Events):
    """One project the emulator serves: its key pair, its events and its share of the concurrency limit."""

    def __init__(self, api_key: str, secret_key: str, dataset: Dataset) -> None:
        self.api_key = api_key
        self._secret_key = secret_key
        self.dataset = dataset
        self.in_flight = 0
        self.peak_in_flight = 0  # the most of its requests in flight at once since start or a reset

    def __repr__(self) -> str:
        return f"EmulatedProject(spec={self.dataset.spec!r})"  # no keys

    def owns(self, user: str, password: str) -> bool:
        same_user = hmac.compare_digest(user.encode(), self.api_key.encode())
        same_password = hmac.compare_digest(password.encode(), self._secret_key.encode())
        return same_user and same_password


class Emulator(_Events):
    """Amplitude's Export API, served from deterministic `Dataset`s: one project from the constructor's
    keys and dataset settings, more with `add_project`.

    Dataset settings (`project_id`, `seed`, `events_per_hour`, `padding_bytes`, ...) are the fields of
    `DatasetSpec`. The limits are plain attributes a test may change while the server runs; the
    concurrency limit holds per project, like Amplitude's; the faults queued are the server's, taken
    by whichever project's request matches first. The methods about events (`dataset`,
    `day_event_count`, ...) are the first project's.
    """

    def __init__(
        self,
        api_key: str = "test-api-key",
        secret_key: str = "test-secret-key",
        *,
        port: int = 0,
        latency_seconds: float = 0.0,
        body_mib_per_second: float | None = None,
        wait: Callable[[float], object] | None = None,
        max_concurrent: int = MAX_CONCURRENT,
        retry_after_seconds: int = 1,
        max_range_bytes: int | None = MAX_RANGE_BYTES,
        max_range_hours_before_timeout: int | None = None,
        forbidden: bool = False,
        cache_dir: str | Path | None = None,
        cache_bytes: int = 256 * 1024**2,
        **dataset_settings: Any,
    ) -> None:
        self.cache_dir, self.cache_bytes = cache_dir, cache_bytes
        self.projects = [
            EmulatedProject(
                api_key, secret_key, Dataset(DatasetSpec(**dataset_settings), cache_dir, cache_bytes)
            )
        ]
        self.port = port
        self.latency_seconds = latency_seconds
        self.body_mib_per_second = body_mib_per_second  # None: as fast as the socket takes it
        self.max_concurrent = max_concurrent
        self.retry_after_seconds = retry_after_seconds
        self.max_range_bytes = max_range_bytes
        self.max_range_hours_before_timeout = max_range_hours_before_timeout
        self.forbidden = forbidden
        self.faults = FaultQueue()
        self._gates: list[Gate] = []
        self._records: list[RequestRecord] = []
        self._in_flight = 0
        self._peak_in_flight = 0
        self._flight = threading.Condition()
        self._stopping = threading.Event()
        # Every wait (the latency, the body's rate) goes through here: stop() ends them all, and a
        # test may pass its own to see what was waited without waiting.
        self._wait = wait or self._stopping.wait
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Emulator(url={self.url!r}, projects={self.projects!r})"  # no keys, whatever is logged

    def add_project(self, api_key: str, secret_key: str, **dataset_settings: Any) -> EmulatedProject:
        """Serve one more project: requests with this key pair get its events (`project_id` must differ)."""
        project = EmulatedProject(
            api_key, secret_key, Dataset(DatasetSpec(**dataset_settings), self.cache_dir, self.cache_bytes)
        )
        taken = {each.dataset.spec.project_id for each in self.projects}
        if project.dataset.spec.project_id in taken or api_key in {each.api_key for each in self.projects}:
            raise ValueError("each emulated project needs its own project_id and api_key")
        self.projects.append(project)
        return project

    @property
    def dataset(self) -> Dataset:
        return self.projects[0].dataset

    @dataset.setter
    def dataset(self, dataset: Dataset) -> None:
        self.projects[0].dataset = dataset

    # Lifecycle

    def start(self) -> Emulator:
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.emulator = self
        self.port = self._server.server_address[1]
        # A short poll interval lets stop() return at once: tests start and stop many emulators.
        serve = functools.partial(self._server.serve_forever, poll_interval=0.02)
        self._thread = threading.Thread(target=serve, name="amplitude-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes requests waiting out a latency
        for gate in self._current_gates():
            gate.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{EXPORT_PATH}"

    # What tests switch and inspect

    def add_fault(self, kind: str, times: int | None = 1, match: Match = None, **opts: Any) -> Fault:
        """Queue a fault for the next `times` matching requests (None: all); see `faults` for kinds."""
        return self.faults.add(kind, times, match, **opts)

    def gate(self, times: int | None = 1, match: Match = None) -> Gate:
        """Hold the next `times` matching requests (None: all) until the test calls `release()` on the
        gate returned; `gate.wait_held()` returns once one is held (see faults.Gate)."""
        gate = Gate(times, match)
        with self._flight:
            self._gates.append(gate)
        return gate

    def _current_gates(self) -> list[Gate]:
        with self._flight:
            return list(self._gates)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._flight:
            return list(self._records)

    def reset_requests(self) -> None:
        with self._flight:
            self._records.clear()
            self._peak_in_flight = self._in_flight
            for project in self.projects:
                project.peak_in_flight = project.in_flight

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """The most requests in flight at once, of all projects, since start or `reset_requests`."""
        return self._peak_in_flight

    def wait_in_flight(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least `count` accepted requests are in flight; False on timeout."""
        with self._flight:
            return self._flight.wait_for(lambda: self._in_flight >= count, timeout)

    # Serving

    def _handle(self, handler: _Handler) -> None:
        query = parse_qs(urlsplit(handler.path).query)
        record = RequestRecord(query.get("start", [None])[0], query.get("end", [None])[0])
        exchange = _Exchange(handler, record, time.monotonic())
        try:
            self._serve(exchange)
        except (ConnectionError, TimeoutError):
            handler.close_connection = True  # the client went away mid-answer
        finally:
            self._finish(exchange)

    def _finish(self, exchange: _Exchange) -> None:
        """Record the request and free its concurrency slot, once, just before the client sees the end.

        So a test reading `requests`, or a client sending its next request, right after an answer never
        races the server thread.
        """
        if exchange.finished:
            return
        exchange.finished = True
        exchange.record.duration = time.monotonic() - exchange.began
        with self._flight:
            self._records.append(exchange.record)
            if exchange.entered and exchange.project is not None:
                self._in_flight -= 1
                exchange.project.in_flight -= 1
                self._flight.notify_all()

    def _serve(self, exchange: _Exchange) -> None:
        handler, record = exchange.handler, exchange.record
        if urlsplit(handler.path).path != EXPORT_PATH:
            return self._send(exchange, _text(404, "Not found"))
        project = exchange.project = self._project_of(handler.headers.get("Authorization", ""))
        record.auth_ok = project is not None
        record.project_id = project.dataset.spec.project_id if project is not None else None
        if project is None:
            return self._send(exchange, _text(401, "Invalid API key or secret key", **_CHALLENGE))
        if self.forbidden:
            message = (
                "Forbidden: this project lives in another region (EU projects: analytics.eu.amplitude.com)"
            )
            return self._send(exchange, _text(403, message))
        try:
            start, end = _parse_range(record.start, record.end)
        except ValueError as error:
            return self._send(exchange, _text(400, str(error)))
        exchange.entered = self._enter(project)
        if not exchange.entered:
            # Amplitude allows a handful of concurrent exports per project and refuses the rest.
            retry = {"Retry-After": str(self.retry_after_seconds)}
            return self._send(exchange, _text(429, "Too many concurrent requests", **retry))
        for gate in self._current_gates():
            gate.hold(start, end)
        fault = self.faults.take(start, end)
        record.fault = fault.kind if fault else None
        if self.latency_seconds > 0:
            self._wait(self.latency_seconds)
        if fault is None or fault.kind in ("slow_first_byte", *_CUTS):
            if fault is not None and fault.kind == "slow_first_byte":
                waiter = fault.opts.get("until") or self._stopping
                waiter.wait(fault.opts.get("seconds", 5.0))
            cut = fault if fault is not None and fault.kind in _CUTS else None
            self._send(exchange, self._export(project.dataset, start, end), cut)
        elif fault.kind == "drop":
            handler.close_connection = True
        else:
            self._send(exchange, self._faulty(project.dataset, fault, start, end))

    def _project_of(self, header: str) -> EmulatedProject | None:
        """The project whose key pair the Basic credentials are, else None."""
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        owners = [project for project in self.projects if project.owns(user, password)]
        return owners[0] if scheme.lower() == "basic" and owners else None

    def _enter(self, project: EmulatedProject) -> bool:
        with self._flight:
            if project.in_flight >= self.max_concurrent:
                return False
            self._in_flight += 1
            project.in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            project.peak_in_flight = max(project.peak_in_flight, project.in_flight)
            self._flight.notify_all()
            return True

    def _export(self, dataset: Dataset, start: datetime, end: datetime) -> _Response:
        timeout_hours = self.max_range_hours_before_timeout
        if timeout_hours is not None and len(hours_between(start, end)) > timeout_hours:
            return _text(504, "Gateway Timeout: the export took too long")
        if not dataset.has_data(start, end):
            return _text(404, "No data available for the given time range")
        body = _spool()
        try:
            dataset.write_zip(body, start, end, self.max_range_bytes)
        except RangeTooLarge:
            body.close()
            return _text(400, TOO_LARGE)
        return _Response(200, body, _ZIP_HEADERS)

    def _faulty(self, dataset: Dataset, fault: Fault, start: datetime, end: datetime) -> _Response:
        if fault.kind == "status":
            status = fault.opts.get("status", 500)
            return _Response(
                status, io.BytesIO(fault.opts.get("body", "").encode()), fault.opts.get("headers", {})
            )
        if fault.kind == "rate_limit":
            return _text(429, "Too many requests", **{"Retry-After": str(fault.opts.get("retry_after", 1))})
        assert fault.kind in ARCHIVE_KINDS, fault.kind
        body = _spool()
        spare = member_name(dataset.spec.project_id, start, 99)
        write_faulty_zip(fault, body, list(dataset.members(start, end)), spare)
        return _Response(200, body, _ZIP_HEADERS)

    def _send(self, exchange: _Exchange, response: _Response, cut: Fault | None = None) -> None:
        """Send the response; a `truncate` or `drop_mid_body` cut sends only part of the body, then closes."""
        handler, record = exchange.handler, exchange.record
        with response.body as body:
            length = body.seek(0, io.SEEK_END)
            body.seek(0)
            limit = int(length * cut.opts.get("fraction", 0.5)) if cut is not None else length
            record.status, record.bytes_sent = response.status, limit
            handler.send_response(response.status)
            handler.send_header("Content-Length", str(length))
            for name, value in response.headers.items():
                handler.send_header(name, value)
            if not limit:
                self._finish(exchange)
            handler.end_headers()
            sent = 0
            try:
                while sent < limit:
                    chunk = body.read(min(CHUNK, limit - sent))
                    if not chunk:
                        break
                    if self.body_mib_per_second:
                        self._wait(len(chunk) / (self.body_mib_per_second * MIB))
                    if sent + len(chunk) >= limit:
                        self._finish(exchange)
                    handler.wfile.write(chunk)
                    sent += len(chunk)
            finally:
                record.bytes_sent = sent
        if cut is not None:
            handler.close_connection = True
            if cut.kind == "drop_mid_body":
                # Closing with a zero linger time sends RST: the client sees "connection reset by peer".
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                handler.connection.close()


@dataclass
class _Exchange:
    handler: _Handler
    record: RequestRecord
    began: float
    project: EmulatedProject | None = None  # whose keys the request carried
    entered: bool = False  # holds one of the project's concurrency slots
    finished: bool = False


_CUTS = ("truncate", "drop_mid_body")
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Amplitude"'}
_ZIP_HEADERS = {"Content-Type": "application/zip"}


def _parse_range(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    if start is None or end is None:
        raise ValueError("Both start and end are required, as YYYYMMDDTHH (UTC, inclusive)")
    try:
        first, last = parse_hour(start), parse_hour(end)
    except ValueError as error:
        raise ValueError(f"Invalid start or end: {error}") from None
    if last < first:
        raise ValueError(f"Invalid range: end {end} is before start {start}")
    return first, last
