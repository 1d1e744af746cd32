"""The plan command's figures: the peak staging of a run's waves, and how a window is described
(the requests themselves are the run's own planning, proven equal to a run in tests/e2e/test_windows_e2e.py)."""

from __future__ import annotations

import datetime as dt

from amp_luigi.commands.plan import describe, peak_staging
from amp_luigi.windows import Window

DAY = dt.date(2024, 3, 1)
MiB = 1024 * 1024


def window(first: int, days: int, estimate: int | None, hours: int = 24) -> Window:
    return Window(tuple(DAY + dt.timedelta(days=first + n) for n in range(days)), hours, estimate)


def test_the_peak_is_a_wave_while_the_days_of_the_wave_before_it_are_processed() -> None:
    waves = [
        [window(0, 1, 10 * MiB)],
        [window(1, 2, 20 * MiB), window(3, 2, 30 * MiB)],
        [window(5, 4, 5 * MiB)],
    ]
    assert peak_staging(waves) == 60 * MiB  # the second wave (50) and the first (10)
    assert peak_staging([]) == 0


def test_the_peak_is_unknown_while_a_size_is() -> None:
    assert peak_staging([[window(0, 1, None)], [window(1, 2, 20 * MiB)]]) is None


def test_a_window_is_described_by_its_days_and_size_or_as_unknown() -> None:
    assert describe(window(0, 3, 3 * MiB)) == "2024-03-01..2024-03-03 (3 days): ~3.0 MiB"
    assert describe(window(0, 1, None)) == "2024-03-01: unknown: grows from one day"
    assert describe(window(0, 1, 3000 * MiB, hours=6)).startswith("2024-03-01 in 6-hour ranges: ~")
