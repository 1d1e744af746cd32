"""S3 storage with moto's in-process mock: uploads, listings, deletes and the errors a user must read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from amp_luigi.errors import ArchiveError, FatalError, StorageError
from amp_luigi.s3 import Bucket, Listed
from tests.conftest import MOCK_BUCKET as NAME
from tests.conftest import crc32_of

MiB = 1024 * 1024


@pytest.fixture
def s3(mock_s3_client: Any) -> Any:
    return mock_s3_client


@pytest.fixture
def bucket(s3: Any) -> Bucket:
    return Bucket(s3, NAME, part_size=5 * MiB, threads=4)


class Recorder:
    """The S3 operations a client sends and the CRC32 header of each, through botocore's event hooks."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        self.crc32s: list[str | None] = []
        client.meta.events.register("before-call.s3.*", self._record)
        client.meta.events.register("before-send.s3.*", self._sent)

    def _record(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def _sent(self, request: Any, **_: Any) -> None:
        value = request.headers.get("x-amz-checksum-crc32")
        self.crc32s.append(value.decode() if isinstance(value, bytes) else value)


def chunks(data: bytes, size: int = MiB) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_small_object_is_one_put_carrying_its_crc32(bucket: Bucket, s3: Any) -> None:
    calls = Recorder(s3)
    body = b'{"event": 1}\n' * 1000
    etag = bucket.upload("p/2024-03-01/a.json", chunks(body, 4096), crc32_of(body), {"events": "1000"})

    assert calls.calls == ["PutObject"]
    assert calls.crc32s == [crc32_of(body)], "S3 checks the CRC32 extraction computed, not one made now"
    head = s3.head_object(Bucket=NAME, Key="p/2024-03-01/a.json", ChecksumMode="ENABLED")
    assert head["Metadata"] == {"events": "1000"}
    assert head["ContentLength"] == len(body)
    assert head["ChecksumCRC32"] == crc32_of(body)
    assert s3.get_object(Bucket=NAME, Key="p/2024-03-01/a.json")["Body"].read() == body
    assert bucket.listing("p/") == {"p/2024-03-01/a.json": Listed(len(body), etag)}


def test_an_empty_object_is_uploaded(bucket: Bucket, s3: Any) -> None:
    bucket.upload("p/empty.json", iter([]), crc32_of(b""), {})
    assert s3.head_object(Bucket=NAME, Key="p/empty.json")["ContentLength"] == 0


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["put", "multipart"])
def test_bytes_that_differ_from_their_checked_crc32_are_never_committed(
    bucket: Bucket, s3: Any, size: int
) -> None:
    body = b"x" * size
    message = f"p/a.json have CRC32 {crc32_of(body)}, not {crc32_of(b'other')}"
    with pytest.raises(ArchiveError, match=re.escape(message)):  # base64 holds + and /
        bucket.upload("p/a.json", chunks(body), crc32_of(b"other"), {})
    assert "Contents" not in s3.list_objects_v2(Bucket=NAME)
    assert s3.list_multipart_uploads(Bucket=NAME).get("Uploads", []) == []


def test_a_rerun_overwrites_the_same_key_and_the_listing_shows_the_new_etag(bucket: Bucket) -> None:
    old = bucket.upload("p/a.json", iter([b"old\n"]), crc32_of(b"old\n"), {})
    new = bucket.upload("p/a.json", iter([b"new!\n"]), crc32_of(b"new!\n"), {})
    assert old != new
    assert bucket.listing("p/") == {"p/a.json": Listed(5, new)}


def test_listing_and_delete_handle_more_than_one_page_of_keys(bucket: Bucket, s3: Any) -> None:
    keys = [f"p/2024-03-01/{i:05}.json" for i in range(1003)]
    bucket.map(lambda key: s3.put_object(Bucket=NAME, Key=key, Body=b"x" * (len(key) % 7)), keys)
    s3.put_object(Bucket=NAME, Key="p/2024-03-02/other.json", Body=b"y")
    calls = Recorder(s3)

    found = bucket.listing("p/2024-03-01/")
    assert {key: listed.size for key, listed in found.items()} == {key: len(key) % 7 for key in keys}
    assert calls.calls == ["ListObjectsV2", "ListObjectsV2"], "S3 returns at most 1,000 keys a page"
    assert bucket.listing("p/nothing/") == {}

    calls.calls.clear()
    bucket.delete(keys)
    assert calls.calls == ["DeleteObjects", "DeleteObjects"], "S3 deletes at most 1,000 keys a request"
    assert list(bucket.listing("p/")) == ["p/2024-03-02/other.json"]
    bucket.delete([])


def test_read_json_and_map_keep_order(bucket: Bucket, s3: Any) -> None:
    s3.put_object(Bucket=NAME, Key="p/m.json", Body=b'{"date": "2024-03-01"}')
    assert bucket.read_json("p/m.json") == {"date": "2024-03-01"}
    assert bucket.map(lambda n: n * n, range(20)) == [n * n for n in range(20)]


# Errors retrying cannot fix name the bucket and what to grant


def test_a_missing_bucket_is_named(s3: Any) -> None:
    missing = Bucket(s3, "no-such-amp-bucket")
    for call in (
        lambda: missing.listing("p/"),
        lambda: missing.upload("p/a.json", iter([b"x"]), crc32_of(b"x"), {}),
    ):
        with pytest.raises(StorageError) as raised:
            call()
        message = str(raised.value)
        assert "'no-such-amp-bucket'" in message and "does not exist" in message
        assert "AWS_BUCKET_NAME" in message


def denied(client: Any, operation: str) -> Stubber:
    stubber = Stubber(client)
    stubber.add_client_error(operation, service_error_code="AccessDenied", http_status_code=403)
    return stubber


@pytest.mark.parametrize(
    ("operation", "call", "permission"),
    [
        ("list_objects_v2", lambda b: b.listing("p/2024-03-01/"), "s3:ListBucket"),
        ("put_object", lambda b: b.upload("p/a.json", iter([b"x"]), crc32_of(b"x"), {}), "s3:PutObject"),
        ("get_object", lambda b: b.read_json("p/a.json"), "s3:GetObject"),
        ("delete_objects", lambda b: b.delete(["p/a.json"]), "s3:DeleteObject"),
    ],
)
def test_access_denied_names_the_bucket_and_the_permission(
    operation: str, call: Any, permission: str
) -> None:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with denied(client, operation), pytest.raises(StorageError) as raised:
        call(Bucket(client, "locked-bucket"))
    message = str(raised.value)
    assert "'locked-bucket'" in message
    assert permission in message
    assert "AccessDenied" in message


def test_a_key_that_cannot_be_deleted_is_named() -> None:
    stubbed = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(stubbed) as stubber:
        stubber.add_response(
            "delete_objects",
            {"Errors": [{"Key": "p/a.json", "Code": "AccessDenied", "Message": "denied"}]},
        )
        with pytest.raises(StorageError, match=r"p/a\.json.*s3:DeleteObject.*'locked'"):
            Bucket(stubbed, "locked").delete(["p/a.json", "p/b.json"])


def test_other_client_errors_are_fatal_and_name_the_object() -> None:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(client) as stubber:
        stubber.add_client_error("get_object", service_error_code="SlowDown", http_status_code=503)
        with pytest.raises(FatalError) as raised:
            Bucket(client, "b").read_json("p/a.json")
    assert "SlowDown" in str(raised.value) and "s3://b/p/a.json" in str(raised.value)
