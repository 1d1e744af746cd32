"""What the day benchmark runs: both pipelines on one day, the S3 floor, memory flatness, no-op ranges.

Every figure is judged against what the same run measured on the same machine at the same time:
the floor is the day's objects PUT from memory by a bare boto3 client (4 threads, one object per
member, no checksum, no body hash) to the same moto server; start-up is a run with nothing to do
(amp-luigi: VerifyDay of a verified day; the naive script: importing boto3 and requests). So
`wall / (floor + start-up)` is what a pipeline adds to what S3 and Python cost anyway.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import gzip
import json
import sys
import time
from dataclasses import dataclass, field

from amp_luigi.emulator import Emulator
from benchmarks.bench import BUCKET, DAY, Bench, day_hours
from benchmarks.harness import MIB, Run, Spread, Summary, cpu_seconds, summarize

EVENT_BYTES = 1700  # an emulator event without padding or noise, roughly
FORMATS = {False: ".json", True: ".json.gz"}


def spec_for(
    mib: float, *, padding: int, noise: int, members_per_hour: int | None, seed: int = 0
) -> dict[str, int]:
    """Emulator settings for a day of about `mib` MiB of NDJSON (22 hours with events)."""
    per_hour = max(1, round(mib * MIB / (22 * (EVENT_BYTES + padding + noise))))
    spec = {"events_per_hour": per_hour, "padding_bytes": padding, "noise_bytes": noise, "seed": seed}
    if members_per_hour:
        # An hour draws up to 1.5x the mean: parts of 1.5 * mean / members hold it in that many.
        spec["events_per_part"] = max(1, -(-per_hour * 3 // (2 * members_per_hour)))
    return spec


@dataclass
class FormatResult:
    """One output format: each pipeline's runs, the floors and start-ups measured between them."""

    keep_gzip: bool
    runs: dict[str, list[Run]] = field(default_factory=dict)
    floors: list[float] = field(default_factory=list)
    floor_s3_cpu: list[float] = field(default_factory=list)
    startups: dict[str, list[float]] = field(default_factory=dict)

    def add(self, run: Run) -> None:
        self.runs.setdefault(run.label, []).append(run)


def same_events(bench: Bench, emulator: Emulator, naive_prefix: str, amp_prefix: str) -> tuple[int, int]:
    """Both pipelines' objects, compared by name, SHA-256 and event count; (objects, events)."""
    naive_objects, amp_objects = bench.landed(naive_prefix), bench.landed(amp_prefix)
    if naive_objects != amp_objects:
        differing = sorted(set(naive_objects.items()) ^ set(amp_objects.items()))[:5]
        raise SystemExit(f"naive and amp-luigi put different objects in S3: {differing}")
    if not amp_objects:
        raise SystemExit("nothing landed in S3")
    events = sum(count for _sha, count in amp_objects.values())
    if events != emulator.day_event_count(DAY):
        raise SystemExit(f"S3 holds {events} events, the emulator made {emulator.day_event_count(DAY)}")
    return len(amp_objects), events


def s3_floor(bench: Bench, emulator: Emulator, keep_gzip: bool) -> tuple[float, float]:
    """(wall, moto's CPU) for the day's objects PUT from memory by the bare client, 4 at a time."""
    bodies = [
        data if keep_gzip else gzip.decompress(data)
        for _name, data in emulator.dataset.members(*day_hours(DAY))
    ]
    prefix = f"floor-{bench.runs}"
    s3_cpu, started = cpu_seconds(bench.moto.pid), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda n: bench.bare_s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{n}", Body=bodies[n]),
                range(len(bodies)),
            )
        )
    wall, s3_cpu = time.perf_counter() - started, cpu_seconds(bench.moto.pid) - s3_cpu
    bench.delete(prefix)
    return wall, s3_cpu


def naive_startup(bench: Bench, emulator: Emulator) -> float:
    """The naive script's fixed cost: Python starting and importing boto3 and requests."""
    command = [str(bench.bin / "python"), "-c", "import boto3, requests"]
    return bench.run(emulator, "naive start-up", command, "startup").wall


def day_runs(bench: Bench, emulator: Emulator, runs: int) -> list[FormatResult]:
    """Naive, amp-luigi and amp-luigi without upload proofs, alternately, `runs` times per format."""
    results = []
    for keep_gzip, fmt in FORMATS.items():
        result = FormatResult(keep_gzip)
        for _ in range(runs):
            naive, naive_prefix = bench.run_naive(emulator, f"naive {fmt}", keep_gzip=keep_gzip)
            amp, amp_prefix = bench.run_amp(emulator, f"amp-luigi {fmt}", keep_gzip=keep_gzip)
            # The same run without proving uploads by the store's answer: the proof's cost.
            unproven, unproven_prefix = bench.run_amp(
                emulator, f"amp-luigi {fmt}, upload_proof = none", keep_gzip=keep_gzip, proof="none"
            )
            objects, events = same_events(bench, emulator, naive_prefix, amp_prefix)
            # Nothing left to do for the day amp-luigi just verified: its start-up, scheduling, one GET.
            noop, _ = bench.run_amp(emulator, "amp-luigi start-up", keep_gzip=keep_gzip, prefix=amp_prefix)
            if noop.amplitude_requests or noop.s3_requests > 2:
                raise SystemExit(f"the no-op run did work: {noop}")
            result.startups.setdefault("amp-luigi", []).append(noop.wall)
            result.startups.setdefault("naive", []).append(naive_startup(bench, emulator))
            floor, floor_cpu = s3_floor(bench, emulator, keep_gzip)
            result.floors.append(floor)
            result.floor_s3_cpu.append(floor_cpu)
            for run in (naive, amp, unproven):
                result.add(run)
            print(
                f"  {fmt}: naive {naive.wall:.1f} s, amp-luigi {amp.wall:.1f} s (unproven {unproven.wall:.1f} s), "
                f"floor {floor:.1f} s, start-up {noop.wall:.2f} s; same {objects} objects, {events} events in S3",
                file=sys.stderr,
            )
            for prefix in (naive_prefix, amp_prefix, unproven_prefix):
                bench.delete(prefix)
        results.append(result)
    return results


TABLE_HEAD = (
    "| pipeline | wall s | client CPU s | S3 floor s | start-up s | wall / (floor + start-up) "
    "| largest process peak RSS MiB | PSS sum peak MiB | peak staging MiB (x zip) | Amplitude requests "
    "| S3 requests | S3 server CPU s |"
)


def table(results: list[FormatResult], zip_bytes: int) -> list[str]:
    """One row per pipeline and format: medians, (lowest-highest) over the runs."""
    lines = [TABLE_HEAD, "| --- |" + " ---: |" * 11]
    for result in results:
        floor = Spread.of(result.floors)
        for label, runs in result.runs.items():
            summary: Summary = summarize(runs)
            starts = result.startups["naive" if label.startswith("naive") else "amp-luigi"]
            startup = Spread.of(starts)
            # Per round: each run against the floor and start-up measured next to it.
            ratios = Spread.of(
                [r.wall / (f + s) for r, f, s in zip(runs, result.floors, starts, strict=True)]
            )
            lines.append(
                f"| {label} | {summary.wall.show()} | {summary.cpu.show()} | {floor.show()} | {startup.show(digits=2)} | "
                f"{ratios.show(digits=2)} | {summary.peak_rss / MIB:.0f} | {summary.peak_pss / MIB:.0f} | "
                f"{summary.peak_staging / MIB:.0f} ({summary.peak_staging / zip_bytes:.1f}) | "
                f"{summary.amplitude_requests} | {summary.s3_requests} | {summary.s3_cpu.show()} |"
            )
        fmt = FORMATS[result.keep_gzip]
        lines.append(
            f"| S3 alone: PUT the {fmt} objects from memory | {floor.show()} | | | | | | | | | | "
            f"{Spread.of(result.floor_s3_cpu).show()} |"
        )
    return lines


def proof_cost(results: list[FormatResult]) -> str:
    """What proving every upload by the store's answer (the ETag's MD5 on moto) costs per day."""
    costs = []
    for result in results:
        fmt = FORMATS[result.keep_gzip]
        proven = summarize(result.runs[f"amp-luigi {fmt}"])
        unproven = summarize(result.runs[f"amp-luigi {fmt}, upload_proof = none"])
        costs.append(
            f"{fmt} {proven.cpu.median - unproven.cpu.median:+.2f} s CPU, "
            f"{proven.wall.median - unproven.wall.median:+.2f} s wall"
        )
    return (
        "Proving every upload (upload_proof = etag, as on moto) vs none, medians: " + "; ".join(costs) + "."
    )


def flatness(bench: Bench, sizes: list[tuple[float, dict[str, int]]]) -> list[str]:
    """Peak memory of VerifyDay (.json output) over days of growing size: it should not grow."""
    lines = [
        "| day (NDJSON MiB) | zip MiB | wall s | largest process peak RSS MiB | PSS sum peak MiB | peak staging MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mib, spec in sizes:
        print(f"flatness: a day of ~{mib:g} MiB ...", file=sys.stderr)
        emulator = bench.emulator(spec, [DAY])
        zipped, raw = bench.zip_size(emulator)
        run, prefix = bench.run_amp(emulator, f"{mib:g} MiB")
        bench.delete(prefix)
        lines.append(
            f"| {raw / MIB:.0f} | {zipped / MIB:.0f} | {run.wall:.1f} | {run.peak_rss / MIB:.0f} | "
            f"{run.peak_pss / MIB:.0f} | {run.peak_staging / MIB:.0f} |"
        )
    return lines


def nothing_to_do(bench: Bench, emulator: Emulator, days: int) -> list[str]:
    """ExportRange and RangeDaily over `days` verified days: time and S3 requests to decide.

    Raises SystemExit when either runs a task, asks Amplitude or S3 more than twice: a check that
    only warned let a regression through as a figure.
    """
    prefix = "range"
    first = DAY - dt.timedelta(days=days)
    body = json.dumps({"objects": [], "events": 0}).encode()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda n: bench.s3.put_object(
                    Bucket=BUCKET, Key=f"{prefix}/_verified/{first + dt.timedelta(days=n)}.json", Body=body
                ),
                range(days),
            )
        )
    lines = [
        "| check | wall s | S3 requests | Amplitude requests |",
        "| --- | ---: | ---: | ---: |",
    ]
    for task in ("ExportRange", "RangeDaily --of VerifyDay"):
        args = [*task.split(), "--start", first.isoformat(), "--stop", DAY.isoformat(), "--local-scheduler"]
        bench.runs += 1
        run = bench.run(emulator, task, bench.luigi(task, args), prefix)
        problems = []
        if "complete ones were encountered" not in run.stderr or "ran successfully" in run.stderr:
            problems.append("it did not find every day complete")
        if run.amplitude_requests or run.s3_requests > 2:
            problems.append(
                f"{run.amplitude_requests} Amplitude and {run.s3_requests} S3 requests (at most 2)"
            )
        if problems:
            raise SystemExit(
                f"{task} over {days} verified days: {'; '.join(problems)}:\n{run.stderr[-3000:]}"
            )
        lines.append(
            f"| {task.split()[0]} over {days} verified days | {run.wall:.2f} | {run.s3_requests} | {run.amplitude_requests} |"
        )
    bench.delete(prefix)
    return lines


def parquet_stage(bench: Bench, emulator: Emulator) -> list[str]:
    """ParquetDay alone on a day VerifyDay landed as .json.gz: time, CPU, peak memory, sizes."""
    _, prefix = bench.run_amp(emulator, "VerifyDay .json.gz", keep_gzip=True)
    bench.runs += 1
    args = ["ParquetDay", "--date", DAY.isoformat(), "--local-scheduler"]
    run = bench.run(emulator, "ParquetDay", bench.luigi("ParquetDay", args), prefix, keep_gzip=True)
    gz = sum(bench.keys(f"{prefix}/{DAY.isoformat()}/").values())
    parquet = bench.keys(f"{prefix}_parquet/")
    size = sum(parquet.values())
    return [
        "| stage | wall s | client CPU s | S3 server CPU s | largest process peak RSS MiB | Parquet MiB "
        "| .json.gz MiB | Parquet / .json.gz | files |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| ParquetDay | {run.wall:.1f} | {run.cpu:.1f} | {run.s3_cpu:.1f} | {run.peak_rss / MIB:.0f} | "
        f"{size / MIB:.1f} | {gz / MIB:.1f} | {size / gz:.2f} | {len(parquet)} |",
    ]
