"""The `luigi` command with IcebergDay's steps timed, for benchmarks/iceberg.py.

Runs `luigi` as its console script does, with one change: IcebergDay.run, when called, first wraps
the steps amp_luigi.query.iceberg.commit_day calls by their module names, and open_table (the
catalog's, IcebergDay's way into the table), so each logs `bench-step <name> <seconds> <peak RSS
KiB>` on the `amp_luigi.bench` logger when it returns: its time, and the process's peak RSS
(VmHWM) so far, so the step that raised the peak shows. Nothing else changes.

    python -m benchmarks.iceberg_probe --module amp_luigi IcebergDay --date 2024-03-01 --local-scheduler
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

# commit_day's steps, those this version of amp_luigi.query.iceberg has: pass 1, pass 2 (new
# columns, event days, the committed uuids, the rows kept), the files written (where commit_day
# writes them itself), _commit (passes 2 and 3: the transaction is _commit less the steps inside
# it), the read-back.
STEPS = (
    "_typed_hours",
    "_new_columns",
    "_event_days",
    "_committed_uuids",
    "_deduplicated",
    "_keep",
    "_upload_partitions",
    "_commit",
    "_committed_rows",
    "commit_day",
)
PREFIX = "bench-step"


def peak_kib() -> int:
    """This process's peak RSS so far (VmHWM), 0 where /proc has none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    logger = logging.getLogger("amp_luigi.bench")

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            logger.info("%s %s %.3f %d", PREFIX, name, time.perf_counter() - started, peak_kib())

    wrapper.timed = True  # type: ignore[attr-defined]
    return wrapper


def instrument() -> None:
    from amp_luigi import tasks
    from amp_luigi.query import catalog, iceberg

    if getattr(iceberg.commit_day, "timed", False):
        return
    for name in STEPS:
        if callable(getattr(iceberg, name, None)):
            setattr(iceberg, name, timed(name, getattr(iceberg, name)))
    # IcebergDay calls open_table by the name it imported, at module level or inside run().
    opened = timed("open_table", catalog.open_table)
    catalog.open_table = opened
    if hasattr(tasks, "open_table"):
        tasks.open_table = opened


def main() -> int:
    from luigi.cmdline import luigi_run

    from amp_luigi.tasks import IcebergDay

    run = IcebergDay.run

    def probed(self: IcebergDay) -> None:
        instrument()
        run(self)

    IcebergDay.run = probed  # type: ignore[method-assign]
    return luigi_run()  # type: ignore[no-any-return]


if __name__ == "__main__":
    sys.exit(main())
