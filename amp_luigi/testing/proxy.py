"""A TCP proxy between an S3 client and a plain-HTTP S3 server that corrupts, drops or delays one request.

A checksum that only the client and the server compute proves nothing until something on the way
changes the bytes. This proxy is that something: a rule chosen by the test picks a request by its
method, its path and its query (e.g. the first PUT under `/2024-03-01/` that is not a marker, or one
UploadPart: `partNumber=` in the query) and flips one byte of its body, closes the connection
instead of forwarding it, or holds it for a while. Everything it does not match passes byte for
byte. Rules count what they did, so a test can assert that the fault actually happened.

It reads the client's side as HTTP/1.1 (request line, headers, then a body framed by Content-Length
or chunked transfer coding, request after request on a keep-alive connection) and forwards the
server's side raw: an interim `100 Continue` (botocore sends `Expect: 100-continue` with larger
bodies) reaches the client untouched, and the body follows only once the client sends it. A request
the server refuses before its body (a final answer to `Expect: 100-continue`) is not followed on
that connection; botocore opens a new one. Plain HTTP only: TLS would hide the bytes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from amp_luigi.testing.local import free_port

MAX_HEADER_BYTES = 64 * 1024
FLIP, DROP, DELAY = "flip", "drop", "delay"


@dataclass
class Rule:
    """Act (`flip`, `drop` or `delay`) on the next `times` requests that match; count what was done.

    A request matches when its method is `method`, its path (before `?`) contains `path` and none of
    `path_excludes`, and its query contains `query` (when given) and none of `query_excludes`.
    `flip` XORs the body byte at `offset` (default: the middle) with 0x01; a request without a body
    is left alone and not counted. `delay` holds the request `seconds` before forwarding it.
    """

    action: str
    method: str = "PUT"
    path: str = ""
    path_excludes: tuple[str, ...] = ()
    query: str | None = None
    query_excludes: tuple[str, ...] = ()
    times: int = 1
    offset: int | None = None
    seconds: float = 0.0
    applied: list[str] = field(default_factory=list)  # the request targets acted on, in order

    def __post_init__(self) -> None:
        if self.action not in (FLIP, DROP, DELAY):
            raise ValueError(f"unknown action {self.action!r}: one of {FLIP}, {DROP}, {DELAY}")

    def matches(self, method: str, target: str) -> bool:
        path, _, query = target.partition("?")
        return (
            method == self.method
            and self.path in path
            and not any(part in path for part in self.path_excludes)
            and (self.query is None or self.query in query)
            and not any(part in query for part in self.query_excludes)
        )


@dataclass(frozen=True)
class Seen:
    """One request as the proxy read it."""

    method: str
    target: str
    body_bytes: int
    action: str | None  # what a rule did to it, if anything


class FaultProxy:
    """Listens on a free loopback port and forwards to `upstream` (host, port) under the rules given."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Forget the rules (and what they did) and the requests seen: everything passes from now on."""
        with self._lock:
            self.rules.clear()
            self.requests.clear()

    def start(self) -> FaultProxy:
        self._stopping.clear()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = free_port()
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._spawn(self._accept, "proxy-accept")
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            _close(self._listener)  # shutdown() first: close() alone does not wake accept() on Linux
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                _close(sock)
            self._sockets.clear()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _accept(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets |= {client, server}
            self._spawn(self._pump, "proxy-response", server, client)
            self._spawn(self._requests, "proxy-request", client, server)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """The server's answers, raw: interim 100 Continue and final responses alike."""
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._end(source, sink)

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        reader = _Reader(client)
        try:
            while True:
                head = reader.until(b"\r\n\r\n", MAX_HEADER_BYTES)
                if head is None:
                    return
                method, target, headers = _parse_head(head)
                rule = self._take(method, target)
                action = rule.action if rule else None
                if action == DROP:
                    self._record(method, target, 0, action)
                    return  # closes both sides: the client sees the connection end without an answer
                if rule is not None and action == DELAY and self._stopping.wait(rule.seconds):
                    return
                server.sendall(head)
                flip = rule if action == FLIP else None
                length, flipped = self._forward_body(reader, server, headers, flip)
                if flip is not None and not flipped:
                    with self._lock:  # no byte to flip: the rule stays armed for the next match
                        flip.applied.remove(target)
                    action = None
                self._record(method, target, length, action)
        except (OSError, ValueError):
            return
        finally:
            self._end(client, server)

    def _forward_body(
        self, reader: _Reader, server: socket.socket, headers: dict[str, str], flip: Rule | None
    ) -> tuple[int, bool]:
        """Forward one request body as it arrives, flipping `flip`'s byte in passing.

        Returns the body's length (without chunk framing) and whether a byte was flipped.
        """
        position = 0
        where: int | None = None
        if flip is not None:
            where = flip.offset
            if where is None:  # the middle; with chunked coding the length is unknown: the first byte
                chunked = "chunked" in headers.get("transfer-encoding", "").lower()
                where = 0 if chunked else int(headers.get("content-length", "0") or 0) // 2
        flipped = False
        for piece, framing in _body(reader, headers):
            if framing:
                server.sendall(piece)
                continue
            if where is not None and position <= where < position + len(piece):
                changed = bytearray(piece)
                changed[where - position] ^= 0x01
                piece, flipped = bytes(changed), True
            position += len(piece)
            server.sendall(piece)
        return position, flipped

    def _take(self, method: str, target: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if len(rule.applied) < rule.times and rule.matches(method, target):
                    # Counted at once, under the lock: concurrent connections never share a fault.
                    rule.applied.append(target)
                    return rule
        return None

    def _record(self, method: str, target: str, length: int, action: str | None) -> None:
        with self._lock:
            self.requests.append(Seen(method, target, length, action))

    def _end(self, *sockets: socket.socket) -> None:
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)
                _close(sock)


class _Reader:
    """Buffered reads from a socket: up to a delimiter, or a number of bytes as they arrive."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def until(self, delimiter: bytes, limit: int) -> bytes | None:
        """Bytes up to and including `delimiter`; None if the peer closed before sending any."""
        while (end := self.buffer.find(delimiter)) < 0:
            if len(self.buffer) > limit:
                raise ValueError("header block too long")
            if not self._fill():
                if self.buffer:
                    raise ValueError("connection closed inside a request head")
                return None
        end += len(delimiter)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    def some(self, most: int) -> bytes:
        """At least one and at most `most` bytes, without waiting for more than one read."""
        if not self.buffer and not self._fill():
            raise ValueError("connection closed inside a request body")
        data = bytes(self.buffer[:most])
        del self.buffer[:most]
        return data


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _body(reader: _Reader, headers: dict[str, str]) -> Iterator[tuple[bytes, bool]]:
    """The body's bytes as they arrive, each with whether it is chunk framing rather than content."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = reader.until(b"\r\n", MAX_HEADER_BYTES)
            if line is None:
                raise ValueError("connection closed inside a chunked body")
            yield line, True
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (trailer := reader.until(b"\r\n", MAX_HEADER_BYTES)) not in (None, b"\r\n"):
                    yield trailer, True
                yield b"\r\n", True
                return
            yield from _exactly(reader, size)
            end = reader.until(b"\r\n", MAX_HEADER_BYTES)
            yield end or b"", True
    else:
        yield from _exactly(reader, int(headers.get("content-length", "0") or 0))


def _exactly(reader: _Reader, size: int) -> Iterator[tuple[bytes, bool]]:
    while size > 0:
        piece = reader.some(min(size, 65536))
        size -= len(piece)
        yield piece, False


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
