"""The `luigi` command with every S3 request it makes counted, for benchmarks/staging.py.

Runs `luigi` as its console script does, with one change: each boto3 session amp_luigi makes
(amp_luigi.aws) also reports every S3 request as a line `<operation> <bytes sent> <bytes received>`
in `$AMP_BENCH_S3_LOG.<pid>`, one file per process (ExtractDay's forked workers make requests of
their own). Bytes sent are the request body's; bytes received are a GetObject's body (the other
answers are a few hundred bytes of headers and XML). Nothing else changes.

    AMP_BENCH_S3_LOG=/tmp/s3 python -m benchmarks.s3_meter --module amp_luigi VerifyDay --date 2024-03-01 --local-scheduler
"""

from __future__ import annotations

import functools
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

FIELDS = ("requests", "sent", "received")


def _record(operation: str, sent: int, received: int) -> None:
    with open(f"{os.environ['AMP_BENCH_S3_LOG']}.{os.getpid()}", "a", encoding="ascii") as log:
        log.write(f"{operation} {sent} {received}\n")


def _body_size(body: Any) -> int:
    if body is None:
        return 0
    if isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    return 0  # not a body amp_luigi sends (it sends bytes and bytearrays)


def _install() -> None:
    from amp_luigi import aws

    original = aws.session_and_config

    def before(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_sent"] = _body_size(params.get("body"))

    def after(parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        received = int(parsed.get("ContentLength", 0) or 0) if model.name == "GetObject" else 0
        _record(model.name, context.get("bench_sent", 0), received)

    @functools.wraps(original)
    def metered(*args: Any) -> Any:
        session, config = original(*args)
        session.events.register("before-call.s3", before, unique_id="bench-s3-before")
        session.events.register("after-call.s3", after, unique_id="bench-s3-after")
        return session, config

    aws.session_and_config = metered  # type: ignore[assignment]


def totals(log: str) -> dict[str, Counter[str]]:
    """What the run's processes logged: per operation, requests, bytes sent and bytes received."""
    found: dict[str, Counter[str]] = {}
    folder, stem = Path(log).parent, Path(log).name
    for path in folder.glob(f"{stem}.*"):
        for line in path.read_text(encoding="ascii").splitlines():
            operation, out, back = line.split()
            counts = found.setdefault(operation, Counter())
            counts["requests"] += 1
            counts["sent"] += int(out)
            counts["received"] += int(back)
    return found


if __name__ == "__main__":
    _install()
    from luigi.cmdline import luigi_run

    sys.argv[0] = "luigi"
    luigi_run()
