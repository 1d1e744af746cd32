"""Fault injection for the real `luigi` command: `luigi --module tests.luigi_hooks VerifyDay ...`.

Importing this module imports amp_luigi (so its tasks resolve) and then, driven by the environment:

- `AMP_TEST_PAUSE=<point>:<n>` freezes the run the n-th time it reaches `<point>`, after creating the
  file `$AMP_TEST_SIGNAL_DIR/<point>`, so a test can SIGKILL it at exactly that moment. Points:
  `start:<Task>` (a stage's run() begins: every earlier stage is done), `extract` (a member is being
  inflated, its `.partial` file open), `s3:<operation>` (a data-object call: `put_object`,
  `upload_part`, `list_objects_v2`...), `cleanup` (VerifyDay proved the day, its staging not yet removed nor its marker written),
  and `iceberg:commit` / `iceberg:committed` (IcebergDay's data files are written and the catalog
  not yet told / the catalog committed, the marker not yet written).
- `AMP_TEST_S3_FAULT=<Operation>:<status>:<code>[:<times>]` answers that S3 operation (botocore's name,
  e.g. `PutObject`, `ListObjectsV2`) with the error, through botocore's own parsing and retries.

`s3_faults` is also used in-process by tests/e2e/test_faults.py.
"""

from __future__ import annotations

import collections
import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.awsrequest

import amp_luigi  # noqa: F401 - registers the tasks for the luigi command
from amp_luigi import aws, layout, members, s3, staging_area, tasks

_lock = threading.Lock()
_counts: collections.Counter[str] = collections.Counter()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def error_response(status: int, code: str, url: str = "") -> botocore.awsrequest.AWSResponse:
    body = f"<Error><Code>{code}</Code><Message>injected {code}</Message></Error>".encode()
    return botocore.awsrequest.AWSResponse(url, status, {"Content-Type": "application/xml"}, _Raw(body))


class S3Faults:
    """Answers the next `times` calls of `operation` with an S3 error; counts every call it sees."""

    def __init__(self) -> None:
        self.rules: list[list[Any]] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.injected: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def add(self, operation: str, status: int, code: str, times: int | None = 1) -> None:
        with self._lock:
            self.rules.append([operation, status, code, times])

    def __call__(self, request: Any, event_name: str = "", **_: Any) -> Any:
        name = event_name.rsplit(".", 1)[-1]  # before-send.s3.PutObject
        with self._lock:
            self.calls[name] += 1
            for rule in self.rules:
                operation, status, code, times = rule
                if operation == name and times != 0:
                    if times is not None:
                        rule[3] = times - 1
                    self.injected[name] += 1
                    return error_response(status, code, getattr(request, "url", ""))
        return None

    def install(self, session: Any) -> None:
        session.events.register("before-send.s3", self, unique_id=f"s3-faults-{id(self)}")


def s3_faults(faults: S3Faults) -> Callable[..., Any]:
    """A replacement for amp_luigi.aws.session_and_config whose sessions answer through `faults`."""
    original = aws.session_and_config

    @functools.wraps(original)
    def _aws(*args: Any) -> Any:
        session, config = original(*args)
        faults.install(session)
        return session, config

    return _aws


def _reached(point: str) -> bool:
    wanted, _, nth = os.environ.get("AMP_TEST_PAUSE", "").rpartition(":")
    if wanted != point:
        return False
    with _lock:
        _counts[point] += 1
        return _counts[point] == int(nth)


def _pause(point: str) -> None:
    (Path(os.environ["AMP_TEST_SIGNAL_DIR"]) / point.replace(":", "_")).write_text(str(os.getpid()))
    threading.Event().wait()  # until the test kills this process


def _checkpoint(point: str) -> None:
    if _reached(point):
        _pause(point)


def _install_pauses() -> None:
    for task in (tasks.ExtractDay, tasks.UploadDay, tasks.VerifyDay):

        def run(self: Any, _original: Callable[..., Any] = task.run, _name: str = task.__name__) -> Any:
            _checkpoint(f"start:{_name}")
            return _original(self)

        task.run = run  # type: ignore[method-assign]

    original_inflate = members.inflate

    def inflate(chunks: Any, member: str, max_ratio: int) -> Any:
        first = True
        for out in original_inflate(chunks, member, max_ratio):
            if first:
                _checkpoint("extract")
                first = False
            yield out

    members.inflate = inflate  # type: ignore[assignment]

    original_request = s3.Bucket.request

    def request(self: Any, action: str, key: str, operation: Any, **kwargs: Any) -> Any:
        _checkpoint(f"s3:{getattr(operation, '__name__', '')}")
        return original_request(self, action, key, operation, **kwargs)

    s3.Bucket.request = request  # type: ignore[method-assign]

    for area in (staging_area.LocalArea, staging_area.S3Area):

        def remove_tree(self: Any, path: Any, original: Any = area.remove_tree) -> None:
            if layout.date_named(path.name) is not None:  # a day's directory: VerifyDay's clean-up
                _checkpoint("cleanup")
            original(self, path)

        area.remove_tree = remove_tree  # type: ignore[method-assign]

    if os.environ["AMP_TEST_PAUSE"].startswith("iceberg:"):
        from pyiceberg.table import Transaction

        original_commit = Transaction.commit_transaction

        def commit_transaction(self: Any) -> Any:
            _checkpoint("iceberg:commit")
            table = original_commit(self)
            _checkpoint("iceberg:committed")
            return table

        Transaction.commit_transaction = commit_transaction  # type: ignore[method-assign]


if os.environ.get("AMP_TEST_PAUSE"):
    _install_pauses()

if os.environ.get("AMP_TEST_S3_FAULT"):
    _faults = S3Faults()
    for _spec in os.environ["AMP_TEST_S3_FAULT"].split(","):
        _op, _status, _code, *_times = _spec.split(":")
        _faults.add(_op, int(_status), _code, int(_times[0]) if _times else None)
    aws.session_and_config = s3_faults(_faults)  # type: ignore[assignment]
