"""Measuring one child process and everything it starts: wall, CPU, memory, staging disk.

Figures are the run's own, never the S3 server's (a process of its own, read separately):

- CPU: user + system seconds of the child and every descendant it reaped (wait4's rusage), i.e.
  Luigi's forked task processes and ExtractDay's workers too.
- Memory: sampled every 50 ms over the live process tree: the largest peak RSS (VmHWM) of any one
  process, and the largest sum of PSS at one moment. A forked worker's RSS counts the pages it
  shares with its parent again; PSS splits each shared page between the processes mapping it, so
  the sum is what the run holds. VmHWM, not wait4's ru_maxrss: Linux carries the parent's peak over
  fork and exec into the child.
- Staging: the peak disk use of the staging directory, polled at the same rate.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
SAMPLE_SECONDS = 0.05


@dataclass
class Run:
    """One measured run of a command; sizes in bytes, times in seconds."""

    label: str
    wall: float
    cpu: float
    peak_rss: int  # the largest peak RSS of any one process of the run
    peak_pss: int  # the largest sum of PSS over the run's processes at one sample
    peak_staging: int
    amplitude_requests: int = 0
    s3_requests: int = 0
    s3_cpu: float = 0.0  # the S3 server's, while the run ran: not part of `cpu`
    stderr: str = field(default="", repr=False)
    returncode: int = 0


@dataclass(frozen=True)
class Spread:
    """The median of several runs' figure, with the lowest and highest seen."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def show(self, scale: float = 1.0, digits: int = 1) -> str:
        """e.g. `3.9 (3.7-4.5)`; one value alone without its range."""
        median, low, high = (f"{value / scale:.{digits}f}" for value in (self.median, self.low, self.high))
        return median if low == high else f"{median} ({low}-{high})"


@dataclass(frozen=True)
class Summary:
    """Several runs of one pipeline: medians and ranges; memory as the worst any run reached."""

    label: str
    runs: int
    wall: Spread
    cpu: Spread
    s3_cpu: Spread
    peak_rss: int
    peak_pss: int
    peak_staging: int
    amplitude_requests: int
    s3_requests: int


def summarize(runs: Sequence[Run]) -> Summary:
    """Medians (not the best run: the machine is shared, and load moves every figure both ways)."""
    return Summary(
        label=runs[0].label,
        runs=len(runs),
        wall=Spread.of([run.wall for run in runs]),
        cpu=Spread.of([run.cpu for run in runs]),
        s3_cpu=Spread.of([run.s3_cpu for run in runs]),
        peak_rss=max(run.peak_rss for run in runs),
        peak_pss=max(run.peak_pss for run in runs),
        peak_staging=max(run.peak_staging for run in runs),
        amplitude_requests=int(statistics.median(run.amplitude_requests for run in runs)),
        s3_requests=int(statistics.median(run.s3_requests for run in runs)),
    )


def cpu_seconds(pid: int) -> float:
    """User + system seconds of a live process so far (for the S3 server, which outlives runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants; a process that exits meanwhile is left out."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            queue += [
                int(child) for child in Path(f"/proc/{current}/task/{current}/children").read_text().split()
            ]
    return found


def _status_kib(pid: int, name: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    return 0


def _pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def disk_usage(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def measure(
    label: str,
    command: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    staging: Path,
    counters: Callable[[], tuple[int, int, float]] = lambda: (0, 0, 0.0),
    check: bool = True,
) -> Run:
    """Run `command` to its end, sampling its process tree; `counters` reads (Amplitude requests,
    S3 requests, S3 server CPU) before and after, so the run gets the difference."""
    before = counters()
    peaks: dict[int, int] = {}  # pid -> VmHWM KiB
    peak_pss = peak_disk = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_pss, peak_disk
        while not done.wait(SAMPLE_SECONDS):
            tree = process_tree(child.pid)
            for pid in tree:
                peaks[pid] = max(peaks.get(pid, 0), _status_kib(pid, "VmHWM:"))
            peak_pss = max(peak_pss, sum(_pss_kib(pid) for pid in tree))
            peak_disk = max(peak_disk, disk_usage(staging))

    sampler = threading.Thread(target=sample, daemon=True)
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        sampler.start()
        _pid, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    time.sleep(0.2)  # moto writes its log line after answering
    after = counters()
    if check and child.returncode != 0:
        raise SystemExit(f"{label} failed (exit {child.returncode}):\n{stderr[-4000:]}")
    return Run(
        label=label,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss=max(peaks.values(), default=0) * 1024,
        peak_pss=peak_pss * 1024,
        peak_staging=peak_disk,
        amplitude_requests=after[0] - before[0],
        s3_requests=after[1] - before[1],
        s3_cpu=after[2] - before[2],
        stderr=stderr,
        returncode=child.returncode,
    )
