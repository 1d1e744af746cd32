"""The staging area's promises, on this host's disk and in S3 alike: a file whole or absent, read
back seekable (a zip written without seeking reads back), a tree removed leaving nothing; and in S3,
an object replaced under a reader is named, never mixed."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, cast

import boto3
import pytest

from amp_luigi.errors import StaleStateError
from amp_luigi.s3 import Bucket
from amp_luigi.staging_area import LOCAL, S3Area, StagingArea, partial_path
from tests.conftest import MOCK_BUCKET as NAME
from tests.conftest import _body_as_bytes
from tests.operations_doc import DOCS, example

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def staged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[StagingArea, PurePath]:
    """An area and its root: a directory, or a prefix in the mock bucket."""
    if request.param == "local":
        return LOCAL, tmp_path / "staging"
    client = request.getfixturevalue("mock_s3_client")
    return S3Area(NAME, lambda: Bucket(client, NAME, part_size=5 * MiB)), PurePosixPath("stage/web")


def test_a_file_appears_whole_when_written_and_not_at_all_when_its_writer_fails(
    staged: tuple[StagingArea, PurePath],
) -> None:
    area, root = staged
    path = root / "2024-03-01" / "export" / "a.zip"
    body = os.urandom(6 * MiB + 17)  # over a part: a multipart upload in S3
    with pytest.raises(RuntimeError, match="connection lost"), area.create(path) as out:
        out.write(body[: 5 * MiB + 1])
        assert not area.exists(path)
        raise RuntimeError("connection lost")
    assert not area.exists(path) and area.files(root) == {}
    with area.create(path) as out:
        for start in range(0, len(body), MiB):
            out.write(body[start : start + MiB])
    assert area.exists(path) and area.size(path) == len(body)
    assert area.read_bytes(path) == body
    assert area.files(root) == {path: len(body)}


def test_a_zip_written_as_a_stream_reads_back_by_seeking(staged: tuple[StagingArea, PurePath]) -> None:
    area, root = staged
    path = root / ".windows" / "2024-03-01..2024-03-03" / "w.zip"
    members = {f"187520/187520_2024-03-0{n}_{n}#0.json.gz": os.urandom(300_000 * n) for n in (1, 2, 3)}
    with area.create(path) as out, zipfile.ZipFile(cast(Any, out), "w") as archive:
        for name, data in members.items():
            with archive.open(name, "w") as member:
                member.write(data)
    with area.open(path) as handle, zipfile.ZipFile(handle) as archive:
        # Out of order: each read seeks to its member.
        assert {name: archive.read(name) for name in reversed(list(members))} == members


def test_a_missing_file_is_file_not_found_and_removing_it_is_nothing(
    staged: tuple[StagingArea, PurePath],
) -> None:
    area, root = staged
    missing = root / "2024-03-01" / "manifest.json"
    assert not area.exists(missing)
    for read in (area.open, area.size, area.read_bytes):
        with pytest.raises(FileNotFoundError):
            read(missing)
    area.remove(missing)
    area.remove_tree(root / "2024-03-01")
    assert area.files(root) == {} and area.children(root) == set()


def test_a_tree_is_removed_whole_and_its_neighbours_stay(staged: tuple[StagingArea, PurePath]) -> None:
    area, root = staged
    for name in ("2024-03-01/export/a.zip", "2024-03-01/members/m.json.gz", "2024-03-02/manifest.json"):
        area.write_bytes(root / name, b"x")
    assert area.children(root) == {"2024-03-01", "2024-03-02"}
    area.remove_tree(root / "2024-03-01")
    assert area.files(root) == {root / "2024-03-02" / "manifest.json": 1}
    area.remove(root / "2024-03-02" / "manifest.json")
    assert area.files(root) == {}


def test_an_object_replaced_while_it_is_read_is_named_not_mixed(mock_s3_client: Any) -> None:
    area = S3Area(NAME, lambda: Bucket(mock_s3_client, NAME))
    path = PurePosixPath("stage/2024-03-01/export/a.zip")
    area.write_bytes(path, b"a" * 200_000)
    with area.open(path) as handle:
        assert handle.read(10) == b"a" * 10
        area.write_bytes(path, b"b" * 200_000)
        handle.seek(150_000)  # a new ranged GET: the other version answers
        with pytest.raises(StaleStateError, match=f"s3://{NAME}/{path} was replaced while it was read"):
            handle.read(10)


def test_removing_a_tree_in_s3_aborts_the_uploads_a_killed_writer_left_open(mock_s3_client: Any) -> None:
    bucket = Bucket(mock_s3_client, NAME)
    area = S3Area(NAME, lambda: bucket)
    mock_s3_client.create_multipart_upload(Bucket=NAME, Key="stage/2024-03-01/export/left.zip")
    mock_s3_client.create_multipart_upload(Bucket=NAME, Key="stage/2024-03-02/export/other.zip")
    area.remove_tree(PurePosixPath("stage/2024-03-01"))
    assert [upload.key for upload in bucket.open_uploads("stage/")] == ["stage/2024-03-02/export/other.zip"]


def _mock_bucket() -> Bucket:
    """The mock bucket through a new client, as a process that unpickled an area opens it."""
    client = boto3.client("s3", region_name="us-east-1")
    client.meta.events.register_first("before-send.s3", _body_as_bytes)
    return Bucket(client, NAME)


def test_an_s3_area_travels_to_another_process_without_its_client_and_opens_its_own(
    mock_s3_client: Any,
) -> None:
    area = S3Area(NAME, _mock_bucket)
    area.write_bytes(PurePosixPath("stage/a"), b"x")
    assert area.__getstate__()["_buckets"] == {}
    copy = pickle.loads(pickle.dumps(area))
    assert copy == area and pickle.loads(pickle.dumps(LOCAL)) is LOCAL
    assert copy.read_bytes(PurePosixPath("stage/a")) == b"x"
    assert copy.bucket is not area.bucket
    assert copy.where(PurePosixPath("stage/a")) == f"s3://{NAME}/stage/a"
    assert S3Area.key(PurePosixPath(".")) == "" and S3Area.key(PurePosixPath(".windows/a")) == ".windows/a"


def test_a_local_partial_file_is_hidden_beside_its_destination_and_names_this_process(tmp_path: Path) -> None:
    dest = tmp_path / "export" / "parts.json"
    partial = partial_path(dest)
    assert partial.parent == dest.parent
    assert partial.name.startswith(".") and partial.name.endswith(".partial")
    assert str(os.getpid()) in partial.name
    assert partial != partial_path(tmp_path / "export" / "manifest.json")


def test_the_documented_lifecycle_rule_is_one_s3_takes_and_it_covers_the_staging_prefix(
    mock_s3_client: Any,
) -> None:
    """docs/running.md's rule for what a day never retried leaves in S3 staging."""
    rule = json.loads(example("staging-lifecycle", DOCS / "running.md"))
    mock_s3_client.put_bucket_lifecycle_configuration(Bucket=NAME, LifecycleConfiguration=rule)
    [stored] = mock_s3_client.get_bucket_lifecycle_configuration(Bucket=NAME)["Rules"]
    assert stored["Filter"]["Prefix"] == "amp-staging/" and stored["Status"] == "Enabled"
    assert stored["Expiration"]["Days"] == 7
    assert stored["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
