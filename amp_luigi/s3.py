"""S3, as the pipeline needs it: streamed, proven uploads, listings, markers; every request's errors
translated in one place.

Each upload request is proven by the store's answer (amp_luigi.proof), and an object is committed
only when its bytes have the CRC32 extraction computed. S3's answer, the ETag, is what a later
listing shows for an object nobody replaced since, so verification needs no request per object. botocore retries throttling and 5xx itself (adaptive mode); what it cannot fix (no bucket,
access denied) becomes a StorageError that names the bucket and the permission to grant.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import botocore.exceptions

from amp_luigi import checksum
from amp_luigi.errors import ArchiveError, FatalError, IntegrityError, StaleStateError, StorageError
from amp_luigi.proof import Proof, Sent, advice, digest, mismatch, multipart_mismatch, request_fields

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# The permission each operation needs, for error messages.
PERMISSIONS = {
    "upload": "s3:PutObject",
    "list": "s3:ListBucket",
    "read": "s3:GetObject",
    "delete": "s3:DeleteObject",
    "abort": "s3:AbortMultipartUpload",
}
# What a refused operation needs, by botocore's operation name: a completeness check that lists
# needs s3:ListBucket, whatever the stage calls it.
OPERATION_PERMISSIONS = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
}
# What a store that checks checksums answers to a request whose x-amz-checksum-crc32 is wrong.
CHECKSUM_REFUSED = {"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest"}
_PROBE_LOCK = threading.Lock()
_CHECKING_STORES: set[tuple[str, str]] = set()  # (endpoint, bucket) proven to refuse a wrong CRC32
_EXISTING_BUCKETS: set[tuple[str, str]] = set()  # (endpoint, bucket) found to exist
DENIED = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}


def error_code(error: botocore.exceptions.ClientError) -> str:
    """S3's error code ('NoSuchKey', 'AccessDenied'; a HEAD's bare status such as '404')."""
    return str(error.response.get("Error", {}).get("Code", ""))


def explain(error: botocore.exceptions.ClientError, bucket: str, action: str, key: str) -> FatalError:
    """An S3 error as a message that names the bucket and what to do."""
    code = error_code(error)
    where = f"s3://{bucket}/{key}"
    if code == "NoSuchBucket":
        return StorageError(
            f"S3 bucket {bucket!r} does not exist (NoSuchBucket): create it, or set AWS_BUCKET_NAME "
            "([storage] bucket) to an existing bucket."
        )
    if code in DENIED:
        operation = getattr(error, "operation_name", "")
        permission = OPERATION_PERMISSIONS.get(operation, PERMISSIONS[action])
        return StorageError(
            f"S3 denied {action} of {where} ({code} on {operation or 'request'}): "
            f"grant the credentials {permission} on bucket {bucket!r} (amp-luigi needs s3:PutObject, s3:ListBucket, s3:GetObject "
            "and s3:DeleteObject), or check ACCESS_KEY / the AWS profile in use."
        )
    return FatalError(f"S3 {action} of {where} failed: {code or error}")


class Listed(NamedTuple):
    size: int
    etag: str


class Bucket:
    """One bucket, through a boto3 client; safe to share between threads (boto3 clients are)."""

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        part_size: int = 16 * 1024 * 1024,
        threads: int = 4,
        proof: Proof = Proof.CHECKSUM,
        probe_key: str | None = None,
    ) -> None:
        """`probe_key` is where the checksum proof's probe goes; without one the store is trusted to check."""
        self.client = client
        self.name = name
        self.part_size = part_size
        self.threads = threads
        self.proof = proof
        self.probe_key = probe_key

    def _call(
        self, action: str, key: str, operation: Callable[..., Any], *, missing: Any = None, **kwargs: Any
    ) -> Any:
        """One request, its errors translated once for every caller; a missing key gives `missing`."""
        try:
            return operation(Bucket=self.name, **kwargs)
        except botocore.exceptions.ClientError as error:
            if missing is not None and error_code(error) in ("404", "NoSuchKey", "NotFound"):
                return missing
            raise explain(error, self.name, action, key) from error
        except botocore.exceptions.BotoCoreError as error:
            raise FatalError(
                f"S3 {action} of s3://{self.name}/{key} failed ({error}): check the AWS credentials "
                "(ACCESS_KEY / the AWS chain), the network and AWS_ENDPOINT_URL_S3."
            ) from error

    def exists(self, key: str) -> bool:
        """One HEAD request; a missing bucket is told apart from a missing key (a HEAD's 404 cannot)."""
        found = self._call("read", key, self.client.head_object, Key=key, missing={})
        if found:
            return True
        self._check_bucket()
        return False

    @property
    def _store(self) -> tuple[str, str]:
        """This bucket on this endpoint: what the process-wide findings about a store are kept by."""
        return (str(self.client.meta.endpoint_url), self.name)

    def _check_bucket(self) -> None:
        """Raises StorageError naming the bucket if it is missing (a listing's error has a body); once."""
        if self._store not in _EXISTING_BUCKETS:
            self._call("list", "", self.client.list_objects_v2, MaxKeys=1)
            _EXISTING_BUCKETS.add(self._store)

    def listing(self, prefix: str) -> dict[str, Listed]:
        """Every key under `prefix` with its size and ETag, in as few requests as S3 allows (1,000 a page)."""
        found: dict[str, Listed] = {}
        token: dict[str, str] = {}
        while True:
            page = self._call("list", prefix, self.client.list_objects_v2, Prefix=prefix, **token)
            found.update(
                {item["Key"]: Listed(item["Size"], item["ETag"]) for item in page.get("Contents", [])}
            )
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def upload(self, key: str, chunks: Iterable[bytes], crc32: str, metadata: dict[str, str]) -> str:
        """Stream `chunks` to `key` and return S3's ETag: one PUT under part_size, part_size parts if not.

        `crc32` is the object's CRC32 as extraction computed it. Every request is proven by the
        store's answer (see amp_luigi.proof), and the object is committed (the PUT sent, the
        multipart upload completed) only if all the bytes together have `crc32`: what lands in S3 is
        what was checked, end to end. A single PUT whose answer proves other bytes has already
        landed, so it is removed again. At most one part is held at a time, whatever the size: an
        object of part_size bytes or more is uploaded in parts as they are read, never peeked at.
        """
        parts = self._parts(chunks)
        first = next(parts, b"")
        if len(first) < self.part_size:  # the whole object
            sent = digest(first, self.proof)
            _same_crc32(key, sent.crc32, crc32)
            return self._put(key, first, sent, Metadata=metadata)
        head = [first]
        del first  # held by `head` only, so it is freed once uploaded
        self._check_store()
        upload = self._call(
            "upload",
            key,
            self.client.create_multipart_upload,
            Key=key,
            Metadata=metadata,
            **({"ChecksumAlgorithm": "CRC32"} if self.proof.sends_checksums else {}),
        )
        upload_id = upload["UploadId"]
        try:
            done, proven = [], []
            number = whole = 0
            # Not enumerate(): it would keep the previous part alive while the next one is built.
            for body in itertools.chain(_drain(head), parts):
                number += 1  # noqa: SIM113 - see above
                whole = checksum.crc32(body, whole)
                sent = digest(body, self.proof)
                part = self._call(
                    "upload",
                    key,
                    self.client.upload_part,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    **request_fields(sent, self.proof),
                )
                del body  # before the next part is built
                self._proven(key, part, mismatch(part, sent, self.proof), f"part {number} of ")
                checksums = {"ChecksumCRC32": sent.crc32} if self.proof.sends_checksums else {}
                done.append({"PartNumber": number, "ETag": part["ETag"], **checksums})
                proven.append(sent)
            _same_crc32(key, checksum.crc32_text(whole), crc32)
            answer = self._call(
                "upload",
                key,
                self.client.complete_multipart_upload,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
            )
        except BaseException:
            # An abandoned multipart upload is invisible but billed; never leave one behind.
            self._abort(key, upload_id)
            raise
        self._proven(key, answer, multipart_mismatch(answer, proven, self.proof), "", discard=True)
        return str(answer["ETag"])

    def _put(self, key: str, body: bytes | bytearray, sent: Sent, **fields: Any) -> str:
        """One proven PUT (a data object or a marker); returns the ETag."""
        self._check_store()
        answer = self._call(
            "upload",
            key,
            self.client.put_object,
            Key=key,
            Body=body,
            **fields,
            **request_fields(sent, self.proof),  # with the values given, botocore computes nothing
        )
        self._proven(key, answer, mismatch(answer, sent, self.proof), "", discard=True)
        return str(answer["ETag"])

    def _proven(self, key: str, answer: Any, why: str | None, what: str, *, discard: bool = False) -> None:
        """Raise IntegrityError naming `key` when `why` says the answer proves other bytes."""
        if why is None:
            return
        if discard:
            self._discard(key)
        raise IntegrityError(
            f"S3 did not receive the bytes sent for {what}s3://{self.name}/{key}: {why} "
            f"(upload_proof = {self.proof.value}); they were changed on the way. "
            + ("The object was removed. " if discard else "Nothing was committed. ")
            + "Run again to upload it anew. "
            + advice(self.proof)
        )

    def _check_store(self) -> None:
        """Under the checksum proof, prove once per process that this store refuses a wrong CRC32.

        An echoed checksum proves the bytes only where the store compares it (moto echoes a wrong
        one); a probe object sent with a deliberately wrong CRC32 must be refused (AWS: BadDigest).
        """
        if self.proof is not Proof.CHECKSUM or self.probe_key is None:
            return
        store = self._store
        with _PROBE_LOCK:
            if store in _CHECKING_STORES:
                return
            body = b"amp-luigi: a store that keeps this object does not check checksums\n"
            wrong = checksum.crc32_text(checksum.crc32(body, 0) ^ 1)
            try:
                self.client.put_object(
                    Bucket=self.name,
                    Key=self.probe_key,
                    Body=body,
                    ChecksumAlgorithm="CRC32",
                    ChecksumCRC32=wrong,
                )
            except botocore.exceptions.ClientError as error:
                if error_code(error) in CHECKSUM_REFUSED:
                    _CHECKING_STORES.add(store)
                    return
                raise explain(error, self.name, "upload", self.probe_key) from error
            self._discard(self.probe_key)
        raise IntegrityError(
            f"The S3 store at {store[0]} accepted an object sent with a wrong x-amz-checksum-crc32 "
            f"(probe s3://{self.name}/{self.probe_key}, removed again): it does not check checksums, so "
            "its answers prove nothing under [storage] upload_proof = checksum. Set upload_proof = etag "
            "(AMP_S3_UPLOAD_PROOF), or auto, which uses etag on every endpoint but AWS's."
        )

    def _abort(self, key: str, upload_id: str) -> None:
        """A refused abort (no s3:AbortMultipartUpload) must not hide why the upload failed."""
        self._best_effort(
            lambda: self.client.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=upload_id),
            f"could not abort the multipart upload of s3://{self.name}/{key}",
            "its parts stay stored (and billed) until a lifecycle rule for incomplete multipart uploads "
            "removes them",
        )

    def _discard(self, key: str) -> None:
        """Removal of an object that must not stay."""
        self._best_effort(
            lambda: self.client.delete_object(Bucket=self.name, Key=key),
            f"could not remove s3://{self.name}/{key}",
            "remove it by hand",
        )

    @staticmethod
    def _best_effort(call: Callable[[], object], failed: str, then: str) -> None:
        """A clean-up whose failure is logged, never raised: it must not replace the error in hand."""
        try:
            call()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            logger.warning("%s (%s): %s", failed, error, then)

    def _parts(self, chunks: Iterable[bytes]) -> Iterator[bytes | bytearray]:
        """The bytes in parts of exactly part_size (the last one shorter).

        An object of one chunk is its own part, not copied. Any other part is allocated once at
        part_size and filled in place: a buffer grown chunk by chunk is copied whenever it moves, and
        every upload thread doing that at once kept those copies in the process's memory (a day of
        24 MiB members peaked 30 MiB higher). Each part is handed to botocore as the buffer itself
        (it takes a bytearray as it takes bytes): one part per thread.
        """
        stream = iter(chunks)
        first = next(stream, b"")
        following = next(stream, None)
        if following is None and len(first) < self.part_size:
            yield first
            return
        size = self.part_size
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

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            answer = self._call("delete", keys[start], self.client.delete_objects, Delete={"Objects": batch})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StorageError(
                    f"S3 could not delete {first['Key']} ({first.get('Code')}): grant s3:DeleteObject "
                    f"on bucket {self.name!r}."
                )

    def abort_uploads(self, prefix: str) -> list[str]:
        """Abort the multipart uploads under `prefix` left open by a killed run; returns their keys.

        A process killed mid-upload never reaches its abort, and S3 bills the parts until a lifecycle
        rule or this removes them.
        """
        listing = self._call("list", prefix, self.client.list_multipart_uploads, Prefix=prefix)
        uploads = listing.get("Uploads", [])
        for upload in uploads:
            self._call(
                "abort",
                upload["Key"],
                self.client.abort_multipart_upload,
                Key=upload["Key"],
                UploadId=upload["UploadId"],
            )
        return [upload["Key"] for upload in uploads]

    def write_json(self, key: str, data: dict[str, Any]) -> None:
        """One proven PUT, atomic in S3: a reader sees the old marker or the new one, never half of one.

        The value is sent whole with its digest in a header, never as an aws-chunked stream with a
        trailing checksum (boto3's default over HTTPS), which stores without aws-chunked keep verbatim.
        """
        body = json.dumps(data, indent=1).encode()
        self._put(key, body, digest(body, self.proof), ContentType="application/json")

    def read_bytes(self, key: str, byte_range: str | None = None) -> bytes:
        """The object's bytes (`byte_range` as HTTP's Range, e.g. `bytes=-8`), read whole: small objects."""
        ranged = {"Range": byte_range} if byte_range else {}
        with self._call("read", key, self.client.get_object, Key=key, **ranged)["Body"] as body:
            return bytes(body.read())

    def download(self, key: str, dest: Path, chunk: int = 1024 * 1024) -> None:
        """The object into the file `dest`, one chunk at a time."""
        with self._call("read", key, self.client.get_object, Key=key)["Body"] as body, dest.open("wb") as out:
            for data in iter(lambda: body.read(chunk), b""):
                out.write(data)

    def read_json(self, key: str) -> dict[str, Any]:
        found = self.read_json_if_exists(key)
        if found is None:
            raise StorageError(f"s3://{self.name}/{key} does not exist")
        return found

    def read_json_if_exists(self, key: str) -> dict[str, Any] | None:
        """The JSON object at `key`, None when there is none; StaleStateError naming it when damaged."""
        answer = self._call("read", key, self.client.get_object, Key=key, missing={})
        if not answer:
            return None
        body = answer["Body"]
        with body:
            data = body.read()
        try:
            record = json.loads(data)
        except ValueError as error:  # JSONDecodeError, or bytes that are not UTF-8
            raise StaleStateError(
                f"s3://{self.name}/{key} is damaged: not JSON ({error}; it begins {data[:24]!r})"
            ) from error
        if not isinstance(record, dict):
            raise StaleStateError(f"s3://{self.name}/{key} is damaged: JSON, but not an object")
        return record

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """Apply `function` to `items` with `threads` requests in flight, keeping the order.

        On the first failure the items not yet started are cancelled: an AccessDenied or an exhausted
        retry budget would only repeat for every remaining object.
        """
        failures: list[BaseException] = []

        def guarded(item: T) -> R:
            if failures:  # no call starts after the first failure; those in flight finish
                raise _Skipped
            try:
                return function(item)
            except BaseException as error:
                failures.append(error)
                raise

        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="s3")
        try:
            return list(pool.map(guarded, items))
        except _Skipped:
            raise failures[0] from None  # a skipped item can come before the failed one in order
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class _Skipped(Exception):
    """An item not attempted because another one failed first."""


def _same_crc32(key: str, found: str, expected: str) -> None:
    if found != expected:
        raise ArchiveError(
            f"the bytes for {key} have CRC32 {found}, not {expected} as when they were "
            "extracted and checked: the staged member changed since"
        )


def _drain(parts: list[bytes | bytearray]) -> Iterator[bytes | bytearray]:
    """The parts, each dropped from the list as it is handed out, so it is freed once uploaded."""
    while parts:
        yield parts.pop(0)


def send_no_checksums(client: Any) -> None:
    """Make `client` send Content-MD5 instead of checksum headers where S3 requires an integrity header.

    botocore >= 1.36 sends a CRC32 (no Content-MD5) even with `request_checksum_calculation =
    when_required`, where an operation requires one (DeleteObjects); stores without checksum headers
    refuse it (MissingContentMD5, or the header itself). Only for the etag and none proofs.
    """
    client.meta.events.register("before-sign.s3.DeleteObjects", _content_md5_instead_of_checksums)


def _content_md5_instead_of_checksums(request: Any, **_: Any) -> None:
    for name in [
        name
        for name in request.headers
        if name.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum-"))
    ]:
        del request.headers[name]
    body = request.body if isinstance(request.body, bytes | bytearray) else b""
    request.headers["Content-MD5"] = base64.b64encode(
        hashlib.md5(body, usedforsecurity=False).digest()
    ).decode()
