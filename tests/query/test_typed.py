"""The NDJSON typing both query layers share: a day's objects grouped by hour (the conversion itself
is proven through each layer's own tests: test_parquet, test_iceberg)."""

from __future__ import annotations

import pytest

from amp_luigi.errors import FatalError
from amp_luigi.query.typed import hours
from amp_luigi.records import ExpectedObject


def expected(key: str, events: int) -> ExpectedObject:
    return ExpectedObject(key, 0, "", events, key.rsplit("/", 1)[-1] + ".gz")


def test_objects_are_grouped_by_the_hour_in_their_names() -> None:
    objects = [
        expected("p/2024-03-01/187520_2024-03-01_17#0.json", 1),
        expected("p/2024-03-01/187520_2024-03-01_5#0.json", 1),
        expected("p/2024-03-01/187520_2024-03-01_5#1.json.gz", 1),
    ]
    grouped = hours(objects)
    assert list(grouped) == [5, 17]
    assert [obj.key for obj in grouped[5]] == [objects[1].key, objects[2].key]


def test_an_object_without_an_hour_in_its_name_is_refused_by_name() -> None:
    with pytest.raises(FatalError, match=r"p/2024-03-01/export\.json: the hour cannot be read"):
        hours([expected("p/2024-03-01/export.json", 1)])
