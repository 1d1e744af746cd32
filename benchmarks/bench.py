"""The benchmark's world: the emulator, a moto server in its own process, a bucket, and the commands.

Both pipelines run as child processes from a venv installed as a user installs amp-luigi (`pip
install .`, kept in the cache directory), not from the development venv: that one also holds moto,
pytest and their dependencies, and Luigi imports one of them (jsonschema, ~80 ms) when it is there.
Environments come from `amp_luigi.commands.sandbox.deployment_environment`, as the sandbox and tests build
them, so the benchmark measures the configuration users run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import boto3
import botocore.config

from amp_luigi.emulator import Emulator
from amp_luigi.testing.local import LOCAL_ACCESS_KEY, deployment_environment
from amp_luigi.testing.s3servers import MotoProcessServer
from benchmarks.harness import MIB, Run, cpu_seconds, measure

REPO = Path(__file__).resolve().parent.parent
DAY = dt.date(2024, 3, 1)
API_KEY, SECRET_KEY = "bench-api-key", "bench-secret-key"
AWS_SECRET = "bench-aws-secret"
BUCKET = "amp-bench"


PRODUCT_EXTRAS = "parquet,iceberg"  # ParquetDay's DuckDB, IcebergDay's pyiceberg


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a benchmark works and caches, how it profiles, and which venv it runs: every one takes these."""
    parser.add_argument("--work-dir", help="default: a temporary directory")
    parser.add_argument(
        "--cache-dir",
        default=str(Path(tempfile.gettempdir()) / "amp-luigi-bench-cache"),
        help="generated days and the product venv, kept",
    )
    parser.add_argument("--profile", help="write a cProfile of every luigi run into this directory")
    parser.add_argument(
        "--py-spy", help="with --profile: sample with this py-spy binary instead (all threads)"
    )
    parser.add_argument(
        "--dev-venv", action="store_true", help="run from this development venv, not a user's install"
    )


def open_bench(args: argparse.Namespace, stack: contextlib.ExitStack) -> Bench:
    """The world of the run arguments (add_run_arguments), stopped when `stack` closes."""
    work = Path(args.work_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="amp-bench-")))
    work.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache_dir)
    bench = Bench(work, cache, Path(sys.executable).parent if args.dev_venv else product_bin(cache))
    stack.callback(bench.stop)
    if args.profile:
        bench.profile_dir = Path(args.profile)
        bench.profile_dir.mkdir(parents=True, exist_ok=True)
        bench.py_spy = args.py_spy
    return bench


def product_bin(cache: Path) -> Path:
    """The bin directory of a venv holding amp-luigi as `pip install` makes it, without the test tools.

    Rebuilt when pyproject.toml or the extras change; PYTHONPATH (deployment_environment) puts this
    tree's code first.
    """
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + PRODUCT_EXTRAS.encode()).hexdigest()[:12]
    venv = cache / f"venv-{key}"
    if not (venv / "bin" / "luigi").exists():
        print(f"installing amp-luigi into {venv} (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, f"{REPO}[{PRODUCT_EXTRAS}]"], check=True)
    return venv / "bin"


def day_hours(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.combine(day, dt.time()), dt.datetime.combine(day, dt.time(23))


class _Counter(io.RawIOBase):
    """A write-only sink that counts: the zip's size without holding it."""

    position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position


class Bench:
    """One moto server and bucket for the whole benchmark; each run gets its own key prefix."""

    def __init__(self, work: Path, cache: Path, bin_dir: Path) -> None:
        self.work, self.cache, self.bin = work, cache, bin_dir
        self.moto = MotoProcessServer().start()
        client = {
            "endpoint_url": self.moto.url,
            "region_name": "us-east-1",
            "aws_access_key_id": LOCAL_ACCESS_KEY,
            "aws_secret_access_key": AWS_SECRET,
        }
        self.s3 = boto3.client("s3", **client)
        # The floor's client: no checksum and no SHA-256 of the body, the least a client can do.
        bare = botocore.config.Config(
            s3={"payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            max_pool_connections=16,
        )
        self.bare_s3 = boto3.client("s3", config=bare, **client)
        self.s3.create_bucket(Bucket=BUCKET)
        self.emulators: list[Emulator] = []
        self.runs = 0
        self.profile_dir: Path | None = None
        self.py_spy: str | None = None  # a py-spy binary: sample every thread and process of the run

    def stop(self) -> None:
        for emulator in self.emulators:
            emulator.stop()
        self.moto.stop()

    # The world's counters, read before and after each run.

    def s3_requests(self) -> int:
        return len(re.findall(rb"(?:GET|PUT|POST|HEAD|DELETE) /", self.moto.log.read_bytes()))

    def counters(self) -> tuple[int, int, float]:
        amplitude = sum(len(emulator.requests) for emulator in self.emulators)
        return amplitude, self.s3_requests(), cpu_seconds(self.moto.pid)

    def emulator(self, settings: dict[str, int], warm: list[dt.date]) -> Emulator:
        emulator = Emulator(API_KEY, SECRET_KEY, cache_dir=self.cache, **settings).start()
        self.emulators.append(emulator)
        for day in warm:  # build (or load) the day's hours now, not inside a measured run
            emulator.dataset.write_zip(_Counter(), *day_hours(day))
        return emulator

    @staticmethod
    def zip_size(emulator: Emulator, day: dt.date = DAY) -> tuple[int, int]:
        """(zip bytes, NDJSON bytes) of the day's export."""
        sink = _Counter()
        raw = emulator.dataset.write_zip(sink, *day_hours(day))
        return sink.position, raw

    # Running the pipelines.

    def env(self, emulator: Emulator, prefix: str, staging: Path, config: Path) -> dict[str, str]:
        env = deployment_environment(
            export_url=emulator.url,
            keys={"": (API_KEY, SECRET_KEY)},
            bucket=BUCKET,
            endpoint=self.moto.url,
            data_dir=staging,
            aws_secret=AWS_SECRET,
        )
        # The naive script knows only boto3's own credential chain.
        env.update(
            AMP_S3_PREFIX=prefix,
            AWS_ACCESS_KEY_ID=env["ACCESS_KEY"],
            AWS_SECRET_ACCESS_KEY=env["SECRET_ACCESS_KEY"],
            LUIGI_CONFIG_PATH=str(config),
        )
        return env

    def config(self, keep_gzip: bool, proof: str = "auto") -> tuple[Path, Path]:
        """(working directory holding the project's luigi.cfg, a config read after it)."""
        cwd = self.work / "cwd"
        cwd.mkdir(exist_ok=True)
        shutil.copy(REPO / "luigi.cfg", cwd / "luigi.cfg")
        config = self.work / f"bench-{'gz' if keep_gzip else 'json'}-{proof}.cfg"
        config.write_text(f"[storage]\nkeep_gzip = {str(keep_gzip).lower()}\nupload_proof = {proof}\n")
        return cwd, config

    def luigi(self, label: str, args: list[str]) -> list[str]:
        """The `luigi` command line, under cProfile when --profile asked for it."""
        profile: list[str] = []
        name = re.sub(r"\W+", "-", label).strip("-")
        if self.profile_dir and self.py_spy:
            # cProfile sees only the main thread; the upload threads and ExtractDay's workers need this.
            out = self.profile_dir / f"{self.runs}-{name}.txt"
            profile = [
                self.py_spy,
                "record",
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                "250",
                "-o",
                str(out),
                "--",
            ]
        elif self.profile_dir:
            profile = [
                str(self.bin / "python"),
                "-m",
                "cProfile",
                "-o",
                str(self.profile_dir / f"{self.runs}-{name}.prof"),
            ]
        # --no-lock: Luigi's process lock is per command line, and tests elsewhere may run the same one.
        return [*profile, str(self.bin / "luigi"), "--module", "amp_luigi", "--no-lock", *args]

    def run(
        self,
        emulator: Emulator,
        label: str,
        command: list[str],
        prefix: str,
        *,
        keep_gzip: bool = False,
        proof: str = "auto",
        check: bool = True,
    ) -> Run:
        staging = self.work / f"staging-{self.runs}"
        staging.mkdir(parents=True, exist_ok=True)
        cwd, config = self.config(keep_gzip, proof)
        env = self.env(emulator, prefix, staging, config)
        run = measure(label, command, env=env, cwd=cwd, staging=staging, counters=self.counters, check=check)
        shutil.rmtree(staging, ignore_errors=True)
        return run

    def run_amp(
        self,
        emulator: Emulator,
        label: str,
        *,
        keep_gzip: bool = False,
        proof: str = "auto",
        args: list[str] | None = None,
        prefix: str | None = None,
    ) -> tuple[Run, str]:
        """amp-luigi's VerifyDay (or `args`) under a new key prefix, or `prefix` to run over one again."""
        self.runs += 1
        prefix = prefix or f"run{self.runs}-amp"
        command = self.luigi(label, args or ["VerifyDay", "--date", DAY.isoformat(), "--local-scheduler"])
        return self.run(emulator, label, command, prefix, keep_gzip=keep_gzip, proof=proof), prefix

    def run_naive(self, emulator: Emulator, label: str, *, keep_gzip: bool = False) -> tuple[Run, str]:
        self.runs += 1
        prefix = f"run{self.runs}-naive"
        script = str(Path(__file__).with_name("naive.py"))
        work = self.work / f"staging-{self.runs}" / "day"
        command = [str(self.bin / "python"), script, emulator.url, DAY.isoformat(), str(work), BUCKET, prefix]
        command += ["--gz"] if keep_gzip else []
        return self.run(emulator, label, command, prefix, keep_gzip=keep_gzip), prefix

    # What landed in S3.

    def keys(self, prefix: str) -> dict[str, int]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}

    def digest(self, key: str) -> tuple[str, int]:
        """The object's SHA-256 and its number of events (lines, after gunzip for .json.gz)."""
        body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        sha, lines = hashlib.sha256(), 0
        inflater = zlib.decompressobj(wbits=31) if key.endswith(".gz") else None
        while chunk := body.read(MIB):
            sha.update(chunk)
            lines += (inflater.decompress(chunk) if inflater else chunk).count(b"\n")
        return sha.hexdigest(), lines

    def landed(self, prefix: str, day: dt.date = DAY) -> dict[str, tuple[str, int]]:
        """The day's objects under `prefix`, by name: (SHA-256, events)."""
        keys = list(self.keys(f"{prefix}/{day.isoformat()}/"))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            digests = pool.map(self.digest, keys)
        return {key.rsplit("/", 1)[-1]: digest for key, digest in zip(keys, digests, strict=True)}

    def delete(self, prefix: str) -> None:
        keys = list(self.keys(prefix + "/"))
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": batch})
