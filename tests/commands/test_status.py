"""The status view: states and counts from the markers, a calendar, and a bounded number of requests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from amp_luigi.commands.days import DONE, EMPTY, FAILED, MISSING, NOT_YET, collect
from amp_luigi.s3 import Bucket
from amp_luigi.testing.local import s3_client
from tests.conftest import SECRETS, Workspace
from tests.expect import setup_days


class CountingClient:
    """A boto3 client that counts the calls made through it."""

    def __init__(self, client: object) -> None:
        self.client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        method = getattr(self.client, name)

        def call(*args: object, **kwargs: object) -> object:
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


def test_states_and_counts_come_from_the_markers_in_a_bounded_number_of_requests(
    workspace: Workspace, moto_endpoint: str
) -> None:
    setup_days(workspace)
    client = CountingClient(s3_client(workspace.env))
    days = collect(
        Bucket(client, workspace.bucket),
        "python_import",
        workspace.data_dir,
        dt.date(2024, 3, 1),
        dt.date(2024, 3, 8),
        newest=dt.date(2024, 3, 6),
    )
    assert [(day.date.day, day.state, day.events, day.objects) for day in days] == [
        (1, DONE, 4956, 22),
        (2, EMPTY, 0, 0),
        (3, FAILED, 0, 0),
        (4, FAILED, 0, 0),
        (5, MISSING, 0, 0),
        (6, MISSING, 0, 0),
        (7, NOT_YET, 0, 0),
    ]
    assert "_uploaded marker" in days[2].reason and "staging" in days[3].reason
    # Two listings, then one read per verified day in the range: never the data objects.
    assert sorted(client.calls) == ["get_object", "get_object", "list_objects_v2", "list_objects_v2"]


def test_status_command_prints_a_calendar(workspace: Workspace) -> None:
    setup_days(workspace)
    run = workspace.amp_luigi("status", "--start", "2024-03-01", "--stop", "2024-03-08", "--check")
    assert run.returncode == 1, run.stderr  # --check: days 03-06 are failed or missing
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"s3://{workspace.bucket}/python_import/  2024-03-01 .. 2024-03-07")
    assert lines[1].split() == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    # 2024-03-01 is a Friday: the first week starts on Monday 2024-02-26.
    assert lines[2].split() == ["2024-02-26", "01", "4.96k/22", "02", "empty", "03", "FAILED"]
    assert lines[3].split() == [
        "2024-03-04",
        "04",
        "FAILED",
        "05",
        "missing",
        "06",
        "missing",
        "07",
        "missing",
    ]
    assert "1 done, 1 empty, 3 missing, 2 FAILED, 0 not yet; 4,956 events in 22 objects" in run.stdout
    assert "2024-03-03 failed (or is running now): an _uploaded marker without a _verified one" in run.stdout
    assert "2024-03-04 failed (or is running now): a staging directory left behind" in run.stdout
    assert "missing: 2024-03-05..2024-03-07" in run.stdout
    for secret in SECRETS:
        assert secret not in run.stdout + run.stderr


def test_status_names_a_missing_setting(workspace: Workspace, tmp_path: Path) -> None:
    run = workspace.amp_luigi("status", "--start", "2024-03-01", env={"AWS_BUCKET_NAME": ""})
    assert run.returncode == 2
    assert "AWS_BUCKET_NAME" in run.stderr
