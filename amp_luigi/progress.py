"""Progress reporting to Luigi's scheduler, as one helper that is a no-op outside a running worker.

Luigi sets `set_status_message` and `set_progress_percentage` on a task only while a worker runs it
(they are None otherwise, e.g. in unit tests). Each call is a request to the central scheduler, so
updates are sent at most once per `interval` seconds unless the stage says it is done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import luigi

logger = logging.getLogger(__name__)


def mib(size: int) -> str:
    return f"{size / 1048576:,.1f} MiB"


class Progress:
    def __init__(
        self, task: luigi.Task, interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.task = task
        self.interval = interval
        self.clock = clock
        self._last = -interval
        self._lock = threading.Lock()  # upload threads report concurrently

    def __call__(self, message: str, percent: float | None = None, *, final: bool = False) -> None:
        with self._lock:
            now = self.clock()
            if not final and now - self._last < self.interval:
                return
            self._last = now
        logger.info("%s: %s", self.task.task_id, message)
        set_message = getattr(self.task, "set_status_message", None)
        set_percent = getattr(self.task, "set_progress_percentage", None)
        if callable(set_message):
            set_message(message)
        if percent is not None and callable(set_percent):
            set_percent(int(min(100.0, max(0.0, percent))))
