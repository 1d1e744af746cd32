"""An object streamed into S3: a multipart upload as one object (start, part, complete, abort), and
the writer that cuts a stream of writes into its parts, or sends it as one PUT when it is smaller.

Each request is proven by the store's answer (amp_luigi.proof) as it is sent, and the object is
committed only if all its bytes together have the CRC32 they must have (the one extraction
computed, when known): what lands in S3 is what was checked, end to end. At most one part per
writer is held at a time, whatever the object's size, and nothing is visible under the key until
the writer is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from amp_luigi import checksum
from amp_luigi.errors import ArchiveError
from amp_luigi.proof import Proof, Sent, digest, mismatch, multipart_mismatch, request_fields


class Bucket(Protocol):
    """What an upload needs of amp_luigi.s3.Bucket: its client, part size and proof, its requests
    with their errors translated, its proven PUT, and its verdict on an answer."""

    client: Any
    name: str
    part_size: int
    proof: Proof

    def request(self, action: str, key: str, operation: Callable[..., Any], **kwargs: Any) -> Any: ...

    def put(self, key: str, body: bytes | bytearray, sent: Sent, **fields: Any) -> str: ...

    def check_store(self) -> None: ...

    def prove(self, key: str, why: str | None, what: str, *, discard: bool = False) -> None: ...

    def best_effort(self, call: Callable[[], object], failed: str, then: str) -> None: ...


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


class ObjectWriter:
    """An object written as a stream of `write()` calls (a download as it arrives, zipfile, a
    member as it is checked) and committed on a clean exit from `with`: one PUT if it stays under
    part_size, else a multipart upload of part_size parts, each sent as soon as it fills. The part
    is allocated once and filled in place: a buffer grown chunk by chunk is copied whenever it moves.

    With `crc32` the bytes must have it (the CRC32 extraction computed) or nothing is committed;
    without it, `crc32` after the commit is the one the bytes have. An exception inside `with`
    aborts the upload: nothing appears under the key, no part stays billed.
    """

    def __init__(self, bucket: Bucket, key: str, metadata: dict[str, str], crc32: str | None = None) -> None:
        self.bucket, self.key, self.metadata, self.expected = bucket, key, metadata, crc32
        self.size = 0
        self.etag = ""
        self.crc32 = ""
        self._part: bytearray | None = None
        self._filled = 0
        self._upload: MultipartUpload | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        written = len(view)
        size = self.bucket.part_size
        while view:
            if self._part is None:
                self._part, self._filled = bytearray(size), 0
            taken = min(len(view), size - self._filled)
            self._part[self._filled : self._filled + taken] = view[:taken]
            self._filled += taken
            view = view[taken:]
            if self._filled == size:
                self._send(self._part)
        self.size += written
        return written

    def tell(self) -> int:
        """The bytes written so far (zipfile asks, then writes without seeking)."""
        return self.size

    def flush(self) -> None:
        """Parts go out as they fill; nothing waits to be flushed."""

    def _send(self, part: bytearray) -> None:
        if self._upload is None:
            self.bucket.check_store()
            self._upload = MultipartUpload.start(self.bucket, self.key, self.metadata)
        self._upload.part(part)
        self._part = None  # dropped before the next part is allocated

    def _commit(self) -> None:
        last = self._part if self._part is not None else bytearray()
        del last[self._filled :]
        if self._upload is None:
            sent = digest(last, self.bucket.proof)
            same_crc32(self.key, sent.crc32, self.expected or sent.crc32)
            self.etag = self.bucket.put(self.key, last, sent, Metadata=self.metadata)
            self.crc32 = sent.crc32
            return
        if last:
            self._send(last)
        self.crc32 = checksum.crc32_text(self._upload.crc32)
        self.etag = self._upload.complete(self.expected or self.crc32)

    def _abort(self) -> None:
        """Best effort: its failure is logged, never raised over the error that made the abort."""
        if self._upload is not None:
            self.bucket.best_effort(
                self._upload.abort,
                f"could not abort the multipart upload of s3://{self.bucket.name}/{self.key}",
                "its parts stay stored (and billed) until a lifecycle rule for incomplete multipart "
                "uploads removes them",
            )

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is not None:
            self._abort()
            return
        try:
            self._commit()
        except BaseException:
            self._abort()
            raise
