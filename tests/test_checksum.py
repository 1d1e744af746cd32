"""CRC32 as S3 computes and writes it: the same values as zlib's, and the base64 form S3 shows."""

from __future__ import annotations

import base64
import zlib

import pytest
from botocore.httpchecksum import Crc32Checksum

from amp_luigi.checksum import crc32, crc32_text

SAMPLES = [
    b"",
    b"hello world",
    b'{"$insert_id": "x", "city": "Z\xc3\xbcrich"}\n' * 1000,
    bytes(range(256)) * 64,
]


@pytest.mark.parametrize("data", SAMPLES, ids=["empty", "short", "events", "every byte"])
def test_the_crc32_and_its_text_are_what_s3_computes(data: bytes) -> None:
    assert crc32(data) == zlib.crc32(data)
    expected = Crc32Checksum()  # botocore's, as it sends x-amz-checksum-crc32
    expected.update(data)
    assert crc32_text(crc32(data)) == base64.b64encode(expected.digest()).decode()


def test_a_crc32_computed_piece_by_piece_equals_the_whole() -> None:
    data = b"".join(SAMPLES)
    running = 0
    for start in range(0, len(data), 1000):
        running = crc32(data[start : start + 1000], running)
    assert running == crc32(data)


def test_the_text_is_four_big_endian_bytes_in_base64() -> None:
    assert crc32_text(0) == "AAAAAA=="
    assert crc32_text(0x0D4A1185) == "DUoRhQ=="  # CRC32 of b"hello world"
    assert crc32_text(0xFFFFFFFF) == "/////w=="
