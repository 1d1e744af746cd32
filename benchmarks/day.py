"""One day of Amplitude export through amp-luigi and through the naive script it replaces, measured.

    .venv/bin/python benchmarks/day.py --mib 500            # the issue's targets (a few minutes)
    .venv/bin/python benchmarks/day.py --mib 5 --runs 1 --quick   # a smoke run (seconds)

Everything runs on this machine: the project's Amplitude emulator (in this process), a moto S3 server
(`moto_server`, its own process) and each pipeline as a child process, so the child's wall time,
peak memory, peak staging disk (polled) and requests (the emulator's record, moto's request log)
are its own. Peak memory is the larger of the main process's peak RSS (VmHWM) and the PSS summed
over the run's processes (sampled every 50 ms: amp-luigi's forked workers share their parent's
pages, which a sum of RSS would count again). Both pipelines run from a venv installed as a user
installs amp-luigi (`pip install .`, kept in the cache dir), not from the development venv and its
test tools. The naive pipeline is what the original cron script did: hold the whole response in
memory, unzip every member to disk, gunzip each to a `.json` file, upload one file at a time with
`upload_file`, count the files. Both pipelines run alternately, for `.json` and `.json.gz` output,
and their objects in S3 are downloaded and compared by SHA-256 and event count before anything is
printed. Then: peak memory of a small and a large day (flatness), ExportRange and RangeDaily over
365 verified days ("nothing to do"), and the per-day overhead of a backfill of tiny days.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEV_BIN = Path(sys.executable).parent
DAY = dt.date(2024, 3, 1)
API_KEY, SECRET_KEY = "bench-api-key", "bench-secret-key"
AWS_KEY, AWS_SECRET = "AKIABENCHMARK", "bench-aws-secret"
EVENT_BYTES = 1700  # an emulator event without padding, roughly
MIB = 1024 * 1024


# The naive pipeline: a child process of the benchmark, exactly as dumb as the original script.


def naive(url: str, date: str, work: Path, bucket: str, prefix: str, keep_gzip: bool) -> None:
    import boto3
    import requests

    day = date.replace("-", "")
    response = requests.get(
        url, params={"start": f"{day}T00", "end": f"{day}T23"}, auth=(API_KEY, SECRET_KEY), timeout=900
    )
    response.raise_for_status()
    work.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(work / "zip")
    del response
    files = []
    for member in sorted((work / "zip").rglob("*.json.gz")):
        if keep_gzip:
            files.append(member)
            continue
        target = work / "json" / member.name[: -len(".gz")]
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(member, "rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
        files.append(target)
    s3 = boto3.client("s3")
    for path in files:
        s3.upload_file(str(path), bucket, f"{prefix}/{date}/{path.name}")
    print(f"uploaded {len(files)} files", file=sys.stderr)
    shutil.rmtree(work)


def product_bin(cache: Path) -> Path:
    """The bin directory of a venv holding amp-luigi as `pip install` makes it, without the test tools.

    The development venv also holds moto, pytest and their dependencies, and Luigi imports one of
    them (jsonschema, ~80 ms) when it is there; a deployment does not have it. The venv is kept in
    the cache, rebuilt when setup.py changes; PYTHONPATH puts this tree's code before its copy.
    """
    venv = cache / f"venv-{hashlib.sha256((REPO / 'setup.py').read_bytes()).hexdigest()[:12]}"
    if not (venv / "bin" / "luigi").exists():
        print(f"installing amp-luigi into {venv} (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, f"{REPO}[parquet]"], check=True)
    return venv / "bin"


# Measuring a child process.


@dataclass
class Run:
    label: str
    seconds: float
    max_rss: int  # bytes
    max_disk: int  # bytes
    amp_requests: int
    s3_requests: int
    returncode: int
    stderr: str = field(repr=False, default="")
    cpu: float = 0.0  # the child's own user + system seconds
    s3_cpu: float = 0.0  # moto's, while the child ran


def disk_usage(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class MotoServer:
    """`moto_server` in its own process; every request it answers is one line of its log."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.log = work / "moto.log"
        self.url = f"http://127.0.0.1:{self.port}"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(DEV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def requests(self) -> int:
        return len(re.findall(rb"(?:GET|PUT|POST|HEAD|DELETE) /", self.log.read_bytes()))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def memory(pid: int) -> int:
    """The larger of `pid`'s peak RSS so far (VmHWM) and the PSS of it and its descendants now, in bytes.

    A forked worker's RSS counts the pages it shares with its parent again; PSS splits each shared
    page between the processes that map it, so the sum is what the run really holds. 0 once gone.
    """
    peak = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return max(peak, _pss(pid))


def _pss(pid: int) -> int:
    total = 0
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
        total += sum(_pss(int(child)) for child in children)
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(
    label: str, command: list[str], env: dict[str, str], cwd: Path, staging: Path, bench: Bench
) -> Run:
    """Run `command` to the end, polling `staging`'s disk use; wall time, peak memory, requests."""
    amp_before, s3_before, s3_cpu = len(bench.emulators_requests()), bench.moto.requests(), bench.moto.cpu()
    peak_disk = 0
    done = threading.Event()

    peak_rss = 0

    def poll() -> None:
        # VmHWM, not wait4's ru_maxrss: Linux carries the parent's peak over fork and exec into it.
        nonlocal peak_disk, peak_rss
        while not done.wait(0.05):
            peak_disk = max(peak_disk, disk_usage(staging))
            peak_rss = max(peak_rss, memory(child.pid))

    poller = threading.Thread(target=poll, daemon=True)
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        poller.start()
        _pid, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        poller.join()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    time.sleep(0.2)  # moto flushes its log line after answering
    run = Run(
        label,
        seconds,
        peak_rss,
        peak_disk,
        len(bench.emulators_requests()) - amp_before,
        bench.moto.requests() - s3_before,
        child.returncode,
        stderr,
        usage.ru_utime + usage.ru_stime,
        bench.moto.cpu() - s3_cpu,
    )
    if run.returncode != 0:
        raise SystemExit(f"{label} failed (exit {run.returncode}):\n{stderr[-4000:]}")
    return run


# The benchmark.


def spec_for(mib: float, padding: int, seed: int = 0) -> dict[str, int]:
    """Emulator settings for a day of about `mib` MiB of NDJSON (22 hours with events)."""
    per_hour = max(1, round(mib * MIB / (22 * (EVENT_BYTES + padding))))
    return {"events_per_hour": per_hour, "padding_bytes": padding, "seed": seed}


class Bench:
    def __init__(self, work: Path, cache: Path, bin_dir: Path) -> None:
        import boto3
        import botocore.config

        from amp_luigi.emulator import Emulator

        self.work = work
        self.cache = cache
        self.bin = bin_dir  # where the `luigi` command amp-luigi runs with is
        self.moto = MotoServer(work)
        moto = {
            "endpoint_url": self.moto.url,
            "region_name": "us-east-1",
            "aws_access_key_id": AWS_KEY,
            "aws_secret_access_key": AWS_SECRET,
        }
        self.s3 = boto3.client("s3", **moto)
        # For the S3 floor: no checksum and no SHA-256 of the body, the least a client can do.
        bare = botocore.config.Config(
            s3={"payload_signing_enabled": False}, request_checksum_calculation="when_required"
        )
        self.bare_s3 = boto3.client("s3", config=bare, **moto)
        self.bucket = "amp-bench"
        self.s3.create_bucket(Bucket=self.bucket)
        self._emulator_cls = Emulator
        self.emulators: list = []
        self.runs = 0
        self.profile_dir: Path | None = None

    def emulators_requests(self) -> list:
        return [record for emulator in self.emulators for record in emulator.requests]

    def emulator(self, settings: dict[str, int], warm: list[dt.date]):
        emulator = self._emulator_cls(API_KEY, SECRET_KEY, cache_dir=self.cache, **settings).start()
        self.emulators.append(emulator)
        for day in warm:  # build (or load) the day's hours now, not inside a measured run
            start, end = dt.datetime.combine(day, dt.time()), dt.datetime.combine(day, dt.time(23))
            emulator.dataset.write_zip(_Null(), start, end)
        return emulator

    def env(self, emulator, prefix: str, staging: Path, config: Path) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "AMP_", "LUIGI_"))
            and key not in ("ACCESS_KEY", "SECRET_ACCESS_KEY")
        }
        env.update(
            AMP_API_KEY=API_KEY,
            AMP_SECRET_KEY=SECRET_KEY,
            AMP_EXPORT_URL=emulator.url,
            AMP_DATA_DIR=str(staging),
            AMP_S3_PREFIX=prefix,
            AWS_BUCKET_NAME=self.bucket,
            ACCESS_KEY=AWS_KEY,
            SECRET_ACCESS_KEY=AWS_SECRET,
            AWS_ACCESS_KEY_ID=AWS_KEY,
            AWS_SECRET_ACCESS_KEY=AWS_SECRET,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL_S3=self.moto.url,
            LUIGI_CONFIG_PATH=str(config),
            PYTHONPATH=str(REPO),
        )
        return env

    def config(self, keep_gzip: bool, proof: str = "auto") -> tuple[Path, Path]:
        cwd = self.work / "cwd"
        cwd.mkdir(exist_ok=True)
        shutil.copy(REPO / "luigi.cfg", cwd / "luigi.cfg")
        config = self.work / f"bench-{'gz' if keep_gzip else 'json'}-{proof}.cfg"
        config.write_text(f"[storage]\nkeep_gzip = {str(keep_gzip).lower()}\nupload_proof = {proof}\n")
        return cwd, config

    def run_amp(
        self, emulator, keep_gzip: bool, label: str, args: list[str] | None = None, proof: str = "auto"
    ) -> tuple[Run, str]:
        self.runs += 1
        prefix = f"run{self.runs}-amp"
        staging = self.work / f"staging-{self.runs}"
        cwd, config = self.config(keep_gzip, proof)
        # --no-lock: Luigi's process lock is per command line, and tests elsewhere may run the same one.
        command = [*self.profile(label), str(self.bin / "luigi"), "--module", "amp_luigi", "--no-lock"]
        command += args or ["VerifyDay", "--date", DAY.isoformat(), "--local-scheduler"]
        staging.mkdir()
        run = measure(label, command, self.env(emulator, prefix, staging, config), cwd, staging, self)
        shutil.rmtree(staging, ignore_errors=True)
        return run, prefix

    def profile(self, label: str) -> list[str]:
        if not self.profile_dir:
            return []
        name = re.sub(r"\W+", "-", label).strip("-")
        return [sys.executable, "-m", "cProfile", "-o", str(self.profile_dir / f"{self.runs}-{name}.prof")]

    def run_naive(self, emulator, keep_gzip: bool, label: str) -> tuple[Run, str]:
        self.runs += 1
        prefix = f"run{self.runs}-naive"
        staging = self.work / f"staging-{self.runs}"
        staging.mkdir()
        cwd, config = self.config(keep_gzip)
        command = [
            str(self.bin / "python"),
            str(Path(__file__).resolve()),
            "--naive",
            emulator.url,
            DAY.isoformat(),
        ]
        command += [str(staging / "day"), self.bucket, prefix] + (["--gz"] if keep_gzip else [])
        run = measure(label, command, self.env(emulator, prefix, staging, config), cwd, staging, self)
        shutil.rmtree(staging, ignore_errors=True)
        return run, prefix

    # What landed in S3.

    def keys(self, prefix: str) -> dict[str, int]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}

    def digest(self, key: str) -> tuple[str, int]:
        """The object's SHA-256 and its number of events (lines, after gunzip for .json.gz)."""
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        sha, lines = hashlib.sha256(), 0
        inflater = zlib_stream() if key.endswith(".gz") else None
        while chunk := body.read(MIB):
            sha.update(chunk)
            data = inflater.decompress(chunk) if inflater else chunk
            lines += data.count(b"\n")
        return sha.hexdigest(), lines

    def landed(self, prefix: str) -> dict[str, tuple[str, int]]:
        data = [key for key in self.keys(f"{prefix}/{DAY.isoformat()}/")]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            digests = pool.map(self.digest, data)
        return {key.rsplit("/", 1)[-1]: digest for key, digest in zip(data, digests, strict=True)}

    def delete(self, prefix: str) -> None:
        keys = list(self.keys(prefix + "/"))
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})

    def stop(self) -> None:
        for emulator in self.emulators:
            emulator.stop()
        self.moto.stop()


class _Null(io.RawIOBase):
    """A write-only sink for warming the emulator's cache without holding the zip."""

    position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass


def zlib_stream():
    import zlib

    return zlib.decompressobj(wbits=31)


def same_events(bench: Bench, emulator, naive_prefix: str, amp_prefix: str) -> tuple[int, int]:
    """Both pipelines' objects, compared by name, SHA-256 and event count; (objects, events)."""
    naive_objects, amp_objects = bench.landed(naive_prefix), bench.landed(amp_prefix)
    if naive_objects != amp_objects:
        differing = sorted(set(naive_objects.items()) ^ set(amp_objects.items()))[:5]
        raise SystemExit(f"naive and amp-luigi put different objects in S3: {differing}")
    events = sum(count for _sha, count in amp_objects.values())
    if events != emulator.day_event_count(DAY):
        raise SystemExit(f"S3 holds {events} events, the emulator made {emulator.day_event_count(DAY)}")
    if not amp_objects:
        raise SystemExit("nothing landed in S3")
    return len(amp_objects), events


def best(runs: list[Run]) -> Run:
    """The median run by wall time (the best of two), with the largest RSS and disk any run saw."""
    ordered = sorted(runs, key=lambda run: run.seconds)
    middle = ordered[(len(ordered) - 1) // 2]
    return Run(
        middle.label,
        statistics.median(run.seconds for run in runs) if len(runs) > 2 else middle.seconds,
        max(run.max_rss for run in runs),
        max(run.max_disk for run in runs),
        middle.amp_requests,
        middle.s3_requests,
        0,
        cpu=statistics.median(run.cpu for run in runs),
        s3_cpu=statistics.median(run.s3_cpu for run in runs),
    )


def day_runs(bench: Bench, emulator, runs: int, zip_bytes: int) -> list[tuple[Run, Run | None]]:
    rows: list[tuple[Run, Run | None]] = []
    for keep_gzip in (False, True):
        fmt = ".json.gz" if keep_gzip else ".json"
        naive_runs, amp_runs, unproven_runs = [], [], []
        for _ in range(runs):
            naive_run, naive_prefix = bench.run_naive(emulator, keep_gzip, f"naive {fmt}")
            amp_run, amp_prefix = bench.run_amp(emulator, keep_gzip, f"amp-luigi {fmt}")
            # The same run without proving uploads by the store's answer: the proof's cost.
            unproven, unproven_prefix = bench.run_amp(
                emulator, keep_gzip, f"amp-luigi {fmt}, upload_proof = none", proof="none"
            )
            objects, events = same_events(bench, emulator, naive_prefix, amp_prefix)
            print(
                f"  {fmt}: naive {naive_run.seconds:.1f} s, amp-luigi {amp_run.seconds:.1f} s "
                f"(unproven {unproven.seconds:.1f} s); same {objects} objects, {events} events in S3",
                file=sys.stderr,
            )
            for prefix in (naive_prefix, amp_prefix, unproven_prefix):
                bench.delete(prefix)
            naive_runs.append(naive_run)
            amp_runs.append(amp_run)
            unproven_runs.append(unproven)
        naive_best = best(naive_runs)
        rows += [(naive_best, None), (best(amp_runs), naive_best), (best(unproven_runs), naive_best)]
    return rows


def proof_cost(rows: list[tuple[Run, Run | None]]) -> str:
    """What proving every upload by the store's answer (the ETag's MD5 on moto) costs per day."""
    by_label = {run.label: run for run, _ in rows}
    costs = []
    for fmt in (".json", ".json.gz"):
        proven, unproven = by_label[f"amp-luigi {fmt}"], by_label[f"amp-luigi {fmt}, upload_proof = none"]
        costs.append(
            f"{fmt} {proven.cpu - unproven.cpu:+.2f} s CPU ({proven.cpu / unproven.cpu:.2f}x), "
            f"{proven.seconds - unproven.seconds:+.2f} s wall ({proven.seconds / unproven.seconds:.2f}x)"
        )
    return "Proving every upload (upload_proof = etag, as on moto) vs none: " + "; ".join(costs) + "."


def summary(rows: list[tuple[Run, Run | None]]) -> str:
    by_label = {run.label: run for run, _ in rows}
    original, gz = by_label["naive .json"], by_label["amp-luigi .json.gz"]
    return (
        f"amp-luigi with .json.gz output vs the original script (naive, .json output): "
        f"{original.seconds / gz.seconds:.1f}x faster."
    )


def s3_floor(bench: Bench, emulator, keep_gzip: bool) -> str:
    """What moto alone needs for the day's objects: PUTs from memory, 4 at a time, no checksums at all."""
    start, end = dt.datetime.combine(DAY, dt.time()), dt.datetime.combine(DAY, dt.time(23))
    bodies = [
        data if keep_gzip else gzip.decompress(data) for _name, data in emulator.dataset.members(start, end)
    ]
    prefix = f"floor-{'gz' if keep_gzip else 'json'}"
    s3_cpu, started = bench.moto.cpu(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda n: bench.bare_s3.put_object(Bucket=bench.bucket, Key=f"{prefix}/{n}", Body=bodies[n]),
                range(len(bodies)),
            )
        )
    seconds, s3_cpu = time.perf_counter() - started, bench.moto.cpu() - s3_cpu
    bench.delete(prefix)
    fmt = ".json.gz" if keep_gzip else ".json"
    return f"| S3 alone: PUT the {fmt} objects from memory | {seconds:.1f} | | | {s3_cpu:.1f} | | | | | | |"


def table(rows: list[tuple[Run, Run | None]], zip_bytes: int) -> str:
    head = (
        "| pipeline | wall s | x faster | CPU s | S3 server CPU s | peak memory MiB | x less "
        "| peak staging MiB | x zip | Amplitude requests | S3 requests |"
    )
    lines = [head, "| --- |" + " ---: |" * 10]
    for run, naive_run in rows:
        faster = f"{naive_run.seconds / run.seconds:.1f}" if naive_run else ""
        less = f"{naive_run.max_rss / run.max_rss:.1f}" if naive_run else ""
        lines.append(
            f"| {run.label} | {run.seconds:.1f} | {faster} | {run.cpu:.1f} | {run.s3_cpu:.1f} | "
            f"{run.max_rss / MIB:.0f} | {less} | "
            f"{run.max_disk / MIB:.0f} | {run.max_disk / zip_bytes:.2f} | {run.amp_requests} | {run.s3_requests} |"
        )
    return "\n".join(lines)


def zip_size(emulator) -> tuple[int, int]:
    start, end = dt.datetime.combine(DAY, dt.time()), dt.datetime.combine(DAY, dt.time(23))
    sink = _Null()
    raw = emulator.dataset.write_zip(sink, start, end)
    return sink.position, raw


def nothing_to_do(bench: Bench, emulator, days: int) -> list[str]:
    """ExportRange and RangeDaily over `days` verified days: time and S3 requests to decide."""
    prefix = "range"
    first = DAY - dt.timedelta(days=days)
    body = json.dumps({"objects": [], "events": 0}).encode()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda n: bench.s3.put_object(
                    Bucket=bench.bucket,
                    Key=f"{prefix}/_verified/{first + dt.timedelta(days=n)}.json",
                    Body=body,
                ),
                range(days),
            )
        )
    cwd, config = bench.config(False)
    lines = []
    for task in ("ExportRange", "RangeDaily --of VerifyDay"):
        staging = bench.work / "staging-range"
        staging.mkdir(exist_ok=True)
        command = [str(bench.bin / "luigi"), "--module", "amp_luigi", "--no-lock", *task.split()]
        command += ["--start", first.isoformat(), "--stop", DAY.isoformat(), "--local-scheduler"]
        run = measure(task, command, bench.env(emulator, prefix, staging, config), cwd, staging, bench)
        if "already done" not in run.stderr and "complete" not in run.stderr:
            print(run.stderr[-2000:], file=sys.stderr)
        lines.append(
            f"| {task.split()[0]} over {days} verified days | {run.seconds:.2f} s | "
            f"{run.s3_requests} S3 requests | {run.amp_requests} Amplitude requests |"
        )
    bench.delete(prefix)
    return lines


def backfill(bench: Bench, days: int) -> str:
    """Tiny days through ExportRange --workers 1: our own overhead per day, net of one-off start-up."""
    emulator = bench.emulator({"events_per_hour": 2, "events_per_part": 1000, "padding_bytes": 0}, [])
    times = {}
    for count in (1, days):
        stop = DAY + dt.timedelta(days=100 + count)
        start = stop - dt.timedelta(days=count)
        run, prefix = bench.run_amp(
            emulator,
            False,
            f"backfill {count}",
            [
                "ExportRange",
                "--start",
                start.isoformat(),
                "--stop",
                stop.isoformat(),
                "--workers",
                "1",
                "--local-scheduler",
            ],
        )
        verified = [key for key in bench.keys(f"{prefix}/_verified/")]
        if len(verified) != count:
            raise SystemExit(f"backfill of {count} tiny days verified {len(verified)}")
        times[count] = run.seconds
        bench.delete(prefix)
    per_day = (times[days] - times[1]) / (days - 1)
    return (
        f"| ExportRange --workers 1, {days} tiny days | {times[days]:.2f} s | "
        f"{per_day:.2f} s per day beyond the first (1 day: {times[1]:.2f} s) | |"
    )


def parquet_stage(bench: Bench, emulator) -> list[str]:
    """ParquetDay alone on a day VerifyDay landed as .json.gz: time, CPU, peak memory, sizes."""
    _, prefix = bench.run_amp(emulator, True, "VerifyDay .json.gz")
    staging = bench.work / "staging-parquet"
    staging.mkdir(exist_ok=True)
    cwd, config = bench.config(True)
    command = [str(bench.bin / "luigi"), "--module", "amp_luigi", "--no-lock", "ParquetDay"]
    command += ["--date", DAY.isoformat(), "--local-scheduler"]
    run = measure("ParquetDay", command, bench.env(emulator, prefix, staging, config), cwd, staging, bench)
    gz = sum(bench.keys(f"{prefix}/{DAY.isoformat()}/").values())
    parquet = bench.keys(f"{prefix}_parquet/")
    size = sum(parquet.values())
    return [
        "| stage | wall s | CPU s | S3 server CPU s | peak memory MiB | Parquet MiB | .json.gz MiB | Parquet / .json.gz | files |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| ParquetDay | {run.seconds:.1f} | {run.cpu:.1f} | {run.s3_cpu:.1f} | {run.max_rss / MIB:.0f} | "
        f"{size / MIB:.1f} | {gz / MIB:.1f} | {size / gz:.2f} | {len(parquet)} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=float, default=500, help="uncompressed size of the measured day")
    parser.add_argument("--runs", type=int, default=2, help="runs of each pipeline and format (median)")
    parser.add_argument(
        "--padding",
        type=int,
        default=15000,
        help="bytes of padding per event: 15000 makes ~16 KB events, quick to generate; 0 makes "
        "events of a realistic ~1.7 KB, where the cost per line dominates",
    )
    parser.add_argument("--small-mib", type=float, default=100, help="the small day of the flatness check")
    parser.add_argument("--large-mib", type=float, help="the large day of the flatness check (default --mib)")
    parser.add_argument("--range-days", type=int, default=365)
    parser.add_argument("--tiny-days", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="only the naive vs amp-luigi table")
    parser.add_argument("--parquet", action="store_true", help="only the ParquetDay stage (its own table)")
    parser.add_argument("--work-dir", help="default: a temporary directory")
    parser.add_argument(
        "--cache-dir",
        default=str(Path(tempfile.gettempdir()) / "amp-luigi-bench-cache"),
        help="generated days, kept",
    )
    parser.add_argument(
        "--naive", nargs=5, metavar=("URL", "DATE", "WORK", "BUCKET", "PREFIX"), help=argparse.SUPPRESS
    )
    parser.add_argument("--gz", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help="write a cProfile of every amp-luigi run into this directory")
    parser.add_argument(
        "--dev-venv",
        action="store_true",
        help="run amp-luigi from this development venv, not a venv installed as users install it",
    )
    args = parser.parse_args()
    if args.naive:
        url, date, work, bucket, prefix = args.naive
        return naive(url, date, Path(work), bucket, prefix, args.gz)

    sys.path.insert(0, str(REPO))
    with contextlib.ExitStack() as stack:
        work = Path(args.work_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="amp-bench-")))
        work.mkdir(parents=True, exist_ok=True)
        cache = Path(args.cache_dir)
        bench = Bench(work, cache, DEV_BIN if args.dev_venv else product_bin(cache))
        stack.callback(bench.stop)
        if args.profile:
            bench.profile_dir = Path(args.profile)
            bench.profile_dir.mkdir(parents=True, exist_ok=True)
        print(f"generating a day of ~{args.mib:g} MiB with the emulator ...", file=sys.stderr)
        emulator = bench.emulator(spec_for(args.mib, args.padding), [DAY])
        zip_bytes, raw_bytes = zip_size(emulator)
        print(f"  zip {zip_bytes / MIB:.0f} MiB, NDJSON {raw_bytes / MIB:.0f} MiB", file=sys.stderr)
        if args.parquet:
            print(
                f"{emulator.day_event_count(DAY)} events, {raw_bytes / MIB:.0f} MiB of NDJSON",
                file=sys.stderr,
            )
            print("\n".join(parquet_stage(bench, emulator)))
            return
        rows = day_runs(bench, emulator, args.runs, zip_bytes)
        out = [
            f"One day: {raw_bytes / MIB:.0f} MiB of NDJSON events in a {zip_bytes / MIB:.0f} MiB zip, "
            f"{emulator.day_event_count(DAY)} events; median of {args.runs} alternating run(s) each; "
            f"{os.cpu_count()} cores shared with the emulator and moto.",
            "",
            table(rows, zip_bytes),
            s3_floor(bench, emulator, False),
            s3_floor(bench, emulator, True),
            "",
            summary(rows),
            proof_cost(rows),
        ]
        if not args.quick:
            rss = []
            for mib, seed in ((args.small_mib, 1), (args.large_mib or args.mib, 0)):
                print(f"flatness: a day of ~{mib:g} MiB ...", file=sys.stderr)
                day_emulator = (
                    emulator
                    if seed == 0 and mib == args.mib
                    else bench.emulator(spec_for(mib, args.padding, seed), [DAY])
                )
                run, prefix = bench.run_amp(day_emulator, False, f"{mib:g} MiB")
                bench.delete(prefix)
                rss.append(f"{zip_size(day_emulator)[1] / MIB:.0f} MiB day: {run.max_rss / MIB:.0f} MiB")
            out += ["", "Peak memory of VerifyDay (.json output): " + ", ".join(rss), ""]
            out += ["| check | time | | |", "| --- | ---: | --- | --- |"]
            print("365 days with nothing to do ...", file=sys.stderr)
            out += nothing_to_do(bench, emulator, args.range_days)
            print("tiny-day backfill ...", file=sys.stderr)
            out.append(backfill(bench, args.tiny_days))
        print("\n".join(out))


if __name__ == "__main__":
    main()
