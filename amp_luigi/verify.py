"""Comparing what S3 holds for a day with what was uploaded, object by object, from one listing."""

from __future__ import annotations

from amp_luigi.records import ExpectedObject
from amp_luigi.s3 import Bucket


def differences(bucket: Bucket, prefix: str, expected: list[ExpectedObject]) -> list[str]:
    """Every missing, extra or different object under `prefix`, named; empty when S3 matches exactly.

    S3 checked each object's CRC32 when it arrived and answered with its ETag; the listing shows the
    same ETag only for the object that upload wrote, so a replaced, truncated or re-uploaded object
    shows here without reading it back.
    """
    listing = bucket.listing(prefix)
    wanted = {obj.key: obj for obj in expected}
    problems = [f"missing {key}" for key in sorted(wanted.keys() - listing.keys())]
    problems += [f"extra {key}" for key in sorted(listing.keys() - wanted.keys())]
    for obj in expected:
        found = listing.get(obj.key)
        if found is None:
            continue
        if found.size != obj.bytes:
            problems.append(f"size of {obj.key} is {found.size} bytes, not {obj.bytes}")
        elif found.etag != obj.etag:
            problems.append(f"{obj.key} is not the object uploaded (ETag {found.etag}, not {obj.etag})")
    return problems
