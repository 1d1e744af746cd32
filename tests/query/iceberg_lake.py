"""A table to test the Iceberg layer on: a bucket on the session's moto server, a SQLite catalog,
and days of emulated events put in S3 as VerifyDay would have listed them."""

from __future__ import annotations

import datetime as dt
import json
import uuid as uuids
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa

from amp_luigi import checksum
from amp_luigi.emulator import DatasetSpec, hour_lines
from amp_luigi.query.catalog import TableSettings, open_table
from amp_luigi.query.iceberg import commit_day
from amp_luigi.query.typed import Engine
from amp_luigi.records import ExpectedObject, IcebergRecord
from amp_luigi.s3 import Bucket

DAY = dt.date(2024, 3, 1)
SPEC = DatasetSpec(events_per_hour=30, late_every=5)


@dataclass
class Lake:
    """A bucket on moto, a SQLite catalog and the project's table settings."""

    bucket: Bucket
    settings: TableSettings
    work: Path

    def put(self, date: dt.date, lines_by_hour: dict[int, list[str]]) -> list[ExpectedObject]:
        """The day's objects in S3, as VerifyDay would have listed them."""
        objects = []
        for hour, lines in lines_by_hour.items():
            key = f"p/{date}/187520_{date}_{hour}#0.json"
            body = ("\n".join(lines) + "\n").encode()
            self.bucket.client.put_object(Bucket=self.bucket.name, Key=key, Body=body)
            crc = checksum.crc32_text(checksum.crc32(body))
            objects.append(ExpectedObject(key, len(body), crc, len(lines), key))
        return objects

    def commit(self, date: dt.date, objects: list[ExpectedObject], **kwargs: Any) -> IcebergRecord:
        work = self.work / f"{date}-{uuids.uuid4().hex[:6]}"
        work.mkdir(parents=True)
        opener: Callable[[], Any] = kwargs.pop("open_table", lambda: open_table(self.settings))
        return commit_day(opener, self.bucket, date, objects, Engine(), work, **kwargs)

    def table(self) -> Any:
        return open_table(self.settings)

    def rows(self, snapshot_id: int | None = None) -> pa.Table:
        return self.table().scan(snapshot_id=snapshot_id).to_arrow()


def make_lake(tmp_path: Path, moto_endpoint: str) -> Lake:
    """A new bucket on `moto_endpoint`, a SQLite catalog and a work directory under `tmp_path`."""
    name = f"ice-{uuids.uuid4().hex[:12]}"
    keys = {"access-key-id": "testing", "secret-access-key": "testing", "region": "us-east-1"}
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=name)
    settings = TableSettings(
        catalog="sql",
        uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        identifier="amplitude.events",
        location=f"s3://{name}/p_iceberg/events",
        partition="day",
        aws={**keys, "endpoint": moto_endpoint},
    )
    return Lake(Bucket(client, name), settings, tmp_path / "work")


def day_lines(date: dt.date, hours: tuple[int, ...] = (5, 6)) -> dict[int, list[str]]:
    return {hour: hour_lines(SPEC, f"{date:%Y%m%d}T{hour:02d}") for hour in hours}


def events_of(lines_by_hour: dict[int, list[str]]) -> list[dict[str, Any]]:
    return [json.loads(line) for lines in lines_by_hour.values() for line in lines]


def by_event_day(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(event["event_time"][:10] for event in events)
