"""Bucket.upload holds one part at a time: parts are read as they are sent, never peeked at."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from amp_luigi.s3 import Bucket
from tests.conftest import MOCK_BUCKET as NAME
from tests.conftest import crc32_of

MiB = 1024 * 1024
PART = 5 * MiB


class Source:
    """Chunks of `data`, counting the bytes handed out so far."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.read = data, size, 0

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.size):
            chunk = self.data[start : start + self.size]
            self.read += len(chunk)
            yield chunk


@pytest.fixture
def bucket(mock_s3_client: Any) -> Bucket:
    return Bucket(mock_s3_client, NAME, part_size=PART, threads=1)


def sent_parts(client: Any, source: Source) -> list[tuple[int, int]]:
    """(part size, bytes the source had handed out) at each UploadPart request."""
    seen: list[tuple[int, int]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append((len(params["Body"]), source.read))

    client.meta.events.register("provide-client-params.s3.UploadPart", record)
    return seen


def test_each_part_is_sent_before_the_next_one_is_read(bucket: Bucket, mock_s3_client: Any) -> None:
    body = os.urandom(3 * PART + 12345)
    source = Source(body, 700_000)
    seen = sent_parts(mock_s3_client, source)

    etag = bucket.upload("p/big.json", source, crc32_of(body), {})

    assert [size for size, _read in seen] == [PART, PART, PART, 12345]
    # When part n goes out, the source has handed out part n and at most the chunk it ended in.
    for number, (_size, read) in enumerate(seen, start=1):
        assert read < number * PART + 700_000
    assert etag.endswith('-4"')
    assert mock_s3_client.get_object(Bucket=NAME, Key="p/big.json")["Body"].read() == body


def test_an_object_of_exactly_one_part_is_a_multipart_upload_of_one_part(
    bucket: Bucket, mock_s3_client: Any
) -> None:
    """Telling a PUT from a multipart upload would otherwise need the next part read first."""
    body = os.urandom(PART)
    source = Source(body, MiB)
    seen = sent_parts(mock_s3_client, source)

    etag = bucket.upload("p/one.json", source, crc32_of(body), {})

    assert seen == [(PART, PART)]
    assert etag.endswith('-1"')
    assert mock_s3_client.get_object(Bucket=NAME, Key="p/one.json")["Body"].read() == body


@pytest.mark.parametrize("chunk", [MiB, PART + 1], ids=["several chunks", "one chunk over a part"])
def test_an_object_just_over_a_part_has_a_last_part_of_what_is_left(
    bucket: Bucket, mock_s3_client: Any, chunk: int
) -> None:
    body = os.urandom(PART + 1)
    source = Source(body, chunk)
    seen = sent_parts(mock_s3_client, source)

    bucket.upload("p/over.json", source, crc32_of(body), {})

    assert [size for size, _read in seen] == [PART, 1]
    assert mock_s3_client.get_object(Bucket=NAME, Key="p/over.json")["Body"].read() == body


def test_a_one_chunk_object_is_one_put(bucket: Bucket, mock_s3_client: Any) -> None:
    body = os.urandom(PART - 1)
    source = Source(body, PART)
    seen = sent_parts(mock_s3_client, source)

    bucket.upload("p/small.json", source, crc32_of(body), {})

    assert seen == []
    assert mock_s3_client.get_object(Bucket=NAME, Key="p/small.json")["Body"].read() == body
