"""Backfills of tiny days: does the cost per day grow with the length of the range?

    .venv/bin/python benchmarks/scaling.py --days 365 1095                 # ExportRange and RangeDaily
    .venv/bin/python benchmarks/scaling.py --days 1095 --task RangeDaily --chunk 365
    .venv/bin/python benchmarks/scaling.py --days 30 --dev-venv            # a quick look
    .venv/bin/python benchmarks/scaling.py --days 40 --task ExportRange --py-spy .venv/bin/py-spy --profile /tmp/spy

Each run is the real `luigi --module amp_luigi <task> --start ... --stop ... --workers 2` command
over days of a few events each (so the work per day is fixed and small: what is left is the cost of
scheduling, completeness checks and requests), against the moto server in its own process. The
figure is wall / days; client CPU and the S3 server's CPU are shown per day too, so a cost that grows
in moto (its listings scan every key of the bucket) is told apart from one that grows in Luigi.
`--chunk N` runs the range as consecutive commands of N days, the way to run a long RangeDaily.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amp_luigi.emulator import hours_between
from benchmarks.bench import Bench, product_bin
from benchmarks.harness import Run

FIRST = dt.date(2021, 1, 1)
TINY = {"events_per_hour": 2, "events_per_part": 1000, "padding_bytes": 0}
COMMANDS = {"ExportRange": ["ExportRange"], "RangeDaily": ["RangeDaily", "--of", "VerifyDay"]}


def backfill(
    bench: Bench,
    emulator,
    task: str,
    days: int,
    workers: int,
    chunk: int | None,
    batch_days: int | None = None,
) -> Run:
    """`days` tiny days from FIRST through `task`, in one command or consecutive ones of `chunk` days."""
    prefix = f"scaling-{task}-{days}-{chunk or 0}-{bench.runs}"
    runs = []
    for offset in range(0, days, chunk or days):
        start, stop = (
            FIRST + dt.timedelta(days=offset),
            FIRST + dt.timedelta(days=min(days, offset + (chunk or days))),
        )
        args = [*COMMANDS[task], "--start", str(start), "--stop", str(stop), "--workers", str(workers)]
        if batch_days and task == "ExportRange":
            args += ["--batch-days", str(batch_days)]
        bench.runs += 1
        label = f"{task} {days} days" + (f" in chunks of {chunk}" if chunk else "")
        label += f", --batch-days {batch_days}" if batch_days and task == "ExportRange" else ""
        runs.append(bench.run(emulator, label, bench.luigi(label, [*args, "--local-scheduler"]), prefix))
    verified = len(bench.keys(f"{prefix}/_verified/"))
    if verified != days:
        raise SystemExit(f"{task} over {days} tiny days verified {verified}:\n{runs[-1].stderr[-3000:]}")
    bench.delete(prefix)
    return Run(
        label=runs[0].label,
        wall=sum(run.wall for run in runs),
        cpu=sum(run.cpu for run in runs),
        peak_rss=max(run.peak_rss for run in runs),
        peak_pss=max(run.peak_pss for run in runs),
        peak_staging=max(run.peak_staging for run in runs),
        amplitude_requests=sum(run.amplitude_requests for run in runs),
        s3_requests=sum(run.s3_requests for run in runs),
        s3_cpu=sum(run.s3_cpu for run in runs),
    )


def row(run: Run, days: int) -> str:
    return (
        f"| {run.label} | {run.wall:.0f} | {run.wall / days:.3f} | {run.cpu / days:.3f} | "
        f"{run.s3_cpu / days:.3f} | {run.s3_requests / days:.1f} | {run.peak_rss / 2**20:.0f} |"
    )


HEAD = [
    "| backfill, --workers 2 | wall s | s per day | client CPU s per day | S3 server CPU s per day "
    "| S3 requests per day | peak RSS MiB |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, nargs="+", default=[365, 1095])
    parser.add_argument("--task", choices=sorted(COMMANDS), action="append", help="default: both")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, help="run the range as consecutive commands of this many days")
    parser.add_argument(
        "--batch-days", type=int, help="ExportRange's batch size (100000: every day up front, as before)"
    )
    parser.add_argument("--dev-venv", action="store_true", help="run from this venv, not a user's install")
    parser.add_argument(
        "--py-spy", help="a py-spy binary: sample every process of each run into --profile (raw stacks)"
    )
    parser.add_argument("--profile", help="with --py-spy: the directory of the samples")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "amp-luigi-bench-cache"))
    args = parser.parse_args()
    cache = Path(args.cache_dir)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="amp-scaling-")))
        bench = Bench(work, cache, Path(sys.executable).parent if args.dev_venv else product_bin(cache))
        stack.callback(bench.stop)
        if args.py_spy and args.profile:
            bench.profile_dir, bench.py_spy = Path(args.profile), args.py_spy
            bench.profile_dir.mkdir(parents=True, exist_ok=True)
        emulator = bench.emulator(TINY, [])
        last = dt.datetime.combine(FIRST + dt.timedelta(days=max(args.days)), dt.time()) - dt.timedelta(
            hours=1
        )
        for hour in hours_between(dt.datetime.combine(FIRST, dt.time()), last):
            emulator.dataset.hour(hour)  # built before any clock starts
        print(f"load before: {os.getloadavg()[0]:.1f}", file=sys.stderr)
        lines = list(HEAD)
        for task in args.task or sorted(COMMANDS):
            for days in args.days:
                run = backfill(bench, emulator, task, days, args.workers, args.chunk, args.batch_days)
                lines.append(row(run, days))
                print(lines[-1], f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        print("\n".join(lines))


if __name__ == "__main__":
    main()
