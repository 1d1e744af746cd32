"""CRC32, the checksum S3 checks on every upload, computed at ISA-L speed (several GB/s).

S3 writes a CRC32 as base64 of its four big-endian bytes (`ChecksumCRC32`, `x-amz-checksum-crc32`);
the manifests use that form too, so they compare with `aws s3api head-object --checksum-mode ENABLED`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

__all__ = ["crc32", "crc32_text", "file_chunks", "file_crc32"]
_CHUNK = 1024 * 1024

try:  # the same polynomial and values as zlib's, several times faster
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is a declared dependency
    from zlib import crc32


def crc32_text(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def file_chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes in 1 MiB chunks, for an upload that streams it."""
    with path.open("rb") as source:
        yield from iter(lambda: source.read(_CHUNK), b"")


def file_crc32(path: Path) -> str:
    """A local file's CRC32 in S3's form, to upload it with."""
    value = 0
    for chunk in file_chunks(path):
        value = crc32(chunk, value)
    return crc32_text(value)
