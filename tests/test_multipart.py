"""A multipart upload (start, part, complete, abort) and the writer that streams into it: parts of
exactly part_size, each sent before the next is read, every one proven, an upload never left open."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

from amp_luigi.multipart import MultipartUpload
from amp_luigi.s3 import Bucket, Listed
from tests.conftest import MOCK_BUCKET as NAME
from tests.conftest import crc32_of
from tests.test_s3 import MiB, Recorder, chunks

PART = 5 * MiB


@pytest.fixture
def s3(mock_s3_client: Any) -> Any:
    return mock_s3_client


@pytest.fixture
def bucket(s3: Any) -> Bucket:
    return Bucket(s3, NAME, part_size=PART, threads=4)


@pytest.mark.parametrize(
    ("writes", "puts", "parts"),
    [
        ([], [0], []),
        ([3], [3], []),
        ([2, 2, 2], [], [5, 1]),
        ([12], [], [5, 5, 2]),
        ([5, 0, 1], [], [5, 1]),
        ([2, 3, 5], [], [5, 5]),
    ],
)
def test_a_writer_sends_parts_of_part_size_but_the_last_or_one_put_under_a_part(
    bucket: Bucket, s3: Any, writes: list[int], puts: list[int], parts: list[int]
) -> None:
    """Whatever the writes' sizes (a zip's headers, a download's chunks): MiB below."""
    data = os.urandom(sum(writes) * MiB)
    bounds = list(itertools.accumulate((size * MiB for size in writes), initial=0))
    sent: dict[str, list[int]] = {"PutObject": [], "UploadPart": []}
    for operation, sizes in sent.items():
        s3.meta.events.register(
            f"provide-client-params.s3.{operation}",
            lambda params, sizes=sizes, **_: sizes.append(len(params["Body"]) // MiB),
        )
    with bucket.writer("p/written.json") as out:
        for start, end in itertools.pairwise(bounds):
            out.write(data[start:end])
    assert (sent["PutObject"], sent["UploadPart"]) == (puts, parts)
    assert s3.get_object(Bucket=NAME, Key="p/written.json")["Body"].read() == data
    assert out.crc32 == crc32_of(data) and out.size == len(data)


def test_a_writer_left_by_an_exception_commits_nothing_and_leaves_no_upload_open(
    bucket: Bucket, s3: Any
) -> None:
    with pytest.raises(OSError, match="connection lost"), bucket.writer("p/cut.zip") as out:
        out.write(os.urandom(6 * MiB))
        raise OSError("connection lost")
    assert s3.list_multipart_uploads(Bucket=NAME).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=NAME)


def test_an_open_upload_is_listed_and_aborted_and_a_completed_one_is_not_aborted(
    bucket: Bucket, s3: Any
) -> None:
    left = MultipartUpload.start(bucket, "p/left.json", {})
    assert [upload.key for upload in bucket.open_uploads("p/")] == ["p/left.json"]
    assert bucket.abort_uploads("p/") == ["p/left.json"]
    assert s3.list_multipart_uploads(Bucket=NAME).get("Uploads", []) == []

    body = os.urandom(PART)
    done = MultipartUpload.start(bucket, "p/done.json", {})
    done.part(body)
    etag = done.complete(crc32_of(body))
    done.abort()  # after complete: nothing to abort, the object stays
    assert left.upload_id != done.upload_id
    assert bucket.listing("p/") == {"p/done.json": Listed(PART, etag)}


def test_a_large_object_is_a_multipart_upload_of_part_size_parts(bucket: Bucket, s3: Any) -> None:
    calls = Recorder(s3)
    body = os.urandom(12 * MiB + 123)
    etag = bucket.upload("p/2024-03-01/big.json", chunks(body, 700_000), crc32_of(body), {})

    assert calls.calls == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    parts = [
        s3.head_object(Bucket=NAME, Key="p/2024-03-01/big.json", PartNumber=n)["ContentLength"]
        for n in (1, 2, 3)
    ]
    assert all(5 * MiB <= size < 5 * MiB + 700_000 for size in parts[:2]), parts
    assert sum(parts) == len(body)
    bounds = [0, parts[0], parts[0] + parts[1], len(body)]
    assert calls.crc32s[1:4] == [crc32_of(body[a:b]) for a, b in itertools.pairwise(bounds)]
    assert s3.get_object(Bucket=NAME, Key="p/2024-03-01/big.json")["Body"].read() == body
    assert etag.endswith('-3"')
    assert bucket.listing("p/") == {"p/2024-03-01/big.json": Listed(len(body), etag)}


def test_a_failed_multipart_upload_is_aborted(bucket: Bucket, s3: Any) -> None:
    def broken() -> Iterator[bytes]:
        yield os.urandom(6 * MiB)
        yield os.urandom(6 * MiB)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        bucket.upload("p/broken.json", broken(), "AAAAAA==", {})
    assert s3.list_multipart_uploads(Bucket=NAME).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=NAME)


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
def one_part_at_a_time(mock_s3_client: Any) -> Bucket:
    """One upload thread: each part sent before the next is read (Bucket.upload holds one part)."""
    return Bucket(mock_s3_client, NAME, part_size=PART, threads=1)


def sent_parts(client: Any, source: Source) -> list[tuple[int, int]]:
    """(part size, bytes the source had handed out) at each UploadPart request."""
    seen: list[tuple[int, int]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append((len(params["Body"]), source.read))

    client.meta.events.register("provide-client-params.s3.UploadPart", record)
    return seen


def test_each_part_is_sent_before_the_next_one_is_read(
    one_part_at_a_time: Bucket, mock_s3_client: Any
) -> None:
    body = os.urandom(3 * PART + 12345)
    source = Source(body, 700_000)
    seen = sent_parts(mock_s3_client, source)

    etag = one_part_at_a_time.upload("p/big.json", source, crc32_of(body), {})

    assert [size for size, _read in seen] == [PART, PART, PART, 12345]
    # When part n goes out, the source has handed out part n and at most the chunk it ended in.
    for number, (_size, read) in enumerate(seen, start=1):
        assert read < number * PART + 700_000
    assert etag.endswith('-4"')
    assert mock_s3_client.get_object(Bucket=NAME, Key="p/big.json")["Body"].read() == body


def test_an_object_of_exactly_one_part_is_a_multipart_upload_of_one_part(
    one_part_at_a_time: Bucket, mock_s3_client: Any
) -> None:
    """Telling a PUT from a multipart upload would otherwise need the next part read first."""
    body = os.urandom(PART)
    source = Source(body, MiB)
    seen = sent_parts(mock_s3_client, source)

    etag = one_part_at_a_time.upload("p/one.json", source, crc32_of(body), {})

    assert seen == [(PART, PART)]
    assert etag.endswith('-1"')
    assert mock_s3_client.get_object(Bucket=NAME, Key="p/one.json")["Body"].read() == body


@pytest.mark.parametrize("chunk", [MiB, PART + 1], ids=["several chunks", "one chunk over a part"])
def test_an_object_just_over_a_part_has_a_last_part_of_what_is_left(
    one_part_at_a_time: Bucket, mock_s3_client: Any, chunk: int
) -> None:
    body = os.urandom(PART + 1)
    source = Source(body, chunk)
    seen = sent_parts(mock_s3_client, source)

    one_part_at_a_time.upload("p/over.json", source, crc32_of(body), {})

    assert [size for size, _read in seen] == [PART, 1]
    assert mock_s3_client.get_object(Bucket=NAME, Key="p/over.json")["Body"].read() == body


def test_a_one_chunk_object_is_one_put(one_part_at_a_time: Bucket, mock_s3_client: Any) -> None:
    body = os.urandom(PART - 1)
    source = Source(body, PART)
    seen = sent_parts(mock_s3_client, source)

    one_part_at_a_time.upload("p/small.json", source, crc32_of(body), {})

    assert seen == []
    assert mock_s3_client.get_object(Bucket=NAME, Key="p/small.json")["Body"].read() == body
