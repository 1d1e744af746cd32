"""How an upload proves that the store holds the bytes sent: the rule, in one place.

A 2xx answer proves nothing by itself: moto, s3rver and several S3-compatible stores accept a wrong
`x-amz-checksum-crc32` or `Content-MD5` and keep whatever arrived, and moto even echoes the wrong
CRC32 back. So every upload request is checked against what the server says it received, and a
multipart upload is completed only when every part's answer matches the bytes extraction checked.
`[storage] upload_proof` chooses how:

- `checksum`: each request carries the CRC32 of its bytes; the answer must echo it, and the store must
  be one that refuses a wrong CRC32, which a probe proves once per process (an object sent with a
  deliberately wrong CRC32 must be refused: AWS answers BadDigest). Works under any encryption.
- `etag`: no checksum headers at all (stores such as GCS, B2 or Wasabi refuse them); each request
  carries `Content-MD5` (a store that checks it refuses a corrupt body before it lands) and the
  answer's ETag must be the hex MD5 of the bytes sent, per part for a multipart upload. Holds on
  every store that answers with MD5 ETags: unencrypted or SSE-S3 objects on S3, moto, s3rver,
  MinIO, Ceph; not under SSE-KMS or SSE-C, whose ETags are no MD5.
- `none`: nothing proven beyond the local CRC32 check, for a store that can do neither; markers
  record it.
- `auto` (the default): `checksum` on AWS's own endpoints, `etag` on any other endpoint.

The digests are computed from the very buffer sent, in the upload threads (hashlib releases the GIL),
so proving costs no extra read of any file.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from amp_luigi import checksum


class Proof(str, enum.Enum):
    CHECKSUM = "checksum"
    ETAG = "etag"
    NONE = "none"

    @property
    def sends_checksums(self) -> bool:
        """Whether requests carry x-amz-checksum-* headers (botocore adds them only when this is true)."""
        return self is Proof.CHECKSUM


CHOICES = ("auto", *(proof.value for proof in Proof))


def resolve(setting: str, endpoint: str) -> Proof:
    """The proof for a `[storage] upload_proof` value and the S3 endpoint URL ('' = AWS's own)."""
    if setting != "auto":
        return Proof(setting)
    return Proof.CHECKSUM if is_aws(endpoint) else Proof.ETAG


def is_aws(endpoint: str) -> bool:
    """Whether `endpoint` is AWS's own S3 (no endpoint set means botocore's AWS default)."""
    if not endpoint:
        return True
    return (urlsplit(endpoint).hostname or "").endswith((".amazonaws.com", ".amazonaws.com.cn"))


@dataclass(frozen=True)
class Sent:
    """The digests of the bytes one request carried."""

    crc32: str
    md5: bytes | None

    @property
    def md5_hex(self) -> str:
        return self.md5.hex() if self.md5 is not None else ""


def digest(body: bytes | bytearray, proof: Proof) -> Sent:
    md5 = hashlib.md5(body, usedforsecurity=False).digest() if proof is Proof.ETAG else None
    return Sent(checksum.crc32_text(checksum.crc32(body, 0)), md5)


def request_fields(sent: Sent, proof: Proof) -> dict[str, str]:
    """The parameters a PutObject or UploadPart carries for its proof (with a value botocore adds none)."""
    if proof is Proof.CHECKSUM:
        return {"ChecksumAlgorithm": "CRC32", "ChecksumCRC32": sent.crc32}
    if proof is Proof.ETAG and sent.md5 is not None:
        return {"ContentMD5": base64.b64encode(sent.md5).decode()}
    return {}


def mismatch(answer: Mapping[str, Any], sent: Sent, proof: Proof) -> str | None:
    """Why the answer to one request does not prove that the store received `sent`, or None."""
    if proof is Proof.CHECKSUM:
        echoed = answer.get("ChecksumCRC32")
        if echoed != sent.crc32:
            return f"the store answered CRC32 {echoed}, not {sent.crc32} as sent"
    elif proof is Proof.ETAG:
        etag = str(answer.get("ETag", "")).strip('"')
        if etag != sent.md5_hex:
            return f"the store answered ETag {etag or 'none'}, not the MD5 {sent.md5_hex} of the bytes sent"
    return None


def multipart_mismatch(answer: Mapping[str, Any], parts: list[Sent], proof: Proof) -> str | None:
    """Why a completed multipart upload's ETag is not the one its proven parts make (etag proof only).

    S3's multipart ETag is the MD5 of the parts' binary MD5s, then `-<number of parts>`. A store that
    answers another form (s3rver: the whole object's MD5, no suffix) is trusted to assemble the
    parts, each of which its answer proved.
    """
    if proof is not Proof.ETAG:
        return None
    etag = str(answer.get("ETag", "")).strip('"')
    if "-" not in etag:
        return None
    whole = hashlib.md5(b"".join(part.md5 or b"" for part in parts), usedforsecurity=False).hexdigest()
    expected = f"{whole}-{len(parts)}"
    if etag != expected:
        return f"the store answered ETag {etag or 'none'}, not {expected} for the parts sent"
    return None


def advice(proof: Proof) -> str:
    """What to do when uploads under `proof` keep failing their proof although nothing changes them."""
    if proof is Proof.ETAG:
        return (
            "If every run fails this way, the store's ETags are not MD5s (SSE-KMS or SSE-C encryption): set "
            "[storage] upload_proof = checksum (AMP_S3_UPLOAD_PROOF) where the store checks checksums."
        )
    return (
        "If every run fails this way, the store does not answer with the checksum it was sent: set "
        "[storage] upload_proof = etag (AMP_S3_UPLOAD_PROOF)."
    )
