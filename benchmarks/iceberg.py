"""IcebergDay measured: one realistic upload day beside ParquetDay, the commit's time as the table
grows, and the table read back against the raw layer.

    .venv/bin/python benchmarks/iceberg.py                      # ~250k events a day, 101 upload days
    .venv/bin/python benchmarks/iceberg.py --quick --dev-venv   # a smoke run (under a minute)
    .venv/bin/python benchmarks/iceberg.py --profile /tmp/prof --py-spy py-spy   # sample each luigi run

Everything runs on this machine, as benchmarks/day.py does: the Amplitude emulator (in this
process), a moto S3 server (its own process) and every `luigi` command as a child process from a
user's install (`pip install '.[parquet,iceberg]'`, kept in the cache directory), measured by
harness.py (wall, CPU and peak memory of the whole process tree). One table, in the embedded SQLite
catalog under the run's AMP_DATA_DIR (kept across the runs, as a deployment keeps it), `[iceberg]
enabled = true`:

1. Upload day 1, realistic (~250k events of ~1.9 KB, one in 50 late by 1-6 days): VerifyDay (not
   measured), then ParquetDay alone and IcebergDay alone, each its own `luigi` process. Figures:
   IcebergDay / ParquetDay wall (target <= 2) and IcebergDay's peak RSS (target < 400 MiB).
2. Days 2..N-1 small (ExportRange --of IcebergDay, one worker, not measured), then upload day N,
   of day 1's size (the emulator's mean per hour is set for each of the two), IcebergDay alone: its
   commit against day 1's by the process's wall, the task's run time and commit_day's steps, read
   from the run's log (iceberg_probe.py times them), against day 1 committed again into an empty
   table of its own right before day N (the same load); the same steps of the small days, first
   and last (target: day N / day 1 <= 1.5).
3. One small day refreshed with more events than before (RefreshDay re-exports and re-commits it),
   then the table itself, read by pyiceberg, against the raw NDJSON objects in S3: rows per UTC
   event-time day equal the raw events per event-time day, each uuid once, the same uuids, and the
   markers' rows add up to the table's. Exits 1 when any of that fails.

Timings are printed, never judged: the targets are shown beside the figures.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import datetime as dt
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amp_luigi.emulator import Emulator
from amp_luigi.testing.local import LOCAL_ACCESS_KEY
from benchmarks.bench import AWS_SECRET, BUCKET, DAY, REPO, Bench, add_run_arguments, open_bench
from benchmarks.harness import MIB, Run, measure
from benchmarks.iceberg_probe import PREFIX as PROBE

EVENTS_PER_DAY = 250_000
TABLE = "amplitude.events"
# The luigi command logs like Luigi's default (luigi-interface at DEBUG, amp_luigi's progress at
# INFO), with the time of each line: the task's run time and its steps are read from the log.
LOGGING = """\
[loggers]
keys = root, luigi, amp
[handlers]
keys = timed
[formatters]
keys = timed
[logger_root]
level = WARNING
handlers =
[logger_luigi]
level = DEBUG
handlers = timed
qualname = luigi-interface
propagate = 0
[logger_amp]
level = INFO
handlers = timed
qualname = amp_luigi
propagate = 0
[handler_timed]
class = StreamHandler
level = DEBUG
formatter = timed
args = (sys.stderr,)
[formatter_timed]
format = %(asctime)s %(levelname)s: %(message)s
"""
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+: (.*)$")
TASK_EVENT = re.compile(r"\b(running|done|failed)\s+(\w+)\(.*?\bdate=(\d{4}-\d\d-\d\d)")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events-per-day",
        type=int,
        default=EVENTS_PER_DAY,
        help="events of each measured day (the first and the last): the emulator's mean per hour is set "
        "for each, as the hours of a day draw between half and one and a half times the mean",
    )
    parser.add_argument(
        "--events-per-hour",
        type=int,
        help="instead of --events-per-day: the emulator's mean per hour for both measured days",
    )
    parser.add_argument(
        "--small-events-per-hour", type=int, default=200, help="the days between the first and the last"
    )
    parser.add_argument(
        "--days", type=int, default=101, help="upload days in the table when the last one is committed"
    )
    parser.add_argument(
        "--noise", type=int, default=160, help="random hex characters per event (compression)"
    )
    parser.add_argument("--members-per-hour", type=int, default=4)
    parser.add_argument("--gz", action="store_true", help="keep the raw objects as .json.gz")
    parser.add_argument(
        "--refresh-growth",
        type=float,
        default=1.25,
        help="the refreshed day has this many times the events it had when first exported",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="luigi workers of the (unmeasured) backfill of the small days"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 4 days, the first and the last of 4400 events, the 2 between of 20 an hour "
        "(overrides the sizes above)",
    )
    add_run_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.events_per_day, args.events_per_hour, args.small_events_per_hour, args.days = 4400, None, 20, 4
    if args.days < 3:
        parser.error("--days must be at least 3: the first, one small day to refresh, the last")
    return args


def spec(events_per_hour: int, noise: int, members_per_hour: int, seed: int) -> dict[str, int]:
    """Emulator settings: ~1.7 KB events plus `noise` random hex characters, late ones as the default
    (one in 50, 1-6 days late), about `members_per_hour` members an hour."""
    return {
        "events_per_hour": events_per_hour,
        # An hour draws up to 1.5x the mean: parts of 1.5 * mean / members hold it in that many.
        "events_per_part": max(1, -(-events_per_hour * 3 // (2 * members_per_hour))),
        "noise_bytes": noise,
        "late_every": 50,
        "seed": seed,
    }


def version() -> str:
    """The code measured: its commit, and whether amp_luigi/ differs from it (another engineer may
    be editing it; each `luigi` run imports the tree as it is then)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "an unknown commit"
    dirty = git("status", "--porcelain", "--", "amp_luigi", "pyproject.toml")
    return f"amp-luigi at {head}{' with uncommitted changes in amp_luigi/' if dirty else ''}"


def per_hour_for(day: dt.date, events: int, seed: int) -> int:
    """The mean per hour that gives `day` about `events` events: each hour's count is the mean times
    a factor the hour draws first, whatever the mean (amp_luigi.emulator.events)."""
    from amp_luigi.emulator.events import DatasetSpec, hour_event_count

    scale = 1_000_000
    probe = DatasetSpec(events_per_hour=scale, seed=seed)
    factor = (
        sum(hour_event_count(probe, dt.datetime.combine(day, dt.time(hour))) for hour in range(24)) / scale
    )
    return max(1, round(events / factor))


class World:
    """The table's world: one key prefix, one AMP_DATA_DIR (the SQLite catalog lives there, kept
    across runs as a deployment keeps it), a configuration with [iceberg] enabled."""

    def __init__(self, bench: Bench, prefix: str, keep_gzip: bool) -> None:
        self.bench, self.prefix = bench, prefix
        self.data = bench.work / f"{prefix}-data"
        self.data.mkdir(parents=True, exist_ok=True)
        logging_conf = bench.work / "iceberg-logging.conf"
        logging_conf.write_text(LOGGING)
        self.config = bench.work / f"{prefix}.cfg"
        self.config.write_text(
            f"[core]\nlogging_conf_file = {logging_conf}\n\n"
            f"[storage]\nkeep_gzip = {str(keep_gzip).lower()}\n\n[iceberg]\nenabled = true\n"
        )
        self.cwd, _ = bench.config(keep_gzip)  # the directory holding the project's luigi.cfg

    @property
    def catalog_uri(self) -> str:
        return f"sqlite:///{self.data / 'iceberg-catalog.db'}"

    def run(self, emulator: Emulator, label: str, args: list[str]) -> Run:
        bench = self.bench
        bench.runs += 1
        env = bench.env(emulator, self.prefix, self.data, self.config)
        # `luigi` as iceberg_probe.py runs it: IcebergDay's steps timed in the log.
        command = bench.luigi(label, [*args, "--local-scheduler"])
        at = command.index(str(bench.bin / "luigi"))
        command[at : at + 1] = [str(bench.bin / "python"), "-m", "benchmarks.iceberg_probe"]
        print(f"  {label} ...", file=sys.stderr, flush=True)
        run = measure(label, command, env=env, cwd=self.cwd, staging=self.data, counters=bench.counters)
        print(f"    {run.wall:.1f} s", file=sys.stderr, flush=True)
        return run

    def day_task(self, emulator: Emulator, task: str, day: dt.date, label: str) -> Run:
        return self.run(emulator, label, [task, "--date", day.isoformat()])

    def marker(self, day: dt.date) -> dict[str, Any]:
        key = f"{self.prefix}/_iceberg/{day.isoformat()}.json"
        return json.loads(self.bench.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def table(self) -> Any:
        from pyiceberg.catalog import load_catalog

        # The SQLite catalog keeps each table under the name of the catalog that created it.
        catalog = load_catalog(
            "amp_luigi",
            type="sql",
            uri=self.catalog_uri,
            **{
                "s3.endpoint": self.bench.moto.url,
                "s3.access-key-id": LOCAL_ACCESS_KEY,
                "s3.secret-access-key": AWS_SECRET,
                "s3.region": "us-east-1",
            },
        )
        return catalog.load_table(TABLE)


# Reading a run's log.


def log_lines(stderr: str) -> Iterator[tuple[dt.datetime, str]]:
    for line in stderr.splitlines():
        found = LOG_LINE.match(line)
        if found:
            yield dt.datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f"), found[2]


def task_seconds(stderr: str, family: str) -> dict[dt.date, float]:
    """Each `family` task's run time (Luigi's `running` to its `done`), by date."""
    started: dict[dt.date, dt.datetime] = {}
    seconds = {}
    for when, message in log_lines(stderr):
        found = TASK_EVENT.search(message)
        if found and found[2] == family:
            day = dt.date.fromisoformat(found[3])
            if found[1] == "running":
                started[day] = when
            elif found[1] == "done" and day in started:
                seconds[day] = (when - started[day]).total_seconds()
    return seconds


@dataclass(frozen=True)
class Steps:
    """One IcebergDay in its steps: Luigi's `running` to `done`, and commit_day's steps as
    iceberg_probe.py logs them (seconds; None when the log has no such line)."""

    run: float | None  # the task's run(): commit_day, the marker, the staging removed
    commit_day: float | None
    open_table: float | None  # the catalog and the table loaded (created on the first day)
    typed: float | None  # pass 1: the hours' NDJSON read from S3 and typed into local Parquet
    prepare: float | None  # pass 2 less the look-up: new columns, event days, the rows kept
    lookup: float | None  # the uuids other upload days committed in the event days touched
    write: float | None  # the data files written and uploaded, where commit_day writes them itself
    transaction: float | None  # the rest of pass 3: delete, (files written,) manifests, the catalog commit
    read_back: float | None  # the day's rows counted in the new snapshot
    # The process's peak RSS (MiB) when each step returned, in the order they returned.
    peaks: tuple[tuple[str, float], ...] = ()

    @classmethod
    def by_day(cls, stderr: str) -> dict[dt.date, Steps]:
        """Each IcebergDay of the run by its date. The probe's lines between one's `running` and its
        `done` are its own: commits to one table take turns (a resource of capacity 1)."""
        found: dict[dt.date, Steps] = {}
        day, started, step, peaks = None, None, collections.defaultdict(float), {}
        for when, message in log_lines(stderr):
            event = TASK_EVENT.search(message)
            if event and event[2] == "IcebergDay":
                if event[1] == "running":
                    day, started = dt.date.fromisoformat(event[3]), when
                    step, peaks = collections.defaultdict(float), {}
                elif event[1] == "done" and day is not None and started is not None:
                    found[day] = cls.of_steps((when - started).total_seconds(), step, peaks)
                    day = None
            elif day is not None and message.startswith(f"{PROBE} "):
                _, name, took, peak = message.split()
                step[name] += float(took)  # a commit redone after a lost race counts twice
                peaks[name] = int(peak) / 1024
        return found

    @classmethod
    def of_steps(cls, run: float, step: dict[str, float], peaks: dict[str, float]) -> Steps:
        def total(*names: str) -> float | None:
            """The steps' sum, of those this version of commit_day has; None if it has none."""
            found = [step[name] for name in names if name in step]
            return sum(found) if found else None

        inside = total(*PASS_2, "_committed_uuids", "_upload_partitions")
        commit = step.get("_commit")
        return cls(
            run=run,
            commit_day=step.get("commit_day"),
            open_table=step.get("open_table"),
            typed=step.get("_typed_hours"),
            prepare=total(*PASS_2),
            lookup=step.get("_committed_uuids"),
            write=step.get("_upload_partitions"),
            transaction=None if commit is None else commit - (inside or 0.0),
            read_back=step.get("_committed_rows"),
            peaks=tuple(peaks.items()),
        )

    def peaks_shown(self) -> str:
        return ", ".join(f"{name.strip('_')} {peak:.0f}" for name, peak in self.peaks)

    def shown(self) -> str:
        return " | ".join(
            seconds(value)
            for value in (
                self.open_table,
                self.typed,
                self.lookup,
                self.prepare,
                self.write,
                self.transaction,
                self.read_back,
            )
        )


STEP_HEAD = (
    "open table s | type hours s | uuid look-up s | dedupe s | write files s | transaction s | read back s"
)
# Pass 2's steps besides the look-up, in the versions of commit_day the probe knows.
PASS_2 = ("_new_columns", "_event_days", "_deduplicated", "_keep")


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def ratio(numerator: float | None, denominator: float | None) -> str:
    return "-" if numerator is None or not denominator else f"{numerator / denominator:.2f}"


# What the table holds against what the raw layer holds.


def raw_events(bench: Bench, prefix: str, days: list[dt.date]) -> tuple[collections.Counter, list[str], int]:
    """The raw layer's events of the upload days, each uuid once (the first upload day, then the
    first object and line, as IcebergDay keeps them): (events by UTC event-time day, their uuids,
    repeated uuids skipped). Parsed as JSON, line by line."""
    keys = [key for day in days for key in sorted(bench.keys(f"{prefix}/{day.isoformat()}/"))]

    def body(key: str) -> bytes:
        data = bench.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return gzip.decompress(data) if key.endswith(".gz") else data

    by_day: collections.Counter = collections.Counter()
    seen: set[str] = set()
    uuids: list[str] = []
    repeated = 0
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for data in pool.map(body, keys):  # in order: the first of a repeated uuid is kept
            for line in data.splitlines():
                if not line.strip():
                    continue
                event = json.loads(line)
                uuid = event.get("uuid")
                if uuid is not None:
                    if uuid in seen:
                        repeated += 1
                        continue
                    seen.add(uuid)
                    uuids.append(uuid)
                when = event.get("event_time")
                by_day[when[:10] if when else None] += 1
    return by_day, uuids, repeated


def table_events(world: World) -> tuple[collections.Counter, list[str], int, int]:
    """The table's rows by UTC event-time day, their uuids, rows without a uuid, upload days."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = world.table().scan(selected_fields=("uuid", "event_time", "upload_date")).to_arrow()
    times = rows["event_time"]
    if pa.types.is_timestamp(times.type) and times.type.tz is not None:
        times = pc.cast(times, pa.timestamp(times.type.unit))  # the UTC wall time: its day is the UTC day
    days = pc.cast(times, pa.date32())
    by_day: collections.Counter = collections.Counter()
    for item in pc.value_counts(days).to_pylist():
        day = item["values"]
        by_day[day.isoformat() if day else None] += item["counts"]
    uuids = rows["uuid"]
    upload_days = pc.count_distinct(rows["upload_date"]).as_py()
    return by_day, [u for u in uuids.to_pylist() if u is not None], uuids.null_count, upload_days


def correctness(world: World, days: list[dt.date]) -> tuple[bool, str]:
    """(passed, the line saying so): the table against the raw layer, then the markers."""
    print("reading the table and the raw layer ...", file=sys.stderr, flush=True)
    raw_by_day, raw_uuids, raw_repeated = raw_events(world.bench, world.prefix, days)
    table_by_day, table_uuids, no_uuid, upload_days = table_events(world)
    problems = []
    differing = {
        day: (table_by_day.get(day, 0), raw_by_day.get(day, 0))
        for day in sorted(set(raw_by_day) | set(table_by_day), key=str)
        if table_by_day.get(day, 0) != raw_by_day.get(day, 0)
    }
    if differing:
        shown = ", ".join(f"{day}: table {t}, raw {r}" for day, (t, r) in list(differing.items())[:8])
        problems.append(f"rows per event-time day differ on {len(differing)} day(s) ({shown})")
    unique = len(set(table_uuids))
    if unique != len(table_uuids):
        problems.append(f"{len(table_uuids) - unique} uuid(s) more than once in the table")
    if no_uuid:
        problems.append(f"{no_uuid} row(s) without a uuid")
    if sorted(table_uuids) != sorted(raw_uuids):
        missing, extra = len(set(raw_uuids) - set(table_uuids)), len(set(table_uuids) - set(raw_uuids))
        problems.append(f"the uuids differ: {missing} raw one(s) not in the table, {extra} not raw")
    if upload_days != len(days):
        problems.append(f"the table holds {upload_days} upload days, {len(days)} were committed")
    markers = [world.marker(day) for day in days]
    marker_rows = sum(marker["rows"] for marker in markers)
    total = sum(table_by_day.values())
    if marker_rows != total:
        problems.append(f"the markers' rows add up to {marker_rows}, the table holds {total}")
    duplicates = sum(m["duplicates_within_day"] + m["duplicates_committed"] for m in markers)
    event_days = [day for day in table_by_day if day]
    summary = (
        f"{total} rows in {TABLE} = the raw layer's {sum(raw_by_day.values())} events of {len(days)} "
        f"upload days, per UTC event-time day on all {len(event_days)} days ({min(event_days)} .. "
        f"{max(event_days)}); {unique} uuids, each once, the same as the raw layer's "
        f"({raw_repeated} repeated raw uuid(s), {duplicates} duplicate(s) the markers dropped); the "
        f"markers' rows add up to the table's"
    )
    if problems:
        return False, "Correctness: FAILED: " + "; ".join(problems)
    return True, "Correctness: OK: " + summary


# The three parts.


def table_state(world: World) -> str:
    """The table as it stands: snapshots, data files, rows, metadata."""
    table = world.table()
    snapshot = table.current_snapshot()
    if snapshot is None:
        return "empty"
    summary = snapshot.summary or {}
    return (
        f"{summary.get('total-records', '?')} rows, {summary.get('total-data-files', '?')} data files, "
        f"{len(table.metadata.snapshots)} snapshots"
    )


def stage_table(rows: list[tuple[str, Run, float | None]]) -> list[str]:
    """One row per stage run alone: (label, the run, the task's run time from the log)."""
    lines = [
        "| stage | wall s | task run s | client CPU s | S3 server CPU s | largest process peak RSS MiB "
        "| PSS sum peak MiB | S3 requests |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, run, task in rows:
        lines.append(
            f"| {label} | {run.wall:.1f} | {seconds(task)} | {run.cpu:.1f} | {run.s3_cpu:.1f} | "
            f"{run.peak_rss / MIB:.0f} | {run.peak_pss / MIB:.0f} | {run.s3_requests} |"
        )
    return lines


def median_of(steps: list[Steps], name: str) -> float | None:
    values = [getattr(each, name) for each in steps]
    return statistics.median(values) if values and None not in values else None


def main() -> int:
    args = arguments()
    days = [DAY + dt.timedelta(days=n) for n in range(args.days)]
    first, last, middle = days[0], days[-1], days[1:-1]
    refreshed = middle[len(middle) // 2]  # a small day
    with contextlib.ExitStack() as stack:
        bench = open_bench(args, stack)
        load, code = os.getloadavg()[0], version()
        print(f"generating upload days {first} and {last} with the emulator ...", file=sys.stderr)
        # The first and the last day of the same size, each from its own emulator.
        big_first, big_last = (
            bench.emulator(
                spec(
                    args.events_per_hour or per_hour_for(day, args.events_per_day, 0),
                    args.noise,
                    args.members_per_hour,
                    0,
                ),
                [day],
            )
            for day in (first, last)
        )
        small_spec = spec(args.small_events_per_hour, args.noise, args.members_per_hour, 1)
        small = bench.emulator(small_spec, [])
        grown = bench.emulator(
            {**small_spec, "events_per_hour": round(args.small_events_per_hour * args.refresh_growth)}, []
        )
        zip_bytes, raw_bytes = bench.zip_size(big_first, first)
        events = big_first.day_event_count(first)
        described = (
            f"upload day {first}: {events} events of {raw_bytes / events:.0f} bytes ({raw_bytes / MIB:.0f} MiB "
            f"of NDJSON, a {zip_bytes / MIB:.0f} MiB zip), one in 50 of them 1-6 days late; raw objects as "
            f"{'.json.gz' if args.gz else '.json'}"
        )
        print(f"  {described}", file=sys.stderr)
        world = World(bench, "iceberg", args.gz)

        # 1. One realistic day, each stage alone.
        print("1. one day, ParquetDay and IcebergDay alone ...", file=sys.stderr)
        world.day_task(big_first, "VerifyDay", first, f"VerifyDay {first} (not measured)")
        parquet = world.day_task(big_first, "ParquetDay", first, "ParquetDay")
        iceberg_first = world.day_task(big_first, "IcebergDay", first, "IcebergDay")
        first_steps = Steps.by_day(iceberg_first.stderr)[first]
        first_marker = world.marker(first)

        # 2. The table grows by small days; then a day of day 1's size.
        print(f"2. {len(middle)} small upload days through IcebergDay (not measured) ...", file=sys.stderr)
        backfill = world.run(
            small,
            f"ExportRange --of IcebergDay, {len(middle)} small days",
            [
                "ExportRange",
                "--of",
                "IcebergDay",
                "--start",
                middle[0].isoformat(),
                "--stop",
                last.isoformat(),
                "--workers",
                str(args.workers),
            ],
        )
        commits = Steps.by_day(backfill.stderr)
        if sorted(commits) != middle:
            raise SystemExit(
                f"the backfill committed {len(commits)} of {len(middle)} days:\n{backfill.stderr[-4000:]}"
            )
        world.day_task(big_last, "VerifyDay", last, f"VerifyDay {last} (not measured)")
        before_last = table_state(world)
        # Day 1 into an empty table of its own again, right before day N: the two are compared
        # under the same load (the machine is shared, and minutes passed since part 1).
        again = World(bench, "iceberg-again", args.gz)
        again.day_task(big_first, "VerifyDay", first, f"VerifyDay {first} again (not measured)")
        first_again = again.day_task(big_first, "IcebergDay", first, "IcebergDay day 1 again, an empty table")
        again_steps, again_rows = Steps.by_day(first_again.stderr)[first], again.marker(first)["rows"]
        iceberg_last = world.day_task(big_last, "IcebergDay", last, f"IcebergDay day {len(days)}")
        last_steps = Steps.by_day(iceberg_last.stderr)[last]
        last_marker = world.marker(last)

        # 3. A refresh of one day with more events than before, then the table against the raw layer.
        print(f"3. RefreshDay {refreshed}, then the table against the raw layer ...", file=sys.stderr)
        rows_before = world.marker(refreshed)["rows"]
        as_of = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%S")
        refresh = world.run(
            grown,
            f"RefreshDay {refreshed}",
            ["RefreshDay", "--date", refreshed.isoformat(), "--as-of", as_of],
        )
        refresh_marker = world.marker(refreshed)
        passed, verdict = correctness(world, days)
        load_after, code_after = os.getloadavg()[0], version()

    parquet_task = task_seconds(parquet.stderr, "ParquetDay").get(first)
    small_steps = [commits[day] for day in middle]
    edge = max(1, min(10, len(small_steps) // 3))
    out = [
        f"IcebergDay benchmark, {described}. {os.cpu_count()} cores, load average {load:.1f} before and "
        f"{load_after:.1f} after; one run of each. {code}"
        + ("." if code_after == code else f" at the start, {code_after} at the end."),
        "",
        f"1. Upload day {first} alone, each stage its own `luigi` process after VerifyDay:",
        "",
        *stage_table([("ParquetDay", parquet, parquet_task), ("IcebergDay", iceberg_first, first_steps.run)]),
        "",
        f"IcebergDay / ParquetDay wall: {iceberg_first.wall / parquet.wall:.2f} (target <= 2); task run time: "
        f"{ratio(first_steps.run, parquet_task)}. IcebergDay largest process peak RSS: "
        f"{iceberg_first.peak_rss / MIB:.0f} MiB (target < 400 MiB).",
        f"IcebergDay wrote {first_marker['rows']} rows in {first_marker['files']} data files on "
        f"{len(first_marker['event_days'])} event days.",
        "",
        f"2. Commit time as the table grows: day 1 into an empty table (in part 1, and again in a table of "
        f"its own right before day {len(days)}), day {len(days)} ({last}, the same size) after {len(middle)} "
        f"small days (~{small.day_event_count(middle[0])} events each); steps timed by iceberg_probe.py:",
        "",
        f"| IcebergDay | upload day | table before | rows | wall s | client CPU s | task run s | {STEP_HEAD} "
        "| largest process peak RSS MiB | S3 requests |",
        "| --- | --- | --- |" + " ---: |" * 13,
    ]
    for label, day, before, run, steps, rows in (
        ("day 1 (part 1)", first, "empty", iceberg_first, first_steps, first_marker["rows"]),
        ("day 1 again", first, "empty", first_again, again_steps, again_rows),
        (f"day {len(days)}", last, before_last, iceberg_last, last_steps, last_marker["rows"]),
    ):
        out.append(
            f"| {label} | {day} | {before} | {rows} | {run.wall:.1f} | {run.cpu:.1f} | {seconds(steps.run)} | "
            f"{steps.shown()} | {run.peak_rss / MIB:.0f} | {run.s3_requests} |"
        )
    for label, group in ((f"first {edge}", small_steps[:edge]), (f"last {edge}", small_steps[-edge:])):
        medians = Steps(*(median_of(group, name) for name in Steps.__dataclass_fields__ if name != "peaks"))
        out.append(
            f"| small days, {label} (median) | | | | | | {seconds(medians.run)} | {medians.shown()} | | |"
        )
    late_small, early_small = small_steps[-edge:], small_steps[:edge]
    growth = ", ".join(
        f"{name.replace('_', ' ')} {ratio(median_of(late_small, name), median_of(early_small, name))}"
        for name in ("run", "transaction", "read_back")
    )
    out += [
        "",
        f"day {len(days)} / day 1 again: wall {ratio(iceberg_last.wall, first_again.wall)}, client CPU "
        f"{ratio(iceberg_last.cpu, first_again.cpu)}, task run {ratio(last_steps.run, again_steps.run)}, "
        f"commit_day {ratio(last_steps.commit_day, again_steps.commit_day)}, transaction "
        f"{ratio(last_steps.transaction, again_steps.transaction)}, read back "
        f"{ratio(last_steps.read_back, again_steps.read_back)} (target <= 1.5); against part 1's day 1: wall "
        f"{ratio(iceberg_last.wall, iceberg_first.wall)}, task run {ratio(last_steps.run, first_steps.run)}. "
        f"Small days, last {edge} / first {edge} (medians): {growth}.",
        f"Peak RSS (MiB) of the IcebergDay process as each step returned: day 1: {first_steps.peaks_shown()}; "
        f"day 1 again: {again_steps.peaks_shown()}; day {len(days)}: {last_steps.peaks_shown()}.",
        f"Day {len(days)}: {last_marker['duplicates_committed']} duplicate(s) of other upload days dropped, "
        f"event days {last_marker['event_days'][0]} .. {last_marker['event_days'][-1]}; the backfill took "
        f"{backfill.wall:.0f} s.",
        "",
        f"3. RefreshDay {refreshed} with {args.refresh_growth:g}x the events it had: {rows_before} -> "
        f"{refresh_marker['rows']} rows (snapshot {refresh_marker['snapshot_id']}), {refresh.wall:.1f} s.",
        verdict,
    ]
    print("\n".join(out))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
