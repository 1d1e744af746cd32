"""Comparing what S3 holds for a day with what was uploaded, object by object."""

from __future__ import annotations

from amp_luigi.manifest import ExpectedObject
from amp_luigi.storage import Bucket


def differences(bucket: Bucket, prefix: str, expected: list[ExpectedObject]) -> list[str]:
    """Every missing, extra or different object under `prefix`, named; empty when S3 matches exactly."""
    listing = bucket.sizes(prefix)
    wanted = {obj.key: obj for obj in expected}
    problems = [f"missing {key}" for key in sorted(wanted.keys() - listing.keys())]
    problems += [f"extra {key}" for key in sorted(listing.keys() - wanted.keys())]
    present = [obj for obj in expected if obj.key in listing]
    problems += [
        f"size of {obj.key} is {listing[obj.key]} bytes, not {obj.bytes}"
        for obj in present
        if listing[obj.key] != obj.bytes
    ]
    same_size = [obj for obj in present if listing[obj.key] == obj.bytes]
    checksums = bucket.map(lambda obj: bucket.sha256(obj.key), same_size)
    problems += [
        f"checksum of {obj.key} is {found or 'missing'}, not {obj.sha256}"
        for obj, found in zip(same_size, checksums, strict=True)
        if found != obj.sha256
    ]
    return problems
