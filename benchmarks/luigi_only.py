"""Luigi's own cost per day of a backfill, without amp-luigi, S3 or any work: is the growth Luigi's?

    .venv/bin/python benchmarks/luigi_only.py --days 365 1095            # all days required at once
    .venv/bin/python benchmarks/luigi_only.py --days 1095 --batch 50     # ExportRange's batches

Each day is a chain of four tasks whose output is an empty file (as ExportDay -> ... -> VerifyDay),
built with Luigi's local scheduler and `--workers 2` (a forked process per task, as in production).
With every day required at once, Luigi's scheduler holds ~4 tasks a day in its pending set, and its
get_work sorts and scans that set on every call (spotify/luigi #1492, #1750): the cost per day grows
with the range. `--batch N` yields the days from run() N at a time, in batches started as workers
come free, the way ExportRange hands a long range over.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import luigi

FIRST = dt.date(2020, 1, 1)
ROOT = Path(os.environ.setdefault("LUIGI_ONLY_ROOT", tempfile.mkdtemp(prefix="luigi-only-")))


class Stage(luigi.Task):
    date = luigi.DateParameter()
    stage = luigi.IntParameter(default=3)

    @property
    def priority(self) -> int:  # type: ignore[override]
        return 100_000 - (self.date - FIRST).days  # earlier days first, as amp-luigi's day tasks

    def requires(self) -> list[luigi.Task]:
        return [Stage(self.date, self.stage - 1)] if self.stage else []

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(ROOT / f"{self.date}-{self.stage}"))

    def run(self) -> None:
        Path(self.output().path).touch()


class Batch(luigi.WrapperTask):
    first = luigi.DateParameter()
    days = luigi.IntParameter()

    def complete(self) -> bool:
        return all(task.complete() for task in self.tasks())

    def tasks(self) -> list[luigi.Task]:
        return [Stage(self.first + dt.timedelta(days=n)) for n in range(self.days)]

    def deps(self) -> list[luigi.Task]:
        return []

    def run(self) -> Iterator[list[luigi.Task]]:
        yield self.tasks()


class Backfill(luigi.WrapperTask):
    days = luigi.IntParameter()
    batch = luigi.IntParameter(default=0)

    def requires(self) -> list[luigi.Task]:
        return [Stage(FIRST + dt.timedelta(days=n)) for n in range(self.days)]

    def deps(self) -> list[luigi.Task]:
        return [] if self.batch else list(super().deps())

    def complete(self) -> bool:
        return bool(super().complete()) if not self.batch else False

    def run(self) -> Iterator[list[luigi.Task]]:
        if self.batch:
            yield [
                Batch(FIRST + dt.timedelta(days=n), min(self.batch, self.days - n))
                for n in range(0, self.days, self.batch)
            ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, nargs="+", default=[365, 1095])
    parser.add_argument("--batch", type=int, default=0, help="yield the days in batches of this many")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for days in args.days:
        for path in ROOT.iterdir():
            path.unlink()
        started, cpu = time.perf_counter(), os.times()
        luigi.build(
            [Backfill(days=days, batch=args.batch)],
            local_scheduler=True,
            workers=args.workers,
            log_level="ERROR",
        )
        wall, after = time.perf_counter() - started, os.times()
        used = sum(after[:4]) - sum(cpu[:4])  # this process and its reaped task processes
        done = len(list(ROOT.iterdir()))
        print(
            f"{days} days ({done} tasks), --workers {args.workers}"
            + (f", batches of {args.batch}" if args.batch else ", all at once")
            + f": {wall:.1f} s, {wall / days * 1000:.0f} ms a day, CPU {used / days * 1000:.0f} ms a day "
            f"(load {os.getloadavg()[0]:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
