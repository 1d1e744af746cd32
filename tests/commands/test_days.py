"""Each day's state from the markers and staging, in a bounded number of requests: what `status`
draws and `--metrics-file` writes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from amp_luigi.commands.days import (
    DONE,
    EMPTY,
    FAILED,
    ICEBERG,
    MISSING,
    NOT_YET,
    PARQUET,
    DayStatus,
    collect,
)
from amp_luigi.records import DayRecord, ExpectedObject, write_marker
from amp_luigi.s3 import Bucket
from amp_luigi.testing.local import s3_client
from amp_luigi.volume import Verdict, VolumeRule
from tests.conftest import MOCK_BUCKET, Workspace
from tests.expect import setup_days


class CountingClient:
    """A boto3 client that counts the calls made through it."""

    def __init__(self, client: object) -> None:
        self.client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        method = getattr(self.client, name)

        def call(*args: object, **kwargs: object) -> object:
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


def test_states_and_counts_come_from_the_markers_in_a_bounded_number_of_requests(
    workspace: Workspace, moto_endpoint: str
) -> None:
    setup_days(workspace)
    client = CountingClient(s3_client(workspace.env))
    days = collect(
        Bucket(client, workspace.bucket),
        "python_import",
        workspace.data_dir,
        dt.date(2024, 3, 1),
        dt.date(2024, 3, 8),
        newest=dt.date(2024, 3, 6),
    )
    assert [(day.date.day, day.state, day.events, day.objects) for day in days] == [
        (1, DONE, 4956, 22),
        (2, EMPTY, 0, 0),
        (3, FAILED, 0, 0),
        (4, FAILED, 0, 0),
        (5, MISSING, 0, 0),
        (6, MISSING, 0, 0),
        (7, NOT_YET, 0, 0),
    ]
    assert "_uploaded marker" in days[2].reason and "staging" in days[3].reason
    # Two listings, then one read per verified day in the range: never the data objects.
    assert sorted(client.calls) == ["get_object", "get_object", "list_objects_v2", "list_objects_v2"]


@pytest.fixture
def bucket(mock_s3_client: Any) -> Bucket:
    return Bucket(mock_s3_client, MOCK_BUCKET, threads=2)


def verified(bucket: Bucket, day: str, objects: int) -> None:
    """A verified marker of `objects` objects of 5 events each, verified on 2024-03-20 at 03:00 UTC."""
    listed = [
        ExpectedObject(f"p/{day}/m{n}.json", 10, "AAAAAA==", 5, f"m{n}.json.gz", '"e"')
        for n in range(objects)
    ]
    record = DayRecord(dt.date.fromisoformat(day), listed, verified_at=dt.datetime(2024, 3, 20, 3, 0))
    write_marker(bucket, f"p/_verified/{day}.json", record)


def states(days: list[DayStatus]) -> dict[int, str]:
    return {day.date.day: day.state for day in days}


def test_a_damaged_verified_marker_is_a_failed_day_and_is_removed(bucket: Bucket, tmp_path: Path) -> None:
    bucket.client.put_object(
        Bucket=MOCK_BUCKET, Key="p/_verified/2024-03-01.json", Body=b'{"date": "2024-03-0'
    )
    [day] = collect(
        bucket, "p", tmp_path, dt.date(2024, 3, 1), dt.date(2024, 3, 2), newest=dt.date(2024, 3, 5)
    )
    assert (day.state, day.reason) == (FAILED, "a damaged _verified marker, now removed")
    assert bucket.listing("p/") == {}


def test_the_query_layers_are_shown_only_when_asked(bucket: Bucket, tmp_path: Path) -> None:
    verified(bucket, "2024-03-01", 2)
    verified(bucket, "2024-03-02", 1)
    bucket.client.put_object(Bucket=MOCK_BUCKET, Key="p/_parquet/2024-03-01.json", Body=b"{}")
    bucket.client.put_object(Bucket=MOCK_BUCKET, Key="p/_iceberg/2024-03-02.json", Body=b"{}")
    window = (dt.date(2024, 3, 1), dt.date(2024, 3, 4))
    shown = collect(bucket, "p", tmp_path, *window, newest=dt.date(2024, 3, 5), layers=(PARQUET, ICEBERG))
    assert [(day.state, day.layers) for day in shown] == [
        (DONE, {"Parquet": True, "Iceberg": False}),
        (DONE, {"Parquet": False, "Iceberg": True}),
        (MISSING, {}),
    ]
    hidden = collect(bucket, "p", tmp_path, *window, newest=dt.date(2024, 3, 5))
    assert [day.layers for day in hidden] == [{}, {}, {}]


def test_a_done_day_carries_its_counts_and_when_it_was_verified_in_utc(
    bucket: Bucket, tmp_path: Path
) -> None:
    verified(bucket, "2024-03-01", 3)
    [day] = collect(
        bucket, "p", tmp_path, dt.date(2024, 3, 1), dt.date(2024, 3, 2), newest=dt.date(2024, 3, 1)
    )
    assert (day.state, day.objects, day.events) == (DONE, 3, 15)
    assert day.verified_at == dt.datetime(2024, 3, 20, 3, 0, tzinfo=dt.timezone.utc)


def test_only_staging_directories_named_by_a_date_count_and_a_missing_root_is_fine(
    bucket: Bucket, tmp_path: Path
) -> None:
    for name in ("2024-03-02", "not-a-day", "2024-13-01"):
        (tmp_path / name).mkdir()
    window = (dt.date(2024, 3, 1), dt.date(2024, 3, 4))
    assert states(collect(bucket, "p", tmp_path, *window, newest=dt.date(2024, 3, 2))) == {
        1: MISSING,
        2: FAILED,
        3: NOT_YET,
    }
    assert states(collect(bucket, "p", tmp_path / "none", *window, newest=dt.date(2024, 3, 2))) == {
        1: MISSING,
        2: MISSING,
        3: NOT_YET,
    }


def test_an_empty_verified_day_is_empty_not_missing(bucket: Bucket, tmp_path: Path) -> None:
    verified(bucket, "2024-03-01", 0)
    [day] = collect(
        bucket, "p", tmp_path, dt.date(2024, 3, 1), dt.date(2024, 3, 2), newest=dt.date(2024, 3, 1)
    )
    assert (day.state, day.events) == (EMPTY, 0)


def test_with_the_volume_rule_the_weeks_before_are_read_and_each_verified_day_judged(
    bucket: Bucket, tmp_path: Path
) -> None:
    """Four Fridays of 2 objects (10 events) before 2024-03-01, then one of 1: half is not below half."""
    for day in ("2024-02-02", "2024-02-09", "2024-02-16", "2024-02-23", "2024-02-22"):
        verified(bucket, day, 2)
    verified(bucket, "2024-03-01", 1)
    verified(bucket, "2024-03-02", 3)  # a Saturday without history
    client = CountingClient(bucket.client)
    counted = Bucket(client, MOCK_BUCKET, threads=2)
    days = collect(
        counted,
        "p",
        tmp_path,
        dt.date(2024, 3, 1),
        dt.date(2024, 3, 3),
        dt.date(2024, 3, 5),
        rule=VolumeRule(),
    )
    assert [day.date.day for day in days] == [1, 2]  # the history is read, not shown
    friday, saturday = days
    assert friday.volume == Verdict(5, 10.0, 4) and not friday.anomalous and friday.bytes == 10
    assert saturday.volume == Verdict(15, None, 0)
    assert client.calls.count("get_object") == 7  # the two days and every verified day of 4 weeks before
    assert not any(call.startswith("head") for call in client.calls)
    tighter = collect(
        bucket,
        "p",
        tmp_path,
        dt.date(2024, 3, 1),
        dt.date(2024, 3, 2),
        dt.date(2024, 3, 5),
        rule=VolumeRule(low=0.6),
    )
    assert tighter[0].anomalous
