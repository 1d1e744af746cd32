"""A dependency-free emulator of Amplitude's Export API, for tests and benchmarks of the pipeline.

    with Emulator(api_key="k", secret_key="s", events_per_hour=100) as emulator:
        requests.get(emulator.url, params={"start": "20240301T00", "end": "20240301T23"}, auth=("k", "s"))

The events are a pure function of the dataset settings and the hour (`events`), faults are queued at
run time (`faults`), and `python -m amp_luigi.emulator` serves one from the command line.
"""

from amp_luigi.emulator.events import (
    Dataset,
    DatasetSpec,
    HourArchive,
    hour_event_count,
    hour_lines,
    hours_between,
    member_name,
    parse_hour,
)
from amp_luigi.emulator.faults import KINDS as FAULT_KINDS
from amp_luigi.emulator.faults import Fault, Gate
from amp_luigi.emulator.server import EXPORT_PATH, EmulatedProject, Emulator, RequestRecord

__all__ = [
    "EXPORT_PATH",
    "FAULT_KINDS",
    "Dataset",
    "DatasetSpec",
    "EmulatedProject",
    "Emulator",
    "Fault",
    "Gate",
    "HourArchive",
    "RequestRecord",
    "hour_event_count",
    "hour_lines",
    "hours_between",
    "member_name",
    "parse_hour",
]
