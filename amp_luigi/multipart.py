"""A multipart upload as one object (start, part, complete, abort), and the buffer that cuts a
stream of chunks into its parts.

Each part is proven by the store's answer (amp_luigi.proof) as it is sent, and the upload is
completed only if all the bytes together have the CRC32 extraction computed: what lands in S3 is
what was checked, end to end. At most one part per upload thread is held at a time, whatever the
object's size. amp_luigi.s3.Bucket decides between one PUT and this.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from amp_luigi import checksum
from amp_luigi.errors import ArchiveError
from amp_luigi.proof import Proof, Sent, digest, mismatch, multipart_mismatch, request_fields


class Bucket(Protocol):
    """What an upload needs of amp_luigi.s3.Bucket: its client, its proof, its requests with their
    errors translated, and its verdict on an answer."""

    client: Any
    proof: Proof

    def request(self, action: str, key: str, operation: Callable[..., Any], **kwargs: Any) -> Any: ...

    def prove(self, key: str, why: str | None, what: str, *, discard: bool = False) -> None: ...


def parts(chunks: Iterable[bytes], size: int) -> Iterator[bytes | bytearray]:
    """The bytes in parts of exactly `size` (the last one shorter).

    An object of one chunk is its own part, not copied. Any other part is allocated once at `size`
    and filled in place: a buffer grown chunk by chunk is copied whenever it moves, and every upload
    thread doing that at once kept those copies in the process's memory (a day of 24 MiB members
    peaked 30 MiB higher). Each part is handed to botocore as the buffer itself (it takes a bytearray
    as it takes bytes).
    """
    stream = iter(chunks)
    first = next(stream, b"")
    following = next(stream, None)
    if following is None and len(first) < size:
        yield first
        return
    part: bytearray | None = None
    filled = 0
    for chunk in itertools.chain((first,), () if following is None else (following,), stream):
        view = memoryview(chunk)
        while view:
            if part is None:
                part, filled = bytearray(size), 0
            taken = min(len(view), size - filled)
            part[filled : filled + taken] = view[:taken]
            filled += taken
            view = view[taken:]
            if filled == size:
                yield part
                part = None  # dropped before the next part is allocated
    if part is not None:
        del part[filled:]
        yield part


def same_crc32(key: str, found: str, expected: str) -> None:
    """The bytes about to be committed are the ones extraction checked, or ArchiveError."""
    if found != expected:
        raise ArchiveError(
            f"the bytes for {key} have CRC32 {found}, not {expected} as when they were "
            "extracted and checked: the staged member changed since"
        )


class MultipartUpload:
    """One multipart upload of `key` in `bucket`, its parts proven one by one."""

    def __init__(self, bucket: Bucket, key: str, upload_id: str) -> None:
        self.bucket, self.key, self.upload_id = bucket, key, upload_id
        self.sent: list[Sent] = []
        self.done: list[dict[str, Any]] = []
        self.crc32 = 0
        self.completed = False

    @classmethod
    def start(cls, bucket: Bucket, key: str, metadata: dict[str, str]) -> MultipartUpload:
        algorithm = {"ChecksumAlgorithm": "CRC32"} if bucket.proof.sends_checksums else {}
        answer = bucket.request(
            "upload", key, bucket.client.create_multipart_upload, Key=key, Metadata=metadata, **algorithm
        )
        return cls(bucket, key, answer["UploadId"])

    def part(self, body: bytes | bytearray) -> None:
        """Send the next part; IntegrityError when the answer proves other bytes (nothing committed)."""
        bucket, number = self.bucket, len(self.done) + 1
        self.crc32 = checksum.crc32(body, self.crc32)
        sent = digest(body, bucket.proof)
        answer = bucket.request(
            "upload",
            self.key,
            bucket.client.upload_part,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            **request_fields(sent, bucket.proof),
        )
        bucket.prove(self.key, mismatch(answer, sent, bucket.proof), f"part {number} of ")
        checksums = {"ChecksumCRC32": sent.crc32} if bucket.proof.sends_checksums else {}
        self.done.append({"PartNumber": number, "ETag": answer["ETag"], **checksums})
        self.sent.append(sent)

    def complete(self, crc32: str) -> str:
        """Commit the object if its bytes have `crc32`; returns the ETag. A completed object whose
        answer proves other bytes is removed again."""
        same_crc32(self.key, checksum.crc32_text(self.crc32), crc32)
        bucket = self.bucket
        answer = bucket.request(
            "upload",
            self.key,
            bucket.client.complete_multipart_upload,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.done},
        )
        self.completed = True  # nothing left to abort: a disproven object is removed instead
        bucket.prove(self.key, multipart_mismatch(answer, self.sent, bucket.proof), "", discard=True)
        return str(answer["ETag"])

    def abort(self) -> None:
        """An abandoned multipart upload is invisible but billed: never leave one behind."""
        if self.completed:
            return
        self.bucket.request(
            "abort",
            self.key,
            self.bucket.client.abort_multipart_upload,
            Key=self.key,
            UploadId=self.upload_id,
        )
