"""UploadDay's stage: the manifest's members into S3 under deterministic keys, exactly.

Each member is streamed from the staging area, local or in S3 (inflated on the way unless
`keep_gzip`), proven by the store's answer and committed only if its bytes have the CRC32
extraction computed (amp_luigi.s3).
Objects under the day's prefix that the manifest does not name (an earlier export of the day) are
deleted, so a rerun never duplicates. Multipart uploads a killed run left open are aborted first.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import PurePath
from typing import IO

from amp_luigi.errors import ArchiveError
from amp_luigi.gzip_stream import inflate, read_chunks
from amp_luigi.layout import DayLayout
from amp_luigi.members import Limits
from amp_luigi.records import DayRecord, ExpectedObject, Manifest
from amp_luigi.s3 import Bucket
from amp_luigi.staging_area import StagingArea

logger = logging.getLogger(__name__)


def upload_day(
    bucket: Bucket,
    layout: DayLayout,
    limits: Limits,
    on_object: Callable[[int, int], None] | None = None,
) -> DayRecord:
    """Upload the day; the record for UploadDay's marker. `on_object` gets (objects done, in all).

    ArchiveError (a staged member that no longer inflates or has its CRC32) and StaleStateError (a
    damaged manifest) mean the extraction must be done again.
    """
    bucket.abort_left_uploads(layout.data_prefix)
    area = layout.area
    manifest = Manifest.load(layout.manifest_path, area)
    expected = manifest.objects(layout)
    done = 0
    lock = threading.Lock()

    def upload(obj: ExpectedObject) -> ExpectedObject:
        nonlocal done
        with _staged(area, layout.members_dir / obj.member) as source:
            chunks: Iterable[bytes] = read_chunks(source)
            if not layout.keep_gzip:
                chunks = inflate(chunks, obj.member, limits.max_inflate_ratio)
            etag = bucket.upload(obj.key, chunks, obj.crc32, {"events": str(obj.events)})
        with lock:
            done += 1
            if on_object:
                on_object(done, len(expected))
        return dataclasses.replace(obj, etag=etag)

    objects = bucket.map(upload, expected)
    strays = sorted(set(bucket.listing(layout.data_prefix)) - {obj.key for obj in objects})
    if strays:
        logger.warning(
            "%s: deleting %d object(s) no longer in the export: %s", layout.date, len(strays), strays
        )
        bucket.delete(strays)
    return DayRecord(
        layout.date,
        objects,
        format=layout.object_format,
        proof=bucket.proof.value,
        gz_bytes=sum(member.gz_bytes for member in manifest.members),
        ranges=[part.hours for part in manifest.ranges],
        split=manifest.split,
    )


def _staged(area: StagingArea, path: PurePath) -> IO[bytes]:
    """A member the manifest names, or ArchiveError when the staging area lost it (a lifecycle rule,
    a hand): the extraction is then discarded and done again."""
    try:
        return area.open(path)
    except FileNotFoundError as error:
        raise ArchiveError(f"the extracted member {area.where(path)} vanished from staging") from error
