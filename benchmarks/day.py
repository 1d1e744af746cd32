"""One day of Amplitude export through amp-luigi and through the naive script it replaces, measured.

    .venv/bin/python benchmarks/day.py --mib 500 --runs 5             # the figures of docs/performance.md
    .venv/bin/python benchmarks/day.py --mib 5 --runs 1 --quick       # a smoke run (seconds)
    .venv/bin/python benchmarks/day.py --mib 500 --quick --profile /tmp/prof   # cProfile of each luigi run
    .venv/bin/python benchmarks/day.py --padded                       # the old 35:1 day of ~16 KB events

Everything runs on this machine: the project's Amplitude emulator (in this process), a moto S3
server (its own process) and each pipeline as a child process from a user's install. The default
day is realistic: ~1.9 KB events that differ in ids, times and a random token (the zip ~9x smaller
than the NDJSON), several members per hour. For each output format the naive script, amp-luigi and
amp-luigi without upload proofs run alternately, then a no-op run (start-up) and the S3 floor (the
same objects PUT from memory by a bare client); both pipelines' objects are compared by SHA-256 and
event count before anything is printed. Modules: naive.py (the baseline), harness.py (measuring a
process tree), bench.py (the emulator, moto, commands), scenarios.py (what is run and printed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import scenarios
from benchmarks.bench import DAY, add_run_arguments, day_hours, open_bench
from benchmarks.harness import MIB


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=float, default=500, help="uncompressed size of the measured day")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each pipeline and format")
    parser.add_argument(
        "--noise", type=int, default=160, help="random hex characters per event (compression)"
    )
    parser.add_argument("--members-per-hour", type=int, default=4)
    parser.add_argument(
        "--padded",
        action="store_true",
        help="the older day: ~16 KB events of repeated padding (35:1), one or two members per hour",
    )
    parser.add_argument("--small-mib", type=float, default=100, help="the small day of the flatness check")
    parser.add_argument("--large-mib", type=float, help="the large day of the flatness check (default --mib)")
    parser.add_argument("--range-days", type=int, default=365, help="verified days of the no-op range check")
    parser.add_argument("--quick", action="store_true", help="only the pipelines' table")
    parser.add_argument("--parquet", action="store_true", help="only the ParquetDay stage (its own table)")
    add_run_arguments(parser)
    return parser.parse_args()


def spec(args: argparse.Namespace, mib: float, seed: int = 0) -> dict[str, int]:
    if args.padded:
        return scenarios.spec_for(mib, padding=15000, noise=0, members_per_hour=None, seed=seed)
    return scenarios.spec_for(
        mib, padding=0, noise=args.noise, members_per_hour=args.members_per_hour, seed=seed
    )


def main() -> None:
    args = arguments()
    with contextlib.ExitStack() as stack:
        bench = open_bench(args, stack)
        print(f"generating a day of ~{args.mib:g} MiB with the emulator ...", file=sys.stderr)
        emulator = bench.emulator(spec(args, args.mib), [DAY])
        zip_bytes, raw_bytes = bench.zip_size(emulator)
        events = emulator.day_event_count(DAY)
        members = len(list(emulator.dataset.members(*day_hours(DAY))))
        described = (
            f"{raw_bytes / MIB:.0f} MiB of NDJSON, {events} events of {raw_bytes / events:.0f} bytes in "
            f"{members} members, a {zip_bytes / MIB:.0f} MiB zip ({raw_bytes / zip_bytes:.1f}:1)"
        )
        print(f"  {described}", file=sys.stderr)
        if args.parquet:
            print("\n".join(scenarios.parquet_stage(bench, emulator)))
            return
        load = os.getloadavg()
        results = scenarios.day_runs(bench, emulator, args.runs)
        out = [
            f"One day: {described}; median (lowest-highest) of {args.runs} alternating run(s); "
            f"{os.cpu_count()} cores, load average {load[0]:.1f} before and {os.getloadavg()[0]:.1f} after.",
            "",
            *scenarios.table(results, zip_bytes),
            "",
            scenarios.proof_cost(results),
        ]
        if not args.quick:
            sizes = [(args.small_mib, 1), (args.large_mib or args.mib, 2)]
            out += ["", *scenarios.flatness(bench, [(mib, spec(args, mib, seed)) for mib, seed in sizes])]
            print(f"{args.range_days} days with nothing to do ...", file=sys.stderr)
            out += ["", *scenarios.nothing_to_do(bench, emulator, args.range_days)]
        print("\n".join(out))


if __name__ == "__main__":
    main()
