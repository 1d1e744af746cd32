"""`python -m amp_luigi check`: a new deployment's settings, S3 permissions and (on request) Amplitude keys."""

from __future__ import annotations

import io
import subprocess

import pytest

from amp_luigi import aws, projects
from amp_luigi.commands import check
from amp_luigi.emulator import Emulator
from tests.conftest import API_KEY, SECRETS, Workspace
from tests.luigi_hooks import S3Faults, s3_faults


def run_check(workspace: Workspace, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return workspace.amp_luigi("check", *args, env=env)


def row(text: str, what: str) -> str:
    """The table row of one check."""
    return next(line for line in text.splitlines() if f" {what} " in line)


def test_a_deployment_with_every_permission_is_ready_and_amplitude_is_not_asked(
    workspace: Workspace, emulator: Emulator
) -> None:
    run = run_check(workspace)
    assert run.returncode == 0, run.stdout + run.stderr
    for what in ("list the bucket", "upload, proven", "read an object", "delete objects",
                 "list multipart uploads", "abort a multipart upload"):  # fmt: skip
        assert row(run.stdout, what).split()[0] == "ok", run.stdout
    assert "(etag)" in row(run.stdout, "upload, proven"), "moto on a custom endpoint is proven by ETag"
    assert "Ready: every check passed." in run.stdout
    assert emulator.requests == []
    assert workspace.keys() == {}, "the probe objects are removed"


def test_staging_in_s3_is_checked_with_the_same_requests_on_its_prefix(
    workspace: Workspace, emulator: Emulator
) -> None:
    staging = f"amp-staging-{workspace.bucket}"
    workspace.s3.create_bucket(Bucket=staging)
    workspace.configure("staging", location=f"s3://{staging}/stage")
    run = run_check(workspace)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"amp-luigi check of staging s3://{staging}/stage/" in run.stdout
    assert run.stdout.count("Ready: every check passed.") == 2
    workspace.configure("staging", location=f"s3://{staging}-gone/stage")
    missing = run_check(workspace)
    assert missing.returncode == 1
    assert f"{staging}-gone" in missing.stdout and "does not exist" in missing.stdout


def test_with_amplitude_one_early_hour_is_exported_to_prove_the_keys(
    workspace: Workspace, emulator: Emulator
) -> None:
    run = run_check(workspace, "--amplitude")
    assert run.returncode == 0, run.stdout + run.stderr
    assert row(run.stdout, "export one hour").split()[0] == "ok"
    assert len(emulator.requests) == 1


def test_wrong_amplitude_keys_fail_the_check_without_showing_them(
    workspace: Workspace, emulator: Emulator
) -> None:
    run = run_check(workspace, "--amplitude", AMP_SECRET_KEY="wrong-secret-SHOULD-NOT-SHOW")
    assert run.returncode == 1
    line = row(run.stdout, "export one hour")
    assert line.split()[0] == "FAILED" and "AMP_API_KEY" in line and "region" in line
    assert "1 needed check(s) failed" in run.stdout
    for secret in (*SECRETS, "wrong-secret-SHOULD-NOT-SHOW"):
        assert secret not in run.stdout + run.stderr
    assert API_KEY not in run.stdout + run.stderr


def test_a_wrong_setting_is_reported_before_any_request(workspace: Workspace, emulator: Emulator) -> None:
    run = run_check(workspace, "--amplitude", AWS_BUCKET_NAME="s3://x-bucket/data")
    assert run.returncode == 2
    assert "AWS_BUCKET_NAME" in run.stdout and "set it to x-bucket and AMP_S3_PREFIX" in run.stdout
    assert emulator.requests == []


@pytest.fixture
def denied(in_process: Workspace, monkeypatch: pytest.MonkeyPatch) -> S3Faults:
    faults = S3Faults()
    monkeypatch.setattr(aws, "session_and_config", s3_faults(faults))
    projects.reset()
    return faults


@pytest.mark.parametrize(
    ("operation", "what", "code"),
    [
        ("DeleteObjects", "delete objects", 1),
        ("ListObjectsV2", "list the bucket", 1),
        ("PutObject", "upload, proven", 1),
        ("ListMultipartUploads", "list multipart uploads", 0),
        ("AbortMultipartUpload", "abort a multipart upload", 0),
    ],
)
def test_a_denied_permission_is_named_with_its_iam_action_and_consequence(
    in_process: Workspace, denied: S3Faults, operation: str, what: str, code: int
) -> None:
    denied.add(operation, 403, "AccessDenied", times=None)
    out = io.StringIO()
    assert check.main(amplitude_too=False, out=out) == code
    text = out.getvalue()
    line = row(text, what)
    assert line.split()[0] == "missing", text
    step = next(step for step in check.S3_STEPS if step.what == what)
    assert step.permission in line and step.without in line
    assert [row(text, other.what).split()[0] for other in check.S3_STEPS if other.what != what].count(
        "missing"
    ) == 0
    if code == 0:
        assert "Ready, without:" in text and step.without in text


@pytest.mark.parametrize("s3_backend", ["s3rver-http"], indirect=True)
def test_a_store_without_multipart_listing_or_abort_is_ready_with_what_that_means(
    backend_workspace: Workspace, emulator: Emulator
) -> None:
    run = run_check(backend_workspace)
    assert run.returncode == 0, run.stdout + run.stderr
    listing, abort = row(run.stdout, "list multipart uploads"), row(run.stdout, "abort a multipart upload")
    assert listing.split()[0] == "missing" and "NotImplemented" in listing and "lifecycle rule" in listing
    assert abort.split()[0] == "missing" and "MethodNotAllowed" in abort
    assert "Ready, without:" in run.stdout
    assert backend_workspace.keys() == {}
