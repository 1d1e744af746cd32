"""Comparing S3 with the uploaded manifest: every difference is reported by name."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from amp_luigi.manifest import ExpectedObject
from amp_luigi.storage import Bucket
from amp_luigi.verify import differences
from tests.conftest import MOCK_BUCKET as NAME

PREFIX = "python_import/2024-03-01/"


@pytest.fixture
def bucket(mock_s3_client: Any) -> Bucket:
    return Bucket(mock_s3_client, NAME, threads=2)


def put(bucket: Bucket, name: str, body: bytes, sha256: str | None = None) -> ExpectedObject:
    digest = hashlib.sha256(body).hexdigest()
    metadata = {} if sha256 == "" else {"sha256": sha256 or digest}
    bucket.client.put_object(Bucket=NAME, Key=PREFIX + name, Body=body, Metadata=metadata)
    return ExpectedObject(key=PREFIX + name, bytes=len(body), sha256=digest, events=1, member=name + ".gz")


def expected(name: str, body: bytes) -> ExpectedObject:
    return ExpectedObject(PREFIX + name, len(body), hashlib.sha256(body).hexdigest(), 1, name + ".gz")


def test_a_day_that_matches_has_no_differences(bucket: Bucket) -> None:
    objects = [put(bucket, f"p_2024-03-01_{h}#0.json", b'{"h": %d}\n' % h) for h in range(5)]
    # Objects of other days and the markers are outside the day's prefix.
    bucket.client.put_object(Bucket=NAME, Key="python_import/2024-03-02/x.json", Body=b"{}")
    bucket.client.put_object(Bucket=NAME, Key="python_import/_uploaded/2024-03-01.json", Body=b"{}")
    assert differences(bucket, PREFIX, objects) == []


def test_an_empty_day_matches_an_empty_prefix(bucket: Bucket) -> None:
    assert differences(bucket, PREFIX, []) == []


def test_missing_extra_wrong_size_and_wrong_checksum_are_each_named(bucket: Bucket) -> None:
    good = put(bucket, "good.json", b'{"ok": 1}\n')
    missing = expected("missing.json", b'{"gone": 1}\n')
    put(bucket, "extra.json", b'{"stray": 1}\n')
    put(bucket, "short.json", b'{"a"}\n')
    short = expected("short.json", b'{"a": 1}\n')
    # Same size, different bytes: only the checksum can tell.
    put(bucket, "changed.json", b'{"b": 2}\n')
    changed = expected("changed.json", b'{"b": 3}\n')
    put(bucket, "unsigned.json", b'{"c": 1}\n', sha256="")
    unsigned = expected("unsigned.json", b'{"c": 1}\n')

    problems = differences(bucket, PREFIX, [good, missing, short, changed, unsigned])

    assert len(problems) == 5, problems
    text = "\n".join(problems)
    assert f"missing {PREFIX}missing.json" in text
    assert f"extra {PREFIX}extra.json" in text
    assert f"size of {PREFIX}short.json is 6 bytes, not 9" in text
    found = hashlib.sha256(b'{"b": 2}\n').hexdigest()
    assert f"checksum of {PREFIX}changed.json is {found}, not {changed.sha256}" in text
    assert f"checksum of {PREFIX}unsigned.json is missing" in text
    assert "good.json" not in text


def test_objects_under_a_longer_prefix_of_the_same_day_count_as_extra(bucket: Bucket) -> None:
    objects = [put(bucket, "a.json", b"{}\n")]
    put(bucket, "nested/b.json", b"{}\n")
    assert differences(bucket, PREFIX, objects) == [f"extra {PREFIX}nested/b.json"]
