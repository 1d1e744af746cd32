"""Serve the Export API emulator until Ctrl-C: `python -m amp_luigi.emulator --port 8123 --api-key K ...`.

`--also-project KEY:SECRET:PROJECT_ID` (repeatable) serves one more project with its own keys and events.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from datetime import date

from amp_luigi.emulator.events import DatasetSpec
from amp_luigi.emulator.server import MAX_CONCURRENT, MAX_RANGE_BYTES, Emulator


def _ints(text: str) -> frozenset[int]:
    return frozenset(int(part) for part in text.split(",") if part)


def _dates(text: str) -> frozenset[date]:
    return frozenset(date.fromisoformat(part) for part in text.split(",") if part)


def _project(text: str) -> tuple[str, str, int]:
    """KEY:SECRET:PROJECT_ID; the secret may hold colons (Basic auth's password may), the key not."""
    api_key, rest = text.split(":", 1)
    secret_key, project_id = rest.rsplit(":", 1)
    return api_key, secret_key, int(project_id)


def main(argv: list[str] | None = None) -> None:
    spec = DatasetSpec()
    parser = argparse.ArgumentParser(prog="python -m amp_luigi.emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--project-id", type=int, default=spec.project_id)
    parser.add_argument("--seed", type=int, default=spec.seed)
    parser.add_argument("--events-per-hour", type=int, default=spec.events_per_hour, help="the mean")
    parser.add_argument("--events-per-part", type=int, default=spec.events_per_part, help="per #n member")
    parser.add_argument("--padding-bytes", type=int, default=spec.padding_bytes, help="filler per event")
    parser.add_argument("--empty-hours", type=_ints, default=spec.empty_hours, help="e.g. 3,4")
    parser.add_argument("--empty-dates", type=_dates, default=spec.empty_dates, help="e.g. 2024-03-02")
    parser.add_argument("--cache-dir", help="keep built hours on disk across runs")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each first byte")
    parser.add_argument("--rate-mib", type=float, help="MiB/s of each body (default: no limit)")
    parser.add_argument("--max-concurrent", type=int, default=MAX_CONCURRENT, help="429 above this")
    parser.add_argument("--max-range-bytes", type=int, default=MAX_RANGE_BYTES, help="400 above this")
    parser.add_argument("--max-range-hours", type=int, help="504 for ranges of more hours")
    parser.add_argument("--forbidden", action="store_true", help="answer 403, as for the wrong region")
    parser.add_argument(
        "--also-project",
        type=_project,
        action="append",
        default=[],
        metavar="KEY:SECRET:PROJECT_ID",
        help="serve one more project (its events seeded by its id); repeatable",
    )
    args = parser.parse_args(argv)
    emulator = Emulator(
        args.api_key,
        args.secret_key,
        port=args.port,
        latency_seconds=args.latency,
        body_mib_per_second=args.rate_mib,
        max_concurrent=args.max_concurrent,
        max_range_bytes=args.max_range_bytes,
        max_range_hours_before_timeout=args.max_range_hours,
        forbidden=args.forbidden,
        cache_dir=args.cache_dir,
        project_id=args.project_id,
        seed=args.seed,
        events_per_hour=args.events_per_hour,
        events_per_part=args.events_per_part,
        padding_bytes=args.padding_bytes,
        empty_hours=args.empty_hours,
        empty_dates=args.empty_dates,
    )
    for api_key, secret_key, project_id in args.also_project:
        emulator.add_project(
            api_key,
            secret_key,
            project_id=project_id,
            seed=project_id,
            events_per_hour=args.events_per_hour,
            events_per_part=args.events_per_part,
            padding_bytes=args.padding_bytes,
            empty_hours=args.empty_hours,
            empty_dates=args.empty_dates,
        )
    with emulator, contextlib.suppress(KeyboardInterrupt):
        print(emulator.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
