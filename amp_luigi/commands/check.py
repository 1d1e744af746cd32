"""`python -m amp_luigi check`: everything a new deployment needs, proven before its first cron run.

It checks every setting (no request is made while one is wrong), then the bucket with the requests
amp-luigi itself makes, each on a short-lived object under `<prefix>/_check/`: list, a proven upload
(under `[storage] upload_proof`), read, delete, and the multipart clean-up; with `[staging]
location`, the same on the staging prefix, where every hand-off between a day's tasks goes. For each refusal it names
the IAM action to grant and what amp-luigi does without it. With `--amplitude` it also exports one
early hour (the first hour of `[amplitude] first_date`, which holds little or nothing) to prove the
credentials and the region; without it Amplitude is not asked anything. Secrets are never printed.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import botocore.exceptions

from amp_luigi.errors import AmpLuigiError, ConfigError, TooLargeError
from amp_luigi.hours import HourRange
from amp_luigi.layout import probe_key
from amp_luigi.multipart import MultipartUpload
from amp_luigi.s3 import DENIED, Bucket, error_code

OK, MISSING, FAILED = "ok", "missing", "FAILED"
# Answers that mean "not granted" or "this store has no such operation" (s3rver: 501 NotImplemented).
REFUSED = {*DENIED, "NotImplemented", "501", "MethodNotAllowed", "405"}


@dataclass(frozen=True)
class Step:
    """One checked capability: what it is, the IAM action behind it, and whether amp-luigi needs it."""

    what: str
    permission: str
    needed: bool
    without: str  # what happens without it


@dataclass(frozen=True)
class Result:
    step: Step
    state: str
    detail: str = ""

    @property
    def blocks(self) -> bool:
        return self.state != OK and self.step.needed


LIST = Step("list the bucket", "s3:ListBucket", True, "no day can be checked for completeness")
UPLOAD = Step("upload, proven", "s3:PutObject", True, "no day can be uploaded")
READ = Step("read an object", "s3:GetObject", True, "markers cannot be read: every day is exported again")
DELETE = Step("delete objects", "s3:DeleteObject", True, "reruns cannot replace a day exactly")
MULTIPART_LIST = Step(
    "list multipart uploads",
    "s3:ListBucketMultipartUploads",
    False,
    "uploads left open by a killed run are not cleaned up: add a lifecycle rule for incomplete multipart uploads",
)
MULTIPART_ABORT = Step(
    "abort a multipart upload",
    "s3:AbortMultipartUpload",
    False,
    "a failed large upload's parts stay stored until a lifecycle rule removes them",
)
S3_STEPS = (LIST, UPLOAD, READ, DELETE, MULTIPART_LIST, MULTIPART_ABORT)


def s3_results(bucket: Bucket, prefix: str) -> list[Result]:
    """Each S3 capability, tried in order; a needed one that fails is reported, the rest still tried."""
    key = probe_key(prefix)
    results = [_attempt(LIST, lambda: bucket.listing(key))]
    results.append(
        _attempt(UPLOAD, lambda: bucket.write_json(key, {"amp-luigi": "check"}), f"({bucket.proof.value})")
    )
    uploaded = results[-1].state == OK
    results.append(_attempt(READ, lambda: bucket.read_json(key)) if uploaded else _skipped(READ))
    results.append(_attempt(DELETE, lambda: bucket.delete([key])) if uploaded else _skipped(DELETE))
    results.append(_attempt(MULTIPART_LIST, lambda: bucket.open_uploads(key)))
    results.append(
        _attempt(MULTIPART_ABORT, lambda: MultipartUpload.start(bucket, f"{key}-multipart", {}).abort())
    )
    return results


def amplitude_result(export: Callable[[HourRange, Path], bool], first_date: dt.date, keys: str) -> Result:
    """One export of the first hour of the project's first day: 200 or 404 (no data) prove the keys."""
    step = Step("export one hour", keys, True, "no day can be exported")
    start = dt.datetime.combine(first_date, dt.time())
    hours = HourRange(start, start)
    with tempfile.TemporaryDirectory(prefix="amp-luigi-check-") as scratch:
        try:
            found = export(hours, Path(scratch) / "probe.zip")
        except TooLargeError:
            found = True  # Amplitude answered after checking the keys
        except AmpLuigiError as error:
            return Result(step, FAILED, str(error))
    return Result(step, OK, f"{hours.label()}: {'data' if found else 'no data (404), keys accepted'}")


def _attempt(step: Step, call: Callable[[], object], detail: str = "") -> Result:
    try:
        call()
    except AmpLuigiError as error:
        # Bucket's errors carry S3's own as their cause.
        cause = error.__cause__
        code = error_code(cause) if isinstance(cause, botocore.exceptions.ClientError) else ""
        if code in REFUSED:
            return Result(step, MISSING, f"{code}: {step.without}")
        return Result(step, FAILED, str(error))
    return Result(step, OK, detail)


def _skipped(step: Step) -> Result:
    return Result(step, FAILED, "not tried: the upload before it failed")


def render(results: list[Result], where: str, out: TextIO) -> None:
    print(f"amp-luigi check of {where}", file=out)
    width = max(len(result.step.what) for result in results)
    for result in results:
        need = "needed" if result.step.needed else "optional"
        line = f"  {result.state:<8} {result.step.what:<{width}}  {result.step.permission:<30} {need}"
        print(f"{line}  {result.detail}".rstrip(), file=out)
    blocking = [result for result in results if result.blocks]
    optional = [result for result in results if result.state != OK and not result.step.needed]
    if blocking:
        print(f"\n{len(blocking)} needed check(s) failed: grant or fix them, then run check again.", file=out)
    elif optional:
        print("\nReady, without: " + "; ".join(result.step.without for result in optional) + ".", file=out)
    else:
        print("\nReady: every check passed.", file=out)


def main(*, amplitude_too: bool, out: TextIO, project: str | None = None) -> int:
    """The whole check of `project` (None: of every configured project); 0 only when everything
    amp-luigi needs works, 1 when not, 2 for a setting."""
    from amp_luigi import projects

    try:
        chosen = projects.each(project, exporting=amplitude_too)
    except ConfigError as error:
        print(f"amp-luigi check: {error}", file=out)
        return 2
    blocked = False
    for index, settings in enumerate(chosen):
        print("\n" * bool(index), end="", file=out)
        bucket = settings.open_bucket()
        results = s3_results(bucket, settings.prefix)
        if amplitude_too:
            keys = " / ".join(projects.key_variables(settings.name))
            results.append(amplitude_result(settings.client().download, settings.first_date, keys))
        render(results, settings.where(), out)
        blocked = blocked or any(result.blocks for result in results)
        if settings.staging_bucket:  # [staging] location: the same requests, on the staging prefix
            staging = settings.open_bucket(settings.staging_bucket, settings.staging_prefix)
            staged = s3_results(staging, settings.staging_prefix)
            where = f"s3://{settings.staging_bucket}/{settings.staging_prefix}/"
            render(staged, ", ".join(filter(None, (settings.label(), f"staging {where}"))), out)
            blocked = blocked or any(result.blocks for result in staged)
    return 1 if blocked else 0
