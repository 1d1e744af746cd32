"""A byte flipped on the wire between the pipeline and S3 must never end in a verified day.

The real `luigi` command reaches moto through the fault proxy (conftest.proxied_workspace), which
flips one byte of one chosen request body: (a) a single data PutObject, (b) one UploadPart of a
multipart upload, (c) the upload marker's PutObject. moto stores what arrives, checksum headers
or not, as a careless store or a broken middlebox would. The contract: the run exits 30 (a task
failed), no `_verified/<date>.json` exists, the output names the object's key, and a rerun
without the fault leaves S3 exact and verified.

Under `upload_proof = auto` (etag on moto's endpoint) each request's ETag must be the MD5 of what
was sent: a flipped part aborts its multipart upload, a flipped PUT or marker is removed again.
"""

from __future__ import annotations

import subprocess
import urllib.parse

import pytest

from amp_luigi.emulator import Emulator
from amp_luigi.testing.proxy import FLIP, Rule
from tests.conftest import BIG, DAY, Workspace
from tests.expect import PREFIX, assert_days_exact, luigi_ok

VERIFIED = f"{PREFIX}_verified/{DAY.isoformat()}.json"
UPLOADED = f"{PREFIX}_uploaded/{DAY.isoformat()}.json"
DATA_PATH = f"/{PREFIX}{DAY.isoformat()}/"


def key_of(workspace: Workspace, target: str) -> str:
    """The object key of a request target as the proxy saw it (`/<bucket>/<key>?query`, URL-encoded)."""
    path = urllib.parse.unquote(target.partition("?")[0])
    return path.removeprefix(f"/{workspace.bucket}/")


def assert_caught_and_repaired(
    workspace: Workspace, emulator: Emulator, rule: Rule, run: subprocess.CompletedProcess[str]
) -> None:
    assert len(rule.applied) == 1, f"the proxy flipped {len(rule.applied)} bytes, not one: {rule}"
    key = key_of(workspace, rule.applied[0])
    output = run.stdout + run.stderr
    assert VERIFIED not in workspace.keys(PREFIX), f"{VERIFIED} was written although {key} was corrupted"
    assert run.returncode == 30, f"the run exited {run.returncode}, not 30 (task failed)"
    errors = [line for line in output.splitlines() if "Error:" in line or "error:" in line]
    assert key in output, f"the output does not name {key}; its errors: {errors[-3:]}"

    workspace.proxy.clear()  # type: ignore[union-attr]
    luigi_ok(workspace, "VerifyDay", "--date", DAY.isoformat())
    assert_days_exact(workspace, emulator, [DAY])


def test_a_byte_flipped_in_a_data_put_is_caught_and_the_rerun_repairs_it(
    proxied_workspace: Workspace, emulator: Emulator
) -> None:
    rule = proxied_workspace.proxy.add(  # type: ignore[union-attr]
        Rule(FLIP, method="PUT", path=DATA_PATH, query_excludes=("uploadId=",))
    )
    run = proxied_workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert_caught_and_repaired(proxied_workspace, emulator, rule, run)


@pytest.mark.parametrize("emulator", [BIG], indirect=True, ids=["big"])
def test_a_byte_flipped_in_one_uploaded_part_is_caught_and_the_rerun_repairs_it(
    proxied_workspace: Workspace, emulator: Emulator
) -> None:
    proxied_workspace.configure("storage", part_size_mib=5)
    rule = proxied_workspace.proxy.add(Rule(FLIP, method="PUT", path=DATA_PATH, query="partNumber="))  # type: ignore[union-attr]
    run = proxied_workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert_caught_and_repaired(proxied_workspace, emulator, rule, run)


def test_a_byte_flipped_in_the_upload_marker_is_caught_and_the_rerun_repairs_it(
    proxied_workspace: Workspace, emulator: Emulator
) -> None:
    rule = proxied_workspace.proxy.add(Rule(FLIP, method="PUT", path=f"/{UPLOADED}"))  # type: ignore[union-attr]
    run = proxied_workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert_caught_and_repaired(proxied_workspace, emulator, rule, run)
