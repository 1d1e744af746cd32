"""What a day consists of: the local manifest of checked members and the S3 objects it maps to.

The manifest is the contract between the stages: ExtractDay writes it, UploadDay turns it into the
list of objects it puts in S3 (recorded in its marker), and VerifyDay compares S3 with that list,
object by object, before it writes the verified manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from amp_luigi.archive import MemberRecord
from amp_luigi.errors import StaleStateError
from amp_luigi.layout import DayLayout
from amp_luigi.storage import Bucket

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpectedObject:
    """One data object in S3: its key, size, CRC32 (as S3 writes it) and event count.

    `etag` is what S3 answered to the upload: the listing's ETag of an object nobody has replaced since.
    """

    key: str
    bytes: int
    crc32: str
    events: int
    member: str
    etag: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExpectedObject:
        return cls(**data)


@dataclass(frozen=True)
class Manifest:
    date: dt.date
    members: list[MemberRecord]
    ranges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(member.events for member in self.members)

    def objects(self, layout: DayLayout) -> list[ExpectedObject]:
        """The objects this manifest becomes in S3, in the output format the layout asks for."""
        return [
            ExpectedObject(
                key=layout.object_key(member.name),
                bytes=member.gz_bytes if layout.keep_gzip else member.json_bytes,
                crc32=member.gz_crc32 if layout.keep_gzip else member.json_crc32,
                events=member.events,
                member=member.name,
            )
            for member in self.members
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "events": self.events,
            "ranges": self.ranges,
            "members": [member.to_json() for member in self.members],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        try:
            return cls(
                date=dt.date.fromisoformat(data["date"]),
                members=[MemberRecord.from_json(member) for member in data["members"]],
                ranges=data.get("ranges", []),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise StaleStateError(
                f"the manifest is not in the form this amp-luigi writes ({error!r})"
            ) from error

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            return cls.from_json(json.loads(path.read_bytes()))
        except ValueError as error:  # a truncated or overwritten file: JSONDecodeError, bad UTF-8
            raise StaleStateError(f"the manifest {path} is damaged: not JSON ({error})") from error
        except StaleStateError as error:
            raise StaleStateError(f"{path}: {error}") from error


def recorded_objects(record: dict[str, Any]) -> list[ExpectedObject]:
    """The objects of an S3 marker (day_record's output)."""
    try:
        return [ExpectedObject.from_json(obj) for obj in record["objects"]]
    except (KeyError, TypeError, AttributeError) as error:
        raise StaleStateError(f"the marker is not in the form this amp-luigi writes ({error!r})") from error


def day_record(date: dt.date, objects: list[ExpectedObject], **extra: Any) -> dict[str, Any]:
    """The JSON body of the S3 markers: the day's objects and totals, plus what the stage adds."""
    return {
        "date": date.isoformat(),
        "objects": [asdict(obj) for obj in objects],
        "object_count": len(objects),
        "events": sum(obj.events for obj in objects),
        "bytes": sum(obj.bytes for obj in objects),
        **extra,
    }


def read_marker(bucket: Bucket, key: str) -> dict[str, Any] | None:
    """The S3 marker at `key`, or None when there is none.

    A damaged marker (not JSON, not the form day_record writes) is removed with a warning naming it
    and read as none, so the stage that writes it runs again instead of failing on it for ever.
    """
    try:
        record = bucket.read_json_if_exists(key)
        if record is not None:
            recorded_objects(record)
        return record
    except StaleStateError as error:
        problem = str(error) if key in str(error) else f"s3://{bucket.name}/{key}: {error}"
        logger.warning("%s. It was removed: the next run writes it anew.", problem)
        bucket.delete([key])
        return None
