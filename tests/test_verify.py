"""Comparing S3 with the upload marker: every difference is reported by name, from one listing."""

from __future__ import annotations

from typing import Any

import pytest

from amp_luigi.records import ExpectedObject
from amp_luigi.s3 import Bucket
from amp_luigi.verify import differences
from tests.conftest import MOCK_BUCKET as NAME
from tests.conftest import crc32_of

PREFIX = "python_import/2024-03-01/"


@pytest.fixture
def bucket(mock_s3_client: Any) -> Bucket:
    return Bucket(mock_s3_client, NAME, threads=2)


def put(bucket: Bucket, name: str, body: bytes) -> ExpectedObject:
    """An object uploaded by amp-luigi, as its upload marker records it."""
    etag = bucket.upload(PREFIX + name, iter([body]), crc32_of(body), {})
    return ExpectedObject(PREFIX + name, len(body), crc32_of(body), 1, name + ".gz", etag)


def replace(bucket: Bucket, name: str, body: bytes) -> None:
    """Someone else's write to the same key."""
    bucket.client.put_object(Bucket=NAME, Key=PREFIX + name, Body=body)


def test_a_day_that_matches_has_no_differences(bucket: Bucket) -> None:
    objects = [put(bucket, f"p_2024-03-01_{h}#0.json", b'{"h": %d}\n' % h) for h in range(5)]
    # Objects of other days and the markers are outside the day's prefix.
    bucket.client.put_object(Bucket=NAME, Key="python_import/2024-03-02/x.json", Body=b"{}")
    bucket.client.put_object(Bucket=NAME, Key="python_import/_uploaded/2024-03-01.json", Body=b"{}")
    calls: list[str] = []
    bucket.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))

    assert differences(bucket, PREFIX, objects) == []
    assert calls == ["ListObjectsV2"], "one listing, no request per object"


def test_an_empty_day_matches_an_empty_prefix(bucket: Bucket) -> None:
    assert differences(bucket, PREFIX, []) == []


def test_missing_extra_wrong_size_and_replaced_objects_are_each_named(bucket: Bucket) -> None:
    good = put(bucket, "good.json", b'{"ok": 1}\n')
    missing = put(bucket, "missing.json", b'{"gone": 1}\n')
    bucket.delete([missing.key])
    replace(bucket, "extra.json", b'{"stray": 1}\n')
    short = put(bucket, "short.json", b'{"a": 1}\n')
    replace(bucket, "short.json", b'{"a"}\n')
    # Same size, different bytes, written by something else: S3's ETag tells.
    changed = put(bucket, "changed.json", b'{"b": 3}\n')
    replace(bucket, "changed.json", b'{"b": 2}\n')
    # The same bytes written again: the same single-part ETag (their MD5), and nothing to report.
    rewritten = put(bucket, "rewritten.json", b'{"c": 1}\n')
    replace(bucket, "rewritten.json", b'{"c": 1}\n')

    problems = differences(bucket, PREFIX, [good, missing, short, changed, rewritten])

    text = "\n".join(problems)
    assert len(problems) == 4, problems
    assert f"missing {PREFIX}missing.json" in text
    assert f"extra {PREFIX}extra.json" in text
    assert f"size of {PREFIX}short.json is 6 bytes, not 9" in text
    assert f"{PREFIX}changed.json is not the object uploaded (ETag " in text
    assert "good.json" not in text and "rewritten.json" not in text


def test_objects_under_a_longer_prefix_of_the_same_day_count_as_extra(bucket: Bucket) -> None:
    objects = [put(bucket, "a.json", b"{}\n")]
    replace(bucket, "nested/b.json", b"{}\n")
    assert differences(bucket, PREFIX, objects) == [f"extra {PREFIX}nested/b.json"]
