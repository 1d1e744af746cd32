"""Staging in S3 ([staging] location) against staging on the worker's disk, on one realistic day: what
S3 staging adds in requests and bytes (what it costs at S3's prices), and what it changes in time,
memory and local disk.

    .venv/bin/python benchmarks/staging.py                            # a ~500 MiB day, 3 runs of each
    .venv/bin/python benchmarks/staging.py --mib 20 --runs 1 --dev-venv   # a smoke run (seconds)

Everything runs on this machine, as benchmarks/day.py does: the Amplitude emulator (in this
process), a moto S3 server (its own process) and `luigi ... VerifyDay` as a child process from a
user's install, measured by harness.py (wall, CPU, peak memory of the whole process tree, peak
disk use of the data directory). The two stagings run alternately, each day under a new prefix, S3's
staging under one of its own in the same bucket. Every S3 request of a run is counted by operation
with the bytes it sent and received (s3_meter.py, in every process of the run); the day's objects
of the two stagings are compared by SHA-256 and event count before anything is printed.

The dollar figures use AWS S3 Standard's list prices in us-east-1 (PUT, COPY, POST, LIST $0.005 per
1,000; GET and others $0.0004 per 1,000; transfer within a region free; storage for the hours the
staging lives, negligible against the requests): what one day's staging costs, printed beside the
figures, never judged.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import scenarios
from benchmarks.bench import BUCKET, DAY, Bench, add_run_arguments, day_hours, open_bench
from benchmarks.harness import MIB, Run, Spread, measure
from benchmarks.s3_meter import totals

# S3 Standard, us-east-1, per 1,000 requests (https://aws.amazon.com/s3/pricing/).
WRITE_PRICE = 0.005  # PUT, COPY, POST, LIST
READ_PRICE = 0.0004  # GET, HEAD and all others
WRITES = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "ListObjectsV2"}
MODES = ("local", "s3")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=float, default=500, help="uncompressed size of the measured day")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each staging")
    parser.add_argument("--noise", type=int, default=160, help="random hex characters per event")
    parser.add_argument("--members-per-hour", type=int, default=4)
    add_run_arguments(parser)
    return parser.parse_args()


def run_day(bench: Bench, emulator: object, mode: str) -> tuple[Run, dict[str, Counter[str]], str]:
    """VerifyDay of the day under a new prefix, staged `mode`, with its S3 requests counted."""
    bench.runs += 1
    prefix = f"run{bench.runs}-{mode}"
    data = bench.work / f"data-{bench.runs}"
    data.mkdir()
    cwd, config = bench.config(keep_gzip=False)
    env = bench.env(emulator, prefix, data, config)  # type: ignore[arg-type]
    log = str(bench.work / f"s3-{bench.runs}")
    env["AMP_BENCH_S3_LOG"] = log
    if mode == "s3":
        env["AMP_STAGING_LOCATION"] = f"s3://{BUCKET}/{prefix}-staging"
    command = bench.luigi(f"{mode} staging", ["VerifyDay", "--date", DAY.isoformat(), "--local-scheduler"])
    at = command.index(str(bench.bin / "luigi"))
    command[at : at + 1] = [str(bench.bin / "python"), "-m", "benchmarks.s3_meter"]
    print(f"  {mode} staging, run {bench.runs} ...", file=sys.stderr, flush=True)
    run = measure(f"{mode} staging", command, env=env, cwd=cwd, staging=data, counters=bench.counters)
    if bench.keys(f"{prefix}-staging/"):
        raise SystemExit(f"{mode} staging left objects under {prefix}-staging/")
    return run, totals(log), prefix


def dollars(counts: dict[str, Counter[str]]) -> float:
    return sum(
        count["requests"] * (WRITE_PRICE if operation in WRITES else READ_PRICE) / 1000
        for operation, count in counts.items()
    )


def summed(counts: dict[str, Counter[str]], field: str) -> int:
    return sum(count[field] for count in counts.values())


def main() -> None:
    args = arguments()
    with contextlib.ExitStack() as stack:
        bench = open_bench(args, stack)
        print(f"generating a day of ~{args.mib:g} MiB with the emulator ...", file=sys.stderr)
        spec = scenarios.spec_for(
            args.mib, padding=0, noise=args.noise, members_per_hour=args.members_per_hour
        )
        emulator = bench.emulator(spec, [DAY])
        zip_bytes, raw_bytes = bench.zip_size(emulator)
        members = len(list(emulator.dataset.members(*day_hours(DAY))))
        runs: dict[str, list[Run]] = {mode: [] for mode in MODES}
        counts: dict[str, dict[str, Counter[str]]] = {}
        landed: dict[str, dict[str, tuple[str, int]]] = {}
        load = os.getloadavg()
        for _ in range(args.runs):
            for mode in MODES:
                run, counted, prefix = run_day(bench, emulator, mode)
                runs[mode].append(run)
                counts[mode] = counted  # the same requests every run: the day and its sizes are fixed
                landed[mode] = bench.landed(prefix)
                bench.delete(prefix)
        if landed["local"] != landed["s3"]:
            raise SystemExit("the two stagings landed different objects")
        events = sum(lines for _, lines in landed["s3"].values())
        print(
            f"One day: {raw_bytes / MIB:.0f} MiB of NDJSON, {events} events in {members} members, a "
            f"{zip_bytes / MIB:.0f} MiB zip; VerifyDay from nothing, median (lowest-highest) of {args.runs} "
            f"alternating run(s); {os.cpu_count()} cores, load average {load[0]:.1f} before and "
            f"{os.getloadavg()[0]:.1f} after. Both stagings landed the same {len(landed['s3'])} objects.\n"
        )
        print(f"{'':28}{'local staging':>24}{'S3 staging':>24}{'S3 / local':>12}")
        rows = [
            ("wall (s)", lambda run: run.wall, 1),
            ("CPU (s)", lambda run: run.cpu, 1),
            ("peak RSS (MiB)", lambda run: run.peak_rss / MIB, 0),
            ("peak local disk (MiB)", lambda run: run.peak_staging / MIB, 1),
        ]
        for name, figure, digits in rows:
            spreads = {mode: Spread.of([figure(run) for run in runs[mode]]) for mode in MODES}
            cells = [
                f"{spread.median:.{digits}f} ({spread.low:.{digits}f}-{spread.high:.{digits}f})"
                for spread in spreads.values()
            ]
            ratio = (
                spreads["s3"].median / spreads["local"].median if spreads["local"].median else float("nan")
            )
            print(f"{name:28}{cells[0]:>24}{cells[1]:>24}{ratio:>12.2f}")
        print()
        operations = sorted(set(counts["local"]) | set(counts["s3"]))
        print(f"{'S3 requests per day':28}{'local staging':>24}{'S3 staging':>24}{'extra':>12}")
        for operation in operations:
            local, s3 = (counts[mode].get(operation, Counter())["requests"] for mode in MODES)
            print(f"{operation:28}{local:>24}{s3:>24}{s3 - local:>+12}")
        for name, field in (("MiB sent to S3", "sent"), ("MiB read from S3", "received")):
            local, s3 = (summed(counts[mode], field) / MIB for mode in MODES)
            print(f"{name:28}{local:>24.1f}{s3:>24.1f}{s3 - local:>+12.1f}")
        local_cost, s3_cost = dollars(counts["local"]), dollars(counts["s3"])
        print(
            f"{'requests at S3 prices ($)':28}{local_cost:>24.5f}{s3_cost:>24.5f}{s3_cost - local_cost:>+12.5f}"
        )
        extra_year = (s3_cost - local_cost) * 365
        print(
            f"\nS3 staging adds ${s3_cost - local_cost:.5f} of requests to this day (${extra_year:.3f} a year "
            f"of such days) and moves {(summed(counts['s3'], 'sent') - summed(counts['local'], 'sent')) / zip_bytes:.1f}x "
            "the zip's size more into S3 (within a region, transfer is free)."
        )
        walls = {mode: statistics.median(run.wall for run in runs[mode]) for mode in MODES}
        print(f"median extra wall per day: {walls['s3'] - walls['local']:+.1f} s")


if __name__ == "__main__":
    main()
