"""Forked workers: results in order from other processes, a failure raised to the caller, no worker
left behind, and none outliving a parent killed with SIGKILL (so a killed run writes nothing more)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from amp_luigi.errors import ArchiveError
from amp_luigi.workers import FORK, map_in_workers
from tests.conftest import REPO
from tests.expect import poll

pytestmark = pytest.mark.skipif(not FORK, reason="forked workers are Linux's")


def square_in(item: int) -> tuple[int, int]:
    return item * item, os.getpid()


def refuse(item: int) -> int:
    if item == 3:
        raise ArchiveError(f"member {item} is corrupt")
    return item


def test_results_come_in_order_from_other_processes() -> None:
    results = list(map_in_workers(square_in, range(20), 2))
    assert [value for value, _ in results] == [n * n for n in range(20)]
    assert os.getpid() not in {pid for _, pid in results}


def test_a_failure_in_a_worker_is_raised_to_the_caller_and_no_worker_is_left() -> None:
    before = set(multiprocessing.active_children())
    with pytest.raises(ArchiveError, match="member 3 is corrupt"):
        list(map_in_workers(refuse, range(10), 2))
    assert set(multiprocessing.active_children()) == before


# A parent that starts one worker, which writes its pid and then waits for ever.
PARENT = """
import sys, threading
from pathlib import Path
from amp_luigi.workers import map_in_workers

def job(path):
    import os
    Path(path).write_text(str(os.getpid()))
    threading.Event().wait()

list(map_in_workers(job, [sys.argv[1]], 1))
"""


def gone(pid: int) -> bool:
    """Ended: no such process, or a zombie its new parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_worker_dies_with_a_parent_killed_by_sigkill(tmp_path: Path) -> None:
    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pid_file)], cwd=REPO, text=True)
    try:
        worker = int(poll(lambda: pid_file.exists() and pid_file.read_text(), "the worker to start", parent))
        assert not gone(worker)
        parent.send_signal(signal.SIGKILL)  # no cleanup runs: only the kernel can end the worker now
        parent.wait()
        poll(lambda: gone(worker), "the worker to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
