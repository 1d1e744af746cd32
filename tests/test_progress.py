"""Status lines and progress bars in the scheduler: sent at most once an interval unless final, clamped
to whole percents, and a no-op (a log line only) where no worker runs the task."""

from __future__ import annotations

import logging
import threading

import luigi
import pytest

from amp_luigi.progress import Progress, mib


class RunningTask:
    """What a Luigi worker makes of a task while it runs it: the two callbacks, here recorded."""

    task_id = "ExportDay_2024_03_01_abc"

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.percents: list[int] = []

    def set_status_message(self, message: str) -> None:
        self.messages.append(message)

    def set_progress_percentage(self, percent: int) -> None:
        self.percents.append(percent)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_updates_are_sent_at_most_once_an_interval_and_a_final_one_always() -> None:
    task, clock = RunningTask(), Clock()
    progress = Progress(task, interval=1.0, clock=clock)  # type: ignore[arg-type]
    progress("first", 1)
    clock.now += 0.5
    progress("too soon", 2)
    clock.now += 0.5
    progress("a second later", 3)
    progress("done", 100, final=True)
    assert task.messages == ["first", "a second later", "done"]
    assert task.percents == [1, 3, 100]


def test_percentages_are_whole_and_clamped_and_a_message_may_come_alone() -> None:
    task = RunningTask()
    progress = Progress(task)  # type: ignore[arg-type]
    for percent in (33.9, 150.0, -2.0):
        progress(f"at {percent}", percent, final=True)
    progress("no percentage", final=True)
    assert task.percents == [33, 100, 0]
    assert task.messages[-1] == "no percentage"


def test_outside_a_worker_progress_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Idle(luigi.Task):
        pass

    task = Idle()
    assert getattr(task, "set_status_message", None) is None, "Luigi sets it only while a worker runs it"
    caplog.set_level(logging.INFO, logger="amp_luigi.progress")
    Progress(task)("requesting 2024-03-01 from Amplitude", 0, final=True)
    assert f"{task.task_id}: requesting 2024-03-01 from Amplitude" in caplog.text


def test_concurrent_reporters_send_one_update_per_interval() -> None:
    task, clock = RunningTask(), Clock()
    progress = Progress(task, interval=1.0, clock=clock)  # type: ignore[arg-type]
    start = threading.Barrier(8)

    def report(n: int) -> None:
        start.wait()
        progress(f"uploaded {n}", n)

    threads = [threading.Thread(target=report, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(task.messages) == 1, "the clock did not move: one update, whichever thread came first"


def test_sizes_are_shown_in_mib_with_one_decimal() -> None:
    assert mib(0) == "0.0 MiB"
    assert mib(1024 * 1024) == "1.0 MiB"
    assert mib(1536 * 1024 * 1024) == "1,536.0 MiB"
