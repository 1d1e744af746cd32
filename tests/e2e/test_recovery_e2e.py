"""No state a rerun cannot repair: each stage's output damaged, then the real `luigi` command run twice.

A stage's output that cannot be read, is not JSON or is not in the form this version writes is
discarded with a message naming it, and the next run redoes that stage: after two runs S3 is exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from amp_luigi.emulator import Emulator
from tests.conftest import DAY, Workspace
from tests.expect import assert_days_exact, output, run_day

PREFIX = "python_import"
UPLOADED = f"{PREFIX}/_uploaded/{DAY}.json"
VERIFIED = f"{PREFIX}/_verified/{DAY}.json"


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def chunk_framed(data: bytes) -> bytes:
    """What a store without aws-chunked support keeps of a body boto3 sent aws-chunked."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"


def stage(workspace: Workspace, task: str) -> None:
    run = workspace.luigi(task, "--date", DAY.isoformat(), "--local-scheduler", "--no-lock")
    assert run.returncode == 0, output(run)


def damage_local(workspace: Workspace, relative: str, how: Callable[[bytes], bytes]) -> str:
    path = workspace.data_dir / DAY.isoformat() / relative
    path.write_bytes(how(path.read_bytes()))
    return path.name


def damage_s3(workspace: Workspace, key: str, how: Callable[[bytes], bytes]) -> str:
    workspace.s3.put_object(Bucket=workspace.bucket, Key=key, Body=how(workspace.read(key)))
    return key


CASES = [
    ("ExportDay", lambda w, how: damage_local(w, "export/parts.json", how)),
    ("ExtractDay", lambda w, how: damage_local(w, "manifest.json", how)),
    ("UploadDay", lambda w, how: damage_s3(w, UPLOADED, how)),
    ("VerifyDay", lambda w, how: damage_s3(w, VERIFIED, how)),
]


@pytest.mark.parametrize(
    "how", [truncated, chunk_framed, lambda data: b'{"format": 0}'], ids=["truncated", "framed", "other-form"]
)
@pytest.mark.parametrize(("task", "damage"), CASES, ids=[case[0] for case in CASES])
def test_a_damaged_stage_output_is_discarded_by_name_and_the_rerun_is_exact(
    workspace: Workspace,
    emulator: Emulator,
    task: str,
    damage: Callable[..., str],
    how: Callable[[bytes], bytes],
) -> None:
    workspace.configure("staging", keep=True)
    stage(workspace, task)
    name = damage(workspace, how)

    first = run_day(workspace)
    assert name in output(first), "the damaged file is named"
    second = run_day(workspace)

    assert second.returncode == 0, output(second)
    assert_days_exact(workspace, emulator)
    assert json.loads(workspace.read(UPLOADED))["objects"], "the upload marker is whole again"
