"""Comparing what S3 holds for a day with what was uploaded, object by object."""

from __future__ import annotations

import threading
from collections.abc import Callable

from amp_luigi.manifest import ExpectedObject
from amp_luigi.storage import Bucket


def differences(
    bucket: Bucket,
    prefix: str,
    expected: list[ExpectedObject],
    on_checked: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Every missing, extra or different object under `prefix`, named; empty when S3 matches exactly.

    `on_checked(done, total)` follows the checksum reads, one HEAD per object of the right size.
    """
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
    checked = 0
    lock = threading.Lock()

    def checksum(obj: ExpectedObject) -> str | None:
        nonlocal checked
        found = bucket.sha256(obj.key)
        if on_checked:
            with lock:
                checked += 1
                on_checked(checked, len(same_size))
        return found

    checksums = bucket.map(checksum, same_size)
    problems += [
        f"checksum of {obj.key} is {found or 'missing'}, not {obj.sha256}"
        for obj, found in zip(same_size, checksums, strict=True)
        if found != obj.sha256
    ]
    return problems
