"""The benchmark's arithmetic: a figure of several runs is their median, shown with its range."""

from __future__ import annotations

from benchmarks.harness import Run, Spread, summarize


def run(wall: float, cpu: float, rss: int) -> Run:
    return Run(label="amp-luigi .json", wall=wall, cpu=cpu, peak_rss=rss, peak_pss=rss, peak_staging=0)


def test_a_summary_is_the_median_with_its_range_and_the_worst_memory() -> None:
    summary = summarize([run(4.5, 3.0, 10), run(3.9, 2.7, 30), run(4.1, 3.2, 20)])
    assert summary.wall == Spread(median=4.1, low=3.9, high=4.5)
    assert summary.cpu.median == 3.0
    assert summary.peak_rss == 30, "memory is judged by the worst run, not the median"
    assert summary.wall.show() == "4.1 (3.9-4.5)"
    assert Spread.of([2.0]).show() == "2.0"
