"""Right-sized requests (issue 23): windows of several days, and heavy days split up front, measured
against one request a day in the same run.

    .venv/bin/python benchmarks/windows.py                          # 365 small days at 2 s, then 6 heavy days
    .venv/bin/python benchmarks/windows.py --days 30 --latency 0.5  # a quick look
    .venv/bin/python benchmarks/windows.py --only heavy             # the heavy days alone

Small days: `--days` days of a few events an hour, the emulator waiting `--latency` seconds before
every answer (Amplitude builds an export for seconds to minutes, whatever its size), filled by the
real `luigi --module amp_luigi ExportRange ... --workers 4` command, windowed (the defaults), then
one request a day (`[amplitude] max_window_days = 1`, in a config file read after luigi.cfg).

Heavy days: `--heavy-days` days each too large for one request. The emulator's `max_range_bytes`
(uncompressed event bytes, as the emulator counts them) is set halfway between the largest 6-hour
range of those days and the smallest 12-hour one, so a whole day and its halves are refused (400)
and its quarters fit. No setting makes the current code forget what a day's neighbours needed
(with `max_window_days = 1` it still splits a day up front), so the baseline "one request a day,
nothing learnt" is the code before the windows work (`--before`, default 0dba265), extracted with
`git archive` into a temporary directory (removed afterwards) and put first on the run's PYTHONPATH.
The current code with `max_window_days = 1` is shown between the two.

Each run gets its own key prefix and staging directory on one moto server in its own process
(benchmarks/bench.py). Before a row is printed every day's verified marker is read and its events
compared with the emulator's. Figures: the emulator's record of each request (refused: 400 or 504,
Amplitude's "too large" and "timed out"; 429s apart), the widest request in days, the most requests
in flight at once, the command's wall time, the peak disk use of the staging directory (sampled
every 50 ms over the run by benchmarks/harness.py), the run's client CPU, and the load average
before and after. This is benchmark output, not a test: the figures move with the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amp_luigi.emulator import Emulator, hours_between
from amp_luigi.emulator.server import RequestRecord
from amp_luigi.records import DayRecord
from benchmarks.bench import BUCKET, REPO, Bench, product_bin
from benchmarks.harness import Run, measure

SMALL_FIRST = dt.date(2021, 1, 1)
SMALL = {"events_per_hour": 2, "events_per_part": 1000, "padding_bytes": 0}
HEAVY_FIRST = dt.date(2024, 3, 1)
# Events in every hour, so the 6-hour ranges of a day weigh about the same. Heavy is relative:
# max_range_bytes is chosen from these very days (heavy_limit).
HEAVY: dict[str, Any] = {
    "events_per_hour": 400,
    "events_per_part": 1000,
    "padding_bytes": 0,
    "empty_hours": frozenset(),
}
REFUSED = (400, 504)
ONE_A_DAY = "[amplitude]\nmax_window_days = 1\n"


@dataclass(frozen=True)
class Variant:
    """One way of running the same backfill: its label, the config read after luigi.cfg, its code."""

    label: str
    config: str
    code: Path | None = None  # another tree holding amp_luigi, first on PYTHONPATH; None: this one


@dataclass
class Result:
    label: str
    run: Run
    requests: list[RequestRecord]
    peak_in_flight: int
    events: int = 0

    @property
    def refused(self) -> list[RequestRecord]:
        return [record for record in self.requests if record.status in REFUSED]

    @property
    def rate_limited(self) -> int:
        return sum(1 for record in self.requests if record.status == 429)

    def widest_days(self) -> float:
        return max((request_days(record)[1] for record in self.requests), default=0)


def request_days(record: RequestRecord) -> tuple[dt.date, float]:
    """The first day a request asked for, and how many days its range covers."""
    start, end = (dt.datetime.strptime(hour or "", "%Y%m%dT%H") for hour in (record.start, record.end))
    return start.date(), ((end - start) / dt.timedelta(hours=1) + 1) / 24


def day_hours(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.combine(day, dt.time()), dt.datetime.combine(day, dt.time(23))


def extract_package(revision: str, into: Path) -> Path:
    """amp_luigi as it was at `revision`, from git (neither the work tree nor the index is touched)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision, "amp_luigi"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def backfill(
    bench: Bench, emulator: Emulator, variant: Variant, first: dt.date, days: int, workers: int
) -> Result:
    """`days` days from `first` through ExportRange under a new prefix, every day's events checked;
    exits, with what the emulator saw, when the command fails or a day is missing or short."""
    bench.runs += 1
    prefix = f"windows-{bench.runs}"
    staging = bench.work / f"staging-{bench.runs}"
    staging.mkdir(parents=True)
    cwd, _ = bench.config(keep_gzip=False)
    config = bench.work / f"windows-{bench.runs}.cfg"
    config.write_text(variant.config)
    env = bench.env(emulator, prefix, staging, config)
    if variant.code is not None:
        env["PYTHONPATH"] = str(variant.code)
    stop = first + dt.timedelta(days=days)
    args = ["ExportRange", "--start", str(first), "--stop", str(stop), "--workers", str(workers)]
    command = bench.luigi(variant.label, [*args, "--local-scheduler"])
    emulator.reset_requests()
    run = measure(
        variant.label, command, env=env, cwd=cwd, staging=staging, counters=bench.counters, check=False
    )
    result = Result(variant.label, run, emulator.requests, emulator.peak_in_flight)
    markers = {
        dt.date.fromisoformat(key.rsplit("/", 1)[-1].removesuffix(".json")): key
        for key in bench.keys(f"{prefix}/_verified/")
    }
    wanted = [first + dt.timedelta(days=n) for n in range(days)]
    missing = [day for day in wanted if day not in markers]
    if run.returncode != 0 or missing:
        seen = ", ".join(f"{record.start}-{record.end} {record.status}" for record in result.requests)
        raise SystemExit(
            f"{variant.label}: exit {run.returncode}, {len(missing)} of {days} days not verified "
            f"{[str(day) for day in missing[:5]]}; {len(result.requests)} requests: {seen}\n{run.stderr[-6000:]}"
        )
    for day in wanted:
        body = bench.s3.get_object(Bucket=BUCKET, Key=markers[day])["Body"].read()
        counted = DayRecord.from_json(json.loads(body), markers[day]).events
        if counted != emulator.day_event_count(day):
            raise SystemExit(
                f"{variant.label}: {day} holds {counted} events, the emulator {emulator.day_event_count(day)}"
            )
        result.events += counted
    bench.delete(prefix)
    return result


def heavy_limit(emulator: Emulator, days: list[dt.date]) -> int:
    """A max_range_bytes that refuses every whole day and half day of `days` and lets every quarter
    through (the 6-hour ranges the halving reaches): halfway between the largest quarter and the
    smallest half."""
    quarters, halves = [], []
    for day in days:
        hours = [emulator.dataset.hour(hour).raw_bytes for hour in hours_between(*day_hours(day))]
        quarters += [sum(hours[h : h + 6]) for h in range(0, 24, 6)]
        halves += [sum(hours[:12]), sum(hours[12:])]
    if max(quarters) >= min(halves):
        raise SystemExit(f"no limit splits these days in quarters: {max(quarters)} >= {min(halves)}")
    return (max(quarters) + min(halves)) // 2


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def small_days(bench: Bench, args: argparse.Namespace, before: Path | None) -> None:
    emulator = bench.emulator(SMALL, [])
    emulator.latency_seconds = args.latency
    last = day_hours(SMALL_FIRST + dt.timedelta(days=args.days - 1))[1]
    for hour in hours_between(day_hours(SMALL_FIRST)[0], last):
        emulator.dataset.hour(hour)  # built before any clock starts
    variants = [
        Variant("windowed (defaults)", args.resources),
        Variant("one request a day (max_window_days = 1)", args.resources + ONE_A_DAY),
    ]
    if before is not None:
        variants.append(Variant(f"one request a day, the code at {args.before}", args.resources, before))
    print(
        f"\n{args.days} small days ({SMALL['events_per_hour']} events an hour on average), {args.latency:g} s "
        f"before every answer, ExportRange --workers {args.workers}, export cap {args.cap or 'of luigi.cfg'}\n"
    )
    print(
        "| run | requests | refused (400/504) | 429 | widest request, days | most in flight | wall s "
        "| peak staging KiB | client CPU s | load before-after |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    results = []
    for variant in variants:
        began = load()
        result = backfill(bench, emulator, variant, SMALL_FIRST, args.days, args.workers)
        results.append(result)
        print(
            f"| {result.label} | {len(result.requests)} | {len(result.refused)} | {result.rate_limited} "
            f"| {result.widest_days():g} | {result.peak_in_flight} | {result.run.wall:.1f} "
            f"| {result.run.peak_staging / 1024:,.0f} | {result.run.cpu:.1f} | {began}-{load()} |",
            flush=True,
        )
    windowed, baseline = results[:2]
    ranges = sorted(request_days(record) for record in windowed.requests)
    print(
        f"\nwindowed requests by first day (days each): {', '.join(f'{day:%m-%d} {width:g}' for day, width in ranges)}"
    )
    print(
        f"windowed / one request a day: requests {len(windowed.requests) / len(baseline.requests):.3f}, "
        f"wall {windowed.run.wall / baseline.run.wall:.3f}, "
        f"peak staging {windowed.run.peak_staging / max(baseline.run.peak_staging, 1):.2f}, "
        f"client CPU {windowed.run.cpu / baseline.run.cpu:.2f} "
        f"(every run verified all {args.days} days, {windowed.events:,} events, as the emulator counts them)"
    )


def heavy_days(bench: Bench, args: argparse.Namespace, before: Path | None) -> None:
    emulator = bench.emulator(HEAVY, [])
    emulator.latency_seconds = args.latency
    days = [HEAVY_FIRST + dt.timedelta(days=n) for n in range(args.heavy_days)]
    emulator.max_range_bytes = heavy_limit(emulator, days)
    variants = [
        Variant("windowed (defaults)", args.resources),
        Variant("current code, max_window_days = 1", args.resources + ONE_A_DAY),
    ]
    if before is not None:
        variants.append(Variant(f"one request a day, the code at {args.before}", args.resources, before))
    print(
        f"\n{args.heavy_days} heavy days ({HEAVY['events_per_hour']} events an hour on average, no empty hour), "
        f"max_range_bytes {emulator.max_range_bytes:,} (a day and its halves refused, its quarters fit), "
        f"{args.latency:g} s before every answer, ExportRange --workers {args.workers}\n"
    )
    print(
        "| run | requests | refused (400/504) | requests per day | refused after the first day | wall s "
        "| peak staging MiB | load before-after |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    details = []
    results = []
    for variant in variants:
        began = load()
        result = backfill(bench, emulator, variant, HEAVY_FIRST, args.heavy_days, args.workers)
        results.append(result)
        asked = Counter(request_days(record)[0] for record in result.requests)
        refused = Counter(request_days(record)[0] for record in result.refused)
        later = sum(count for day, count in refused.items() if day != HEAVY_FIRST)
        print(
            f"| {result.label} | {len(result.requests)} | {len(result.refused)} "
            f"| {len(result.requests) / args.heavy_days:.2f} | {later} | {result.run.wall:.1f} "
            f"| {result.run.peak_staging / 2**20:.1f} | {began}-{load()} |",
            flush=True,
        )
        per_day = ", ".join(f"{day:%m-%d} {asked[day]} ({refused[day]})" for day in days)
        details.append(f"{result.label}: requests (refused) per day: {per_day}")
    print("\n" + "\n".join(details))
    windowed, baseline = results[0], results[-1]
    print(
        f"\nwindowed / {baseline.label}: requests {len(windowed.requests) / len(baseline.requests):.3f}, "
        f"refused {len(windowed.refused)} against {len(baseline.refused)}, "
        f"wall {windowed.run.wall / baseline.run.wall:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=365, help="small days (default 365)")
    parser.add_argument("--latency", type=float, default=2.0, help="emulator seconds before each answer")
    parser.add_argument("--heavy-days", type=int, default=6)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--cap", type=int, help="[resources] amplitude_export (default: luigi.cfg's)")
    parser.add_argument("--only", choices=("small", "heavy"), help="one of the two backfills")
    parser.add_argument(
        "--before",
        default="0dba265",
        help="the code before the windows work: the heavy days' baseline (default 0dba265)",
    )
    parser.add_argument(
        "--small-before", action="store_true", help="run the small days with the code --before too"
    )
    parser.add_argument("--dev-venv", action="store_true", help="run from this venv, not a user's install")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "amp-luigi-bench-cache"))
    args = parser.parse_args()
    args.resources = f"[resources]\namplitude_export = {args.cap}\n" if args.cap else ""
    cache = Path(args.cache_dir)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="amp-windows-")))
        before = extract_package(args.before, work / "before")
        bench = Bench(work, cache, Path(sys.executable).parent if args.dev_venv else product_bin(cache))
        stack.callback(bench.stop)
        print(f"{os.cpu_count()} cores, load average {load()} at the start")
        if args.only in (None, "small"):
            small_days(bench, args, before if args.small_before else None)
        if args.only in (None, "heavy"):
            heavy_days(bench, args, before)


if __name__ == "__main__":
    main()
