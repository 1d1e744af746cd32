"""A small archive is checked in the extracting process; a larger one in the forked workers, alike."""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from amp_luigi import members as members_module
from amp_luigi.members import Limits, extract_archives

PROJECT = "187520"


def day_archive(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for hour in (0, 5, 23):
            lines = b"".join(json.dumps({"hour": hour, "n": n}).encode() + b"\n" for n in range(hour + 1))
            archive.writestr(f"{PROJECT}/{PROJECT}_2024-03-01_{hour}#0.json.gz", gzip.compress(lines))
    return path


def counting_workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many items each map_in_workers call was given (the real workers still do the work)."""
    calls: list[int] = []
    real = members_module.map_in_workers

    def counted(job: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
        listed = list(items)
        calls.append(len(listed))
        return real(job, listed, workers)

    monkeypatch.setattr(members_module, "map_in_workers", counted)
    return calls


@pytest.mark.skipif(not members_module.FORK, reason="forked workers are Linux's")
def test_an_archive_under_the_threshold_starts_no_worker_and_one_over_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = day_archive(tmp_path / "day.zip")
    calls = counting_workers(monkeypatch)

    here = extract_archives([archive], tmp_path / "here", Limits())
    assert calls == []

    monkeypatch.setattr(members_module, "IN_PROCESS_BYTES", 0)
    in_workers = extract_archives([archive], tmp_path / "workers", Limits())
    assert calls == [3]

    assert here == in_workers
    assert [record.events for record in here] == [1, 6, 24]
    for record in here:
        assert (tmp_path / "here" / record.name).read_bytes() == (
            tmp_path / "workers" / record.name
        ).read_bytes()
