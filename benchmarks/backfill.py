"""Backfill of several days: 4 workers with an Amplitude cap of 4 against 1 worker, measured.

    .venv/bin/python benchmarks/backfill.py                    # 8 days, 3 s of Amplitude latency each
    .venv/bin/python benchmarks/backfill.py --days 4 --latency 0.5   # a quick look

Each configuration gets a fresh sandbox (`amp_luigi.commands.sandbox`: the emulator in this process, a moto S3
server in its own process, the project's luigi.cfg) and runs the real `luigi ... ExportRange` command once over the same
days; the wall time is the command's, from start to exit. The emulator waits `--latency` seconds
before each answer, as Amplitude does while it builds an export, which is what parallel days hide.
The cap is `[resources] amplitude_export`, set through a config file read after luigi.cfg. This is
benchmark output, not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from amp_luigi.commands.sandbox import sandbox  # noqa: E402
from amp_luigi.emulator import hours_between  # noqa: E402

FIRST_DAY = dt.date(2024, 3, 1)


def backfill(days: int, workers: int, cap: int, latency: float, events_per_hour: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="amp-luigi-backfill-") as directory:
        root = Path(directory)
        with sandbox(
            root, with_scheduler=False, events_per_hour=events_per_hour, latency=latency, moto_process=True
        ) as box:
            (root / "bench.cfg").write_text(f"[resources]\namplitude_export = {cap}\n")
            box.env["LUIGI_CONFIG_PATH"] = str(root / "bench.cfg")
            stop = FIRST_DAY + dt.timedelta(days=days)
            # Build the emulated days before the clock starts: the emulator shares this process with
            # the benchmark, and its zip building would otherwise be timed as the pipeline's.
            first = dt.datetime.combine(FIRST_DAY, dt.time())
            for hour in hours_between(first, dt.datetime.combine(stop, dt.time()) - dt.timedelta(hours=1)):
                box.emulator.dataset.hour(hour)
            began = time.perf_counter()
            run = box.luigi(
                *("--module", "amp_luigi", "ExportRange", "--start", str(FIRST_DAY), "--stop", str(stop)),
                *("--workers", str(workers), "--local-scheduler", "--lock-pid-dir", str(root / "locks")),
            )
            seconds = time.perf_counter() - began
            verified = box.verified()
            requests = box.emulator.requests
            if run.returncode != 0 or len(verified) != days:
                sys.exit(
                    f"workers={workers}: exit {run.returncode}, {len(verified)} of {days} days\n{run.stderr}"
                )
            return {
                "seconds": seconds,
                "peak": box.emulator.peak_in_flight,
                "requests": len(requests),
                "refused": sum(1 for record in requests if record.status == 429),
                "events": sum(record["events"] for record in verified.values()),
            }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--latency", type=float, default=3.0, help="emulator seconds before each answer")
    parser.add_argument("--events-per-hour", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="runs of each configuration, alternating")
    args = parser.parse_args()
    print(
        f"Backfill of {args.days} days, {args.latency:g} s Amplitude latency per request, "
        f"~{args.events_per_hour} events per hour\n"
    )
    print(
        f"{'configuration':<18} {'run':>4} {'wall':>7} {'peak in flight':>15} {'requests':>9} {'429s':>5} {'events':>8}"
    )
    configurations = (("1 worker", 1, 1), ("4 workers, cap 4", 4, 4))
    walls: dict[str, list[float]] = {label: [] for label, _, _ in configurations}
    for run in range(1, args.runs + 1):
        for label, workers, cap in configurations:
            result = backfill(args.days, workers, cap, args.latency, args.events_per_hour)
            walls[label].append(result["seconds"])
            print(
                f"{label:<18} {run:>4} {result['seconds']:>6.1f}s {result['peak']:>15} {result['requests']:>9} "
                f"{result['refused']:>5} {result['events']:>8,}",
                flush=True,
            )
    # The best run of each: other load on the machine only ever adds time.
    one, four = min(walls["1 worker"]), min(walls["4 workers, cap 4"])
    print(f"\nbest of {args.runs}: 1 worker {one:.1f} s, 4 workers cap 4 {four:.1f} s")
    print(f"4 workers take {four / one:.2f} of the time of 1 worker ({one / four:.1f}x faster)")


if __name__ == "__main__":
    main()
