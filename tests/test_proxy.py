"""The fault proxy itself: what it does not match passes byte for byte, and a flipped byte lands in S3.

The integrity tests trust the proxy to change exactly one byte of exactly one request; these prove
it does, on raw sockets (keep-alive framing, chunked bodies) and through boto3 against moto (a body
sent after `Expect: 100-continue`, a dropped connection that botocore retries).
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import pytest

from amp_luigi.testing.proxy import DELAY, DROP, FLIP, FaultProxy, Rule

REQUESTS = (
    b"PUT /bucket/day/2024-03-01/a.json HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
    b"POST /bucket/day?delete HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"
    b"GET /bucket/day/2024-03-01/a.json?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
)
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * 3


class Recorder:
    """A TCP server that keeps every byte it receives and answers once it has `expect` of them."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.received = bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            while len(self.received) < self.expect and (data := connection.recv(65536)):
                self.received += data
            connection.sendall(ANSWER)
            connection.recv(1)  # until the proxy closes

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=10)


def exchange(proxy: FaultProxy, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
        client.sendall(payload)
        answer = b""
        while len(answer) < len(ANSWER) and (data := client.recv(65536)):
            answer += data
    return answer


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder(len(REQUESTS))
    yield server
    server.close()


def test_requests_no_rule_matches_pass_byte_for_byte_on_a_keep_alive_connection(recorder: Recorder) -> None:
    with FaultProxy(("127.0.0.1", recorder.port)) as proxy:
        rule = proxy.add(Rule(FLIP, method="PUT", path="/2024-03-02/"))
        assert exchange(proxy, REQUESTS) == ANSWER
    assert bytes(recorder.received) == REQUESTS
    assert rule.applied == []
    seen = [(s.method, s.target, s.body_bytes, s.action) for s in proxy.requests]
    assert seen == [
        ("PUT", "/bucket/day/2024-03-01/a.json", 11, None),
        ("POST", "/bucket/day?delete", 11, None),
        ("GET", "/bucket/day/2024-03-01/a.json?x=1", 0, None),
    ]


def test_a_flip_changes_one_byte_of_the_matched_body_and_nothing_else(recorder: Recorder) -> None:
    with FaultProxy(("127.0.0.1", recorder.port)) as proxy:
        rule = proxy.add(Rule(FLIP, method="POST", query="delete", offset=7))
        assert exchange(proxy, REQUESTS) == ANSWER
    expected = REQUESTS.replace(b"6;ext=1\r\n world", b"6;ext=1\r\n wnrld")  # 'o' ^ 0x01, 8th content byte
    assert bytes(recorder.received) == expected
    assert rule.applied == ["/bucket/day?delete"]


@pytest.fixture
def moto(moto_endpoint: str) -> Iterator[tuple[FaultProxy, Any, Any, str]]:
    """A proxy in front of moto, a client through it (no checksums: moto must take what arrives),
    a client straight to moto, and a new bucket."""
    host, port = moto_endpoint.removeprefix("http://").rsplit(":", 1)

    def client(url: str, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=botocore.config.Config(**config),
        )

    bucket = f"proxy-test-{threading.get_ident()}-{id(object())}"[:60]
    with FaultProxy((host, int(port))) as proxy:
        direct = client(moto_endpoint)
        direct.create_bucket(Bucket=bucket)
        through = client(
            proxy.url,
            request_checksum_calculation="when_required",
            retries={"mode": "standard", "max_attempts": 3},
        )
        yield proxy, through, direct, bucket


def test_a_flipped_byte_lands_in_the_server_as_a_different_object(moto: tuple[Any, ...]) -> None:
    proxy, through, direct, bucket = moto
    body = bytes(range(256)) * 8192  # 2 MiB: botocore sends `Expect: 100-continue` and waits
    rule = proxy.add(Rule(FLIP, method="PUT", path="/2024-03-01/", path_excludes=("_uploaded",)))
    answer = through.put_object(Bucket=bucket, Key="p/2024-03-01/a.json", Body=body)
    stored = direct.get_object(Bucket=bucket, Key="p/2024-03-01/a.json")["Body"].read()
    assert len(stored) == len(body)
    assert [i for i in range(len(body)) if stored[i] != body[i]] == [len(body) // 2]
    assert answer["ETag"].strip('"') == hashlib.md5(stored).hexdigest() != hashlib.md5(body).hexdigest()
    assert rule.applied == [f"/{bucket}/p/2024-03-01/a.json"]

    through.put_object(Bucket=bucket, Key="p/2024-03-01/a.json", Body=body)  # the rule is spent
    assert direct.get_object(Bucket=bucket, Key="p/2024-03-01/a.json")["Body"].read() == body
    assert len(rule.applied) == 1
    assert [s.action for s in proxy.requests] == [FLIP, None]


def test_a_dropped_connection_is_retried_by_botocore_and_a_delay_only_delays(moto: tuple[Any, ...]) -> None:
    proxy, through, direct, bucket = moto
    direct.put_object(Bucket=bucket, Key="k", Body=b"data")
    drop = proxy.add(Rule(DROP, method="GET", path="/k"))
    delay = proxy.add(Rule(DELAY, method="GET", path="/k", seconds=0.05))
    assert through.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    assert drop.applied == [f"/{bucket}/k"] and delay.applied == [f"/{bucket}/k"]
    assert [s.action for s in proxy.requests] == [DROP, DELAY]


def test_a_rule_with_nothing_to_flip_stays_armed(moto: tuple[Any, ...]) -> None:
    proxy, through, direct, bucket = moto
    rule = proxy.add(Rule(FLIP, method="PUT", path="/e"))
    through.put_object(Bucket=bucket, Key="e/empty", Body=b"")
    assert rule.applied == []
    through.put_object(Bucket=bucket, Key="e/full", Body=b"abc")
    assert direct.get_object(Bucket=bucket, Key="e/full")["Body"].read() == b"acc"
    assert rule.applied == [f"/{bucket}/e/full"]
