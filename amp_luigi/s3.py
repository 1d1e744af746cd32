"""S3, as the pipeline needs it: the one seam every request goes through (`Bucket.request`, its errors
translated once), streamed and proven uploads, listings, markers.

Each upload request is proven by the store's answer (amp_luigi.proof), and an object is committed
only when its bytes have the CRC32 extraction computed (a large one through amp_luigi.multipart).
S3's answer, the ETag, is what a later listing shows for an object nobody replaced since, so
verification needs no request per object. botocore retries throttling and 5xx itself (adaptive
mode); what it cannot fix (no bucket, access denied) becomes a StorageError that names the bucket
and the permission to grant.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import botocore.exceptions

from amp_luigi import checksum
from amp_luigi.errors import AmpLuigiError, FatalError, IntegrityError, StaleStateError, StorageError
from amp_luigi.multipart import MultipartUpload, ObjectWriter
from amp_luigi.proof import Proof, Sent, advice, digest, mismatch, request_fields

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


@dataclass
class StoreFacts:
    """What a process has learnt about one store (one client's endpoint), so each fact costs one
    request per process: the buckets found to exist, the buckets proven to refuse a wrong CRC32."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    existing: set[str] = field(default_factory=set)
    checking: set[str] = field(default_factory=set)


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
        facts: StoreFacts | None = None,
    ) -> None:
        """`probe_key` is where the checksum proof's probe goes; without one the store is trusted to
        check. `facts` is what the process knows of the store already (amp_luigi.aws keeps one per client)."""
        self.client = client
        self.name = name
        self.part_size = part_size
        self.threads = threads
        self.proof = proof
        self.probe_key = probe_key
        self.facts = facts or StoreFacts()

    def request(
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
        if self.head(key) is not None:
            return True
        self._check_bucket()
        return False

    def head(self, key: str) -> Listed | None:
        """The object's size and ETag from one HEAD, None when there is none."""
        found = self.request("read", key, self.client.head_object, Key=key, missing={})
        return Listed(found["ContentLength"], found["ETag"]) if found else None

    def read_from(self, key: str, start: int, end: int) -> tuple[Any, str]:
        """Bytes `start` to `end` (exclusive) of the object as a stream, and the ETag of the object they
        come from (a reader that must see one version of it compares)."""
        answer = self.request("read", key, self.client.get_object, Key=key, Range=f"bytes={start}-{end - 1}")
        return answer["Body"], str(answer["ETag"])

    def _check_bucket(self) -> None:
        """Raises StorageError naming the bucket if it is missing (a listing's error has a body); once."""
        if self.name not in self.facts.existing:
            self.request("list", "", self.client.list_objects_v2, MaxKeys=1)
            self.facts.existing.add(self.name)

    def listing(self, prefix: str) -> dict[str, Listed]:
        """Every key under `prefix` with its size and ETag, in as few requests as S3 allows (1,000 a page)."""
        return {item["Key"]: Listed(item["Size"], item["ETag"]) for item in self._listed(prefix)}

    def modified(self, prefix: str) -> dict[str, dt.datetime]:
        """Every key under `prefix` with the time it was written (aware, UTC)."""
        return {item["Key"]: item["LastModified"] for item in self._listed(prefix)}

    def _listed(self, prefix: str) -> Iterator[dict[str, Any]]:
        token: dict[str, str] = {}
        while True:
            page = self.request("list", prefix, self.client.list_objects_v2, Prefix=prefix, **token)
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def upload(self, key: str, chunks: Iterable[bytes], crc32: str, metadata: dict[str, str]) -> str:
        """Stream `chunks` to `key` and return S3's ETag (amp_luigi.multipart.ObjectWriter: one PUT
        under part_size, else a multipart upload of part_size parts as they are read).

        `crc32` is the object's CRC32 as extraction computed it: the object is committed only if
        its bytes have it, and every request is proven by the store's answer (amp_luigi.proof). A
        single PUT whose answer proves other bytes has already landed, so it is removed again.
        """
        with self.writer(key, metadata, crc32) as out:
            for chunk in chunks:
                out.write(chunk)
        return out.etag

    def writer(
        self, key: str, metadata: dict[str, str] | None = None, crc32: str | None = None
    ) -> ObjectWriter:
        """An object written as a stream and committed when its `with` ends cleanly (see ObjectWriter)."""
        return ObjectWriter(self, key, metadata or {}, crc32)

    def put(self, key: str, body: bytes | bytearray, sent: Sent, **fields: Any) -> str:
        """One proven PUT (a data object or a marker); returns the ETag."""
        self.check_store()
        answer = self.request(
            "upload",
            key,
            self.client.put_object,
            Key=key,
            Body=body,
            **fields,
            **request_fields(sent, self.proof),  # with the values given, botocore computes nothing
        )
        self.prove(key, mismatch(answer, sent, self.proof), "", discard=True)
        return str(answer["ETag"])

    def prove(self, key: str, why: str | None, what: str, *, discard: bool = False) -> None:
        """Raise IntegrityError naming `key` when `why` says the store's answer proves other bytes;
        with `discard` the object landed already and is removed."""
        if why is None:
            return
        if discard:
            self._remove(key)
        raise IntegrityError(
            f"S3 did not receive the bytes sent for {what}s3://{self.name}/{key}: {why} "
            f"(upload_proof = {self.proof.value}); they were changed on the way. "
            + ("The object was removed. " if discard else "Nothing was committed. ")
            + "Run again to upload it anew. "
            + advice(self.proof)
        )

    def check_store(self) -> None:
        """Under the checksum proof, prove once per process that this store refuses a wrong CRC32.

        An echoed checksum proves the bytes only where the store compares it (moto echoes a wrong
        one); a probe object sent with a deliberately wrong CRC32 must be refused (AWS: BadDigest).
        """
        if self.proof is not Proof.CHECKSUM or self.probe_key is None:
            return
        with self.facts.lock:
            if self.name in self.facts.checking:
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
                    self.facts.checking.add(self.name)
                    return
                raise explain(error, self.name, "upload", self.probe_key) from error
            self._remove(self.probe_key)
        raise IntegrityError(
            f"The S3 store at {self.client.meta.endpoint_url} accepted an object sent with a wrong x-amz-checksum-crc32 "
            f"(probe s3://{self.name}/{self.probe_key}, removed again): it does not check checksums, so "
            "its answers prove nothing under [storage] upload_proof = checksum. Set upload_proof = etag "
            "(AMP_S3_UPLOAD_PROOF), or auto, which uses etag on every endpoint but AWS's."
        )

    def _remove(self, key: str) -> None:
        """Removal of an object that must not stay, whose failure must not hide why."""
        self.best_effort(
            lambda: self.request("delete", key, self.client.delete_object, Key=key),
            f"could not remove s3://{self.name}/{key}",
            "remove it by hand",
        )

    @staticmethod
    def best_effort(call: Callable[[], object], failed: str, then: str) -> None:
        """A clean-up whose failure is logged, never raised: it must not replace the error in hand."""
        try:
            call()
        except AmpLuigiError as error:
            logger.warning("%s (%s): %s", failed, error, then)

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            answer = self.request(
                "delete", keys[start], self.client.delete_objects, Delete={"Objects": batch}
            )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StorageError(
                    f"S3 could not delete {first['Key']} ({first.get('Code')}): grant s3:DeleteObject "
                    f"on bucket {self.name!r}."
                )

    def open_uploads(self, prefix: str) -> list[MultipartUpload]:
        """The multipart uploads under `prefix` that were started and never completed nor aborted."""
        listing = self.request("list", prefix, self.client.list_multipart_uploads, Prefix=prefix)
        return [MultipartUpload(self, item["Key"], item["UploadId"]) for item in listing.get("Uploads", [])]

    def abort_uploads(self, prefix: str) -> list[str]:
        """Abort the multipart uploads under `prefix` left open by a killed run; returns their keys.

        A process killed mid-upload never reaches its abort, and S3 bills the parts until a lifecycle
        rule or this removes them.
        """
        uploads = self.open_uploads(prefix)
        for upload in uploads:
            upload.abort()
        return [upload.key for upload in uploads]

    def abort_left_uploads(self, prefix: str) -> None:
        """Abort what abort_uploads finds, at best effort: without s3:ListBucketMultipartUploads /
        s3:AbortMultipartUpload, only warn; it never replaces the error of the work in hand. Some
        stores list no uploads for a prefix (MinIO) or have no such listing (s3rver): there a
        lifecycle rule for incomplete multipart uploads does it."""
        try:
            aborted = self.abort_uploads(prefix)
        except FatalError as error:
            logger.warning("%s: could not clean up multipart uploads left by a killed run: %s", prefix, error)
            return
        if aborted:
            logger.warning(
                "%s: aborted %d multipart upload(s) left by a killed run: %s", prefix, len(aborted), aborted
            )

    def write_json(self, key: str, data: dict[str, Any]) -> None:
        """One proven PUT, atomic in S3: a reader sees the old marker or the new one, never half of one.

        The value is sent whole with its digest in a header, never as an aws-chunked stream with a
        trailing checksum (boto3's default over HTTPS), which stores without aws-chunked keep verbatim.
        """
        body = json.dumps(data, indent=1).encode()
        self.put(key, body, digest(body, self.proof), ContentType="application/json")

    def read_bytes(self, key: str, byte_range: str | None = None) -> bytes:
        """The object's bytes (`byte_range` as HTTP's Range, e.g. `bytes=-8`), read whole: small objects."""
        ranged = {"Range": byte_range} if byte_range else {}
        with self.request("read", key, self.client.get_object, Key=key, **ranged)["Body"] as body:
            return bytes(body.read())

    def download(self, key: str, dest: Path, chunk: int = 1024 * 1024) -> None:
        """The object into the file `dest`, one chunk at a time."""
        with (
            self.request("read", key, self.client.get_object, Key=key)["Body"] as body,
            dest.open("wb") as out,
        ):
            for data in iter(lambda: body.read(chunk), b""):
                out.write(data)

    def read_json(self, key: str) -> dict[str, Any]:
        found = self.read_json_if_exists(key)
        if found is None:
            raise StorageError(f"s3://{self.name}/{key} does not exist")
        return found

    def read_json_if_exists(self, key: str) -> dict[str, Any] | None:
        """The JSON object at `key`, None when there is none; StaleStateError naming it when damaged."""
        answer = self.request("read", key, self.client.get_object, Key=key, missing={})
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
