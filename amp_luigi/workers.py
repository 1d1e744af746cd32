"""Forked worker processes that die with the process that forked them, for work that holds the GIL.

A forked worker starts at once and shares its parent's memory. Linux kills it when its parent dies
(SIGKILL included), so a killed run leaves no worker writing into the staging directory the rerun
uses. Where fork is not safe or a worker cannot be tied to its parent's life (not Linux), FORK is
false and callers do the work in this process. On the first failure the items not yet started are
cancelled.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

FORK = sys.platform == "linux"
PR_SET_PDEATHSIG = 1


def map_in_workers(job: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`job` of each item in `workers` forked processes, results in order."""
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        yield from pool.map(job, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _die_with_parent(parent: int) -> None:
    """Have Linux kill this worker when the process that forked it dies, SIGKILL included."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)
