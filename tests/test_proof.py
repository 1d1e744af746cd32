"""Upload proofs: every upload is checked against what the store says it received, never assumed.

In-process moto (mock_aws) stands in for a store that checks nothing: it accepts a wrong CRC32 and a
wrong Content-MD5, and echoes the CRC32 it was sent. Bytes are corrupted between botocore and the
store by a `before-send` hook, as a faulty proxy or network would.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.stub import Stubber

from amp_luigi import aws, proof
from amp_luigi.errors import IntegrityError, StaleStateError
from amp_luigi.proof import Proof
from amp_luigi.records import read_marker
from amp_luigi.s3 import Bucket
from tests.conftest import MOCK_BUCKET as NAME
from tests.conftest import crc32_of

MiB = 1024 * 1024
PROBE = "p/_check/probe"


class Corrupter:
    """Flips one byte of the body of the n-th request of `operation` on its way to the store."""

    def __init__(self, client: Any, operation: str, nth: int = 1) -> None:
        self.operation, self.nth, self.seen, self.flipped = operation, nth, 0, 0
        client.meta.events.register_first(f"before-send.s3.{operation}", self)

    def __call__(self, request: Any, **_: Any) -> None:
        self.seen += 1
        if self.seen == self.nth:
            raw = request.body.read() if hasattr(request.body, "read") else request.body  # bytes -> BytesIO
            body = bytearray(raw)
            body[len(body) // 2] ^= 0x01
            request.body = bytes(body)
            self.flipped += 1


class Headers:
    """The integrity headers of every request, by operation."""

    def __init__(self, client: Any) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        client.meta.events.register("before-send.s3", self)

    def __call__(self, request: Any, event_name: str, **_: Any) -> None:
        wanted = {
            name.lower(): value.decode() if isinstance(value, bytes) else value
            for name, value in request.headers.items()
            if name.lower().startswith(("x-amz-checksum", "x-amz-sdk-checksum", "content-md5"))
        }
        self.sent.append((event_name.rsplit(".", 1)[-1], wanted))


def chunks(data: bytes, size: int = MiB) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def etag_client(mock_s3_client: Any) -> Any:
    """A client of the in-process mock configured as amp-luigi configures one for the etag proof."""
    client = boto3.client("s3", region_name="us-east-1", config=aws.client_config(3, 4, Proof.ETAG))
    client.meta.events.register_first("before-send.s3", lambda request, **_: _as_bytes(request))
    aws.send_no_checksums(client)
    return client


def _as_bytes(request: Any) -> None:
    if isinstance(request.body, bytearray):  # the mock's test client takes bytes only
        request.body = bytes(request.body)


@pytest.fixture
def etag_bucket(etag_client: Any) -> Bucket:
    return Bucket(etag_client, NAME, part_size=5 * MiB, proof=Proof.ETAG, probe_key=PROBE)


def keys(client: Any) -> list[str]:
    return [item["Key"] for item in client.list_objects_v2(Bucket=NAME).get("Contents", [])]


def test_auto_proves_by_checksum_on_aws_and_by_etag_on_any_other_endpoint() -> None:
    assert proof.resolve("auto", "") is Proof.CHECKSUM
    assert proof.resolve("auto", "https://s3.eu-west-1.amazonaws.com") is Proof.CHECKSUM
    assert proof.resolve("auto", "http://127.0.0.1:9000") is Proof.ETAG
    assert proof.resolve("auto", "https://storage.googleapis.com") is Proof.ETAG
    assert proof.resolve("none", "") is Proof.NONE


def test_under_the_etag_proof_requests_carry_content_md5_and_no_checksum_header(
    etag_bucket: Bucket, etag_client: Any
) -> None:
    headers = Headers(etag_client)
    body = b'{"event": 1}\n' * 1000
    etag = etag_bucket.upload("p/a.json", chunks(body), crc32_of(body), {})
    etag_bucket.write_json("p/_uploaded/m.json", {"date": "2024-03-01", "objects": []})
    etag_bucket.delete(["p/a.json"])

    assert etag.strip('"') == hashlib.md5(body).hexdigest()
    operations = [operation for operation, _ in headers.sent]
    assert operations == ["PutObject", "PutObject", "DeleteObjects"]
    for operation, sent in headers.sent:
        assert set(sent) == {"content-md5"}, (operation, sent)


@pytest.mark.parametrize(("size", "operation"), [(1000, "PutObject"), (12 * MiB, "UploadPart")])
def test_a_byte_changed_on_the_way_is_caught_by_the_etag_and_nothing_stays(
    etag_bucket: Bucket, etag_client: Any, size: int, operation: str
) -> None:
    corrupt = Corrupter(etag_client, operation, nth=2 if operation == "UploadPart" else 1)
    body = os.urandom(size)
    with pytest.raises(IntegrityError) as raised:
        etag_bucket.upload("p/2024-03-01/a.json", chunks(body), crc32_of(body), {})

    assert corrupt.flipped == 1
    message = str(raised.value)
    assert f"s3://{NAME}/p/2024-03-01/a.json" in message
    assert "not the MD5" in message and "Run again" in message
    if operation == "UploadPart":
        assert "part 2 of" in message
    assert keys(etag_client) == [], "no corrupt object is left in S3"
    assert etag_client.list_multipart_uploads(Bucket=NAME).get("Uploads", []) == []


def test_a_marker_changed_on_the_way_is_removed(etag_bucket: Bucket, etag_client: Any) -> None:
    Corrupter(etag_client, "PutObject")
    with pytest.raises(IntegrityError, match=re.escape(f"s3://{NAME}/p/_verified/2024-03-01.json")):
        etag_bucket.write_json("p/_verified/2024-03-01.json", {"date": "2024-03-01", "objects": []})
    assert keys(etag_client) == []


def test_a_store_that_accepts_a_wrong_checksum_is_refused_under_the_checksum_proof(
    mock_s3_client: Any,
) -> None:
    bucket = Bucket(mock_s3_client, NAME, proof=Proof.CHECKSUM, probe_key=PROBE)
    with pytest.raises(IntegrityError) as raised:
        bucket.upload("p/a.json", iter([b"x\n"]), crc32_of(b"x\n"), {})
    message = str(raised.value)
    assert "does not check checksums" in message and "upload_proof = etag" in message
    assert keys(mock_s3_client) == [], "the probe is removed and nothing was uploaded"


def stubbed_client() -> Any:
    return boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")


def test_a_store_that_refuses_a_wrong_checksum_is_probed_once_and_its_echo_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = stubbed_client()
    body = b"x\n"
    with Stubber(client) as stubber:
        stubber.add_client_error("put_object", service_error_code="BadDigest", http_status_code=400)
        stubber.add_response("put_object", {"ETag": '"e1"', "ChecksumCRC32": crc32_of(body)})
        stubber.add_response("put_object", {"ETag": '"e2"', "ChecksumCRC32": crc32_of(b"other")})
        stubber.add_response("delete_object", {})
        bucket = Bucket(client, "b", proof=Proof.CHECKSUM, probe_key=PROBE)
        assert bucket.upload("p/a.json", iter([body]), crc32_of(body), {}) == '"e1"'
        with pytest.raises(IntegrityError, match=r"answered CRC32 .* not .* as sent.*p/b\.json|p/b\.json"):
            bucket.upload("p/b.json", iter([body]), crc32_of(body), {})
        stubber.assert_no_pending_responses()


def test_a_refused_abort_does_not_hide_why_the_upload_failed(
    etag_bucket: Bucket, etag_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    Corrupter(etag_client, "UploadPart")

    def refuse(**_: Any) -> None:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "no"}}, "AbortMultipartUpload"
        )

    etag_client.abort_multipart_upload = refuse
    body = os.urandom(6 * MiB)
    with pytest.raises(IntegrityError, match="part 1 of"):
        etag_bucket.upload("p/a.json", chunks(body), crc32_of(body), {})
    assert "could not abort the multipart upload of" in caplog.text
    assert "lifecycle rule" in caplog.text


@pytest.mark.parametrize(
    "body", [b"1482\r\n{", b"", b'{"date": "2024-03-01"', b"[1, 2]", b'{"objects": 3}'], ids=repr
)
def test_a_damaged_marker_is_removed_with_its_name_and_read_as_none(
    etag_bucket: Bucket, etag_client: Any, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    key = "p/_verified/2024-03-01.json"
    etag_client.put_object(Bucket=NAME, Key=key, Body=body)
    if body != b'{"objects": 3}':
        with pytest.raises(StaleStateError, match=re.escape(f"s3://{NAME}/{key} is damaged")):
            etag_bucket.read_json(key)
    assert read_marker(etag_bucket, key) is None
    assert keys(etag_client) == []
    assert f"s3://{NAME}/{key}" in caplog.text and "removed" in caplog.text
