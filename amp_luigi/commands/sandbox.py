"""The sandbox: the real `luigi` command against the built-in emulator and a local moto S3 server.

`python -m amp_luigi sandbox` needs no account and no network beyond 127.0.0.1. It starts the
Amplitude emulator (in this process) serving two projects, `web` and `ios`, each with its own keys
and events, and a moto S3 server on free loopback ports, writes a throwaway working directory
holding the project's luigi.cfg with a `[project.<name>]` section for each, then runs the range
wrapper exactly as cron would (`luigi --module amp_luigi ExportRange --start ...`, every project)
for the last few exportable days, prints what landed under each project's prefix (from the verified
markers), and runs it again to show that every day is skipped without a request to Amplitude. With `--with-scheduler` it also starts `luigid` and
leaves it running with the visualiser open for inspection until Ctrl-C. With `--report PATH` it
writes the HTML report of the range there (`python -m amp_luigi report`); the `web` project's day
before the newest then has no events, an SDK outage for the report to flag once three weeks of
history precede it (`--days 42` shows it). Everything else is removed at exit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amp_luigi.layout import VERIFIED_DIR, marker_prefix
from amp_luigi.records import DayRecord, read_marker
from amp_luigi.s3 import Bucket
from amp_luigi.testing import s3servers
from amp_luigi.testing.local import (
    Luigid,
    clean_environment,
    deployment_environment,
    luigi_command,
    project_config,
    s3_client,
)

PREFIX = "python_import"
# The two projects the emulator serves: name, Amplitude project id, seed, share of --events-per-hour.
PROJECTS = (("web", 187520, 0, 1.0), ("ios", 187521, 1, 0.5))


def execution_summary(output: str) -> list[str]:
    """The lines of Luigi's execution summary, which it prints at the end of every run."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if "===== Luigi Execution Summary =====" in line]
    if not starts:
        return []
    # The summary is framed by two header lines; take the last complete frame.
    first, last = (starts[-2], starts[-1]) if len(starts) > 1 else (starts[0], len(lines))
    return [line for line in lines[first + 1 : last] if line.strip()]


@dataclass
class Sandbox:
    """The running services and the environment of a deployment that points at them."""

    root: Path
    emulator: Any
    s3: Any
    s3_endpoint: str
    bucket: str
    env: dict[str, str]
    scheduler: Luigid | None = None

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    def scheduler_args(self) -> list[str]:
        if self.scheduler:
            return ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(self.scheduler.port)]
        return ["--local-scheduler"]

    def luigi(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([*luigi_command(), *args])

    def amp_luigi(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python -m amp_luigi ...` in the sandbox's deployment."""
        return self._run([sys.executable, "-m", "amp_luigi", *args])

    def _run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=self.workdir, env=self.env, capture_output=True, text=True, check=False
        )

    def verified(self, project: str) -> dict[dt.date, DayRecord]:
        """A project's verified markers, by day: what VerifyDay proved S3 holds."""
        bucket = Bucket(self.s3, self.bucket)
        keys = sorted(bucket.listing(marker_prefix(f"{PREFIX}/{project}", VERIFIED_DIR)))
        records = [read_marker(bucket, key) for key in keys]
        return {record.date: record for record in records if record is not None}

    def object_count(self) -> int:
        return len(Bucket(self.s3, self.bucket).listing(f"{PREFIX}/"))

    def requests(self) -> dict[str, int]:
        """The export requests the emulator answered, per project."""
        ids = {project_id: name for name, project_id, _, _ in PROJECTS}
        counts = dict.fromkeys(ids.values(), 0)
        for request in self.emulator.requests:  # a refused key pair carries no project
            name = ids.get(request.project_id, "refused")
            counts[name] = counts.get(name, 0) + 1
        return counts


@contextlib.contextmanager
def sandbox(
    root: Path,
    *,
    with_scheduler: bool,
    events_per_hour: int,
    latency: float,
    rate_mib: float | None = None,
    moto_process: bool = False,
    outage: dt.date | None = None,
) -> Iterator[Sandbox]:
    """The services; `outage`: a day without events in the `web` project."""
    try:
        import moto.server  # noqa: F401 - only to say what is missing before anything starts
    except ImportError as error:
        raise SystemExit(
            "The sandbox needs moto's S3 server: pip install 'amp-luigi[test]' (or run .ci/setup)."
        ) from error

    # moto's web server logs every request; the sandbox prints its own summary instead.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    from amp_luigi.emulator import Emulator

    keys = {name: (f"sandbox-{name}-key", f"sandbox-secret-{secrets.token_hex(8)}") for name, *_ in PROJECTS}
    aws_secret = f"sandbox-aws-{secrets.token_hex(8)}"
    workdir = root / "work"
    workdir.mkdir(parents=True)
    (workdir / "luigi.cfg").write_text(project_config(tuple(keys)), encoding="utf-8")
    with contextlib.ExitStack() as stack:
        emulator = Emulator(
            latency_seconds=latency,
            body_mib_per_second=rate_mib,
            **_dataset(PROJECTS[0], keys, events_per_hour, outage),
        )
        for project in PROJECTS[1:]:
            emulator.add_project(**_dataset(project, keys, events_per_hour))
        stack.enter_context(emulator)
        server = s3servers.MotoProcessServer() if moto_process else s3servers.MotoServer()
        endpoint = stack.enter_context(server).url
        env = deployment_environment(
            export_url=emulator.url,
            keys=keys,
            bucket=f"amp-sandbox-{secrets.token_hex(4)}",  # moto keeps buckets per process, not server
            endpoint=endpoint,
            data_dir=root / "staging",
            aws_secret=aws_secret,
        )
        bucket = env["AWS_BUCKET_NAME"]
        s3 = s3_client(env)
        s3.create_bucket(Bucket=bucket)
        scheduler = None
        if with_scheduler:
            # luigid applies [resources] (the Amplitude cap) from its own config, not the workers'.
            luigid_env = {**clean_environment(), "LUIGI_CONFIG_PATH": str(workdir / "luigi.cfg")}
            scheduler = stack.enter_context(Luigid(root / "luigid", env=luigid_env))
        yield Sandbox(root, emulator, s3, endpoint, bucket, env, scheduler)


def _dataset(
    project: tuple[str, int, int, float],
    keys: dict[str, tuple[str, str]],
    events_per_hour: int,
    outage: dt.date | None = None,
) -> dict[str, Any]:
    name, project_id, seed, share = project
    api_key, secret_key = keys[name]
    return {
        "api_key": api_key,
        "secret_key": secret_key,
        "project_id": project_id,
        "seed": seed,
        "events_per_hour": max(1, int(events_per_hour * share)),
        "empty_dates": frozenset({outage} if outage else ()),
    }


def _human(size: int) -> str:
    return f"{size / 1048576:.1f} MiB" if size >= 1048576 else f"{size / 1024:.1f} KiB"


def _print_run(title: str, command: list[str], run: subprocess.CompletedProcess[str], seconds: float) -> None:
    print(f"\n{title}\n  $ luigi {' '.join(command)}")
    for line in execution_summary(run.stdout + run.stderr):
        print(f"  | {line}")
    print(f"  exit code {run.returncode} after {seconds:.1f} s")


def run(
    days: int = 3,
    *,
    with_scheduler: bool = False,
    wait: bool = True,
    events_per_hour: int = 200,
    latency: float = 0.0,
    rate_mib: float | None = None,
    report: Path | None = None,
) -> int:
    """Run the sandbox and return the exit code: 0 when both runs behaved as the pipeline promises
    (and the report, if asked for, was written)."""
    from amp_luigi.hours import last_available_day

    newest = last_available_day(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), 2.0)
    start = newest - dt.timedelta(days=days - 1)
    # Ctrl-C and SIGTERM both stop the sandbox through its clean-up, even when started with SIGINT
    # ignored (a background job of a non-interactive shell inherits that).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    root = Path(tempfile.mkdtemp(prefix="amp-luigi-sandbox-"))
    try:
        with sandbox(
            root,
            with_scheduler=with_scheduler,
            events_per_hour=events_per_hour,
            latency=latency,
            rate_mib=rate_mib,
            outage=newest - dt.timedelta(days=1) if report else None,
        ) as box:
            return _demo(box, start, newest, wait, report)
    except KeyboardInterrupt:
        print("\nStopped.")
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _demo(box: Sandbox, start: dt.date, newest: dt.date, wait: bool, report: Path | None) -> int:
    # The pid lock lives in the sandbox, so a sandbox never collides with another one or a real run.
    command = [
        *("--module", "amp_luigi", "ExportRange", "--start", start.isoformat()),
        *box.scheduler_args(),
        *("--lock-pid-dir", str(box.root / "locks")),
    ]
    print(f"amp-luigi sandbox in {box.root} (removed at exit)")
    print(f"  Amplitude emulator  {box.emulator.url}")
    print(f"  S3 (moto server)    {box.s3_endpoint}  bucket {box.bucket}")
    print(f"  staging directory   {box.env['AMP_DATA_DIR']}")
    if box.scheduler:
        print(f"  luigid              {box.scheduler.url}")
    print(f"  days                {start} .. {newest}")

    began = time.monotonic()
    first = box.luigi(*command)
    _print_run("Run 1: export every missing day of every project", command, first, time.monotonic() - began)
    print(f"  export requests the emulator answered: {_per_project(box.requests())}")
    markers = {name: box.verified(name) for name, *_ in PROJECTS}
    if first.returncode != 0 or any(len(days) != (newest - start).days + 1 for days in markers.values()):
        print("\nThe first run did not verify every day. Its output:\n" + first.stdout + first.stderr)
        return 1

    for name, days in markers.items():
        print(
            f"\nproject {name}: data landed in s3://{box.bucket}/{PREFIX}/{name}/ (endpoint {box.s3_endpoint}):"
        )
        print(f"  {'day':<10}  {'objects':>7}  {'events':>8}  {'bytes':>10}")
        for day, record in days.items():
            print(f"  {day!s:<10}  {len(record.objects):>7}  {record.events:>8,}  {_human(record.bytes):>10}")
        events = sum(record.events for record in days.values())
        objects = sum(len(record.objects) for record in days.values())
        print(f"  {len(days)} day(s), {objects} data object(s), {events:,} events")
    print(f"\n{box.object_count()} keys in the bucket with each project's _uploaded/ and _verified/ markers")

    box.emulator.reset_requests()
    began = time.monotonic()
    second = box.luigi(*command)
    _print_run("Run 2: the same command again", command, second, time.monotonic() - began)
    skipped = 0
    for name, days in markers.items():
        after = box.verified(name)
        for day, record in days.items():
            same = day in after and after[day].verified_at == record.verified_at
            skipped += same
            print(f"  {name} {day}: {'skipped, verified marker unchanged' if same else 'RUN AGAIN'}")
    requests = box.requests()
    print(f"  export requests the emulator answered: {_per_project(requests)}")
    total = sum(len(days) for days in markers.values())
    ok = second.returncode == 0 and not any(requests.values()) and skipped == total
    print("\nEvery day was skipped without a request to Amplitude." if ok else "\nThe second run did work!")
    if report is not None:
        stop = newest + dt.timedelta(days=1)
        written = box.amp_luigi(
            "report", "--start", str(start), "--stop", str(stop), "--out", str(report.resolve())
        )
        print(f"\nThe report: $ python -m amp_luigi report --start {start} --stop {stop} --out {report}")
        print("  " + (written.stdout + written.stderr).strip().replace("\n", "\n  "))
        ok = ok and written.returncode == 0

    if box.scheduler:
        print(f"\nluigid is running: open {box.scheduler.visualiser}")
        if wait:
            print("Press Ctrl-C to stop it and remove the sandbox.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while box.scheduler.process is not None and box.scheduler.process.poll() is None:
                    time.sleep(0.5)
            print("\nStopping.")
    return 0 if ok else 1


def _per_project(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items())
