"""Staging in S3 ([staging] location), as several hosts without a shared disk use it: any host runs
any stage of any day from what the others left in S3, a host killed mid-stage leaves nothing another
cannot finish exactly, damaged staging objects are discarded by name and made again, and a worker's
own disk holds nothing but its lock files.

Hosts are stood in for by processes with their own data directories (AMP_DATA_DIR) and pid-lock
directories; they share the bucket, the emulator and, where one runs, luigid.
"""

from __future__ import annotations

import configparser
import datetime as dt
import gzip
import json
import os
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from amp_luigi.emulator import Emulator
from amp_luigi.testing.local import Luigid, clean_environment
from amp_luigi.testing.proxy import FLIP, Rule
from tests.conftest import BIG, DAY, LUIGI, REPO, SMALL, Workspace
from tests.e2e.test_crash_recovery import kill_at
from tests.e2e.test_integrity_e2e import assert_caught_and_repaired
from tests.expect import assert_days_exact, files_under, output, poll, requested_days

STAGING = "amp-staging/"
DAY_STAGING = f"{STAGING}{DAY.isoformat()}/"


def stage_in_s3(workspace: Workspace) -> None:
    workspace.configure("staging", location=f"s3://{workspace.bucket}/{STAGING}")


def host(tmp_path: Path, name: str) -> dict[str, str]:
    """Another host's environment: its own data directory, the same settings and bucket."""
    return {"AMP_DATA_DIR": str(tmp_path / name / "data")}


def local_files(root: Path) -> set[str]:
    """What a host wrote to its own disk, relative to its data directory."""
    return {str(path.relative_to(root)) for path in files_under(root)} if root.exists() else set()


def only_locks(root: Path) -> bool:
    return all(name.startswith(".locks/") for name in local_files(root))


def day_requests(emulator: Emulator, day: dt.date = DAY) -> int:
    return sum(day in requested_days(record.start, record.end) for record in emulator.requests)


def test_a_day_staged_in_s3_lands_exactly_and_the_worker_disk_holds_only_its_locks(
    workspace: Workspace, emulator: Emulator
) -> None:
    stage_in_s3(workspace)
    workspace.configure("staging", keep=True)
    run = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert run.returncode == 0, output(run)
    staged = workspace.keys(DAY_STAGING)
    assert f"{DAY_STAGING}export/parts.json" in staged and f"{DAY_STAGING}manifest.json" in staged
    members = [key for key in staged if key.startswith(f"{DAY_STAGING}members/")]
    manifest = json.loads(workspace.read(f"{DAY_STAGING}manifest.json"))
    assert sorted(key.rsplit("/", 1)[1] for key in members) == sorted(m["name"] for m in manifest["members"])
    assert [key for key in staged if key.endswith(".zip")], "the archive was streamed to S3"
    assert only_locks(workspace.data_dir), local_files(workspace.data_dir)

    # Without keep, the verified day's staging objects go; S3 then holds exactly the day.
    workspace.configure("staging", keep=False)
    workspace.s3.delete_object(Bucket=workspace.bucket, Key=f"python_import/_verified/{DAY}.json")
    again = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert again.returncode == 0, output(again)
    assert workspace.keys(STAGING) == {}
    assert_days_exact(workspace, emulator)
    assert day_requests(emulator) == 1, "verified again from what S3 holds, not downloaded again"


# (kill point, dataset, whether the download survives the kill)
KILLS = [
    ("start:ExtractDay:1", SMALL, True),  # the archive and its index in S3
    ("extract:3", SMALL, True),  # a member being checked and written to S3
    ("start:UploadDay:1", SMALL, True),  # the members and the manifest in S3
    ("s3:upload_part:2", BIG, True),  # a multipart upload of a data object (or a member) open
    ("cleanup:1", SMALL, True),  # the day proven, its staging objects not yet removed
]


@pytest.mark.parametrize(
    ("emulator", "pause", "kept"),
    [(data, point, kept) for point, data, kept in KILLS],
    ids=[point for point, _, _ in KILLS],
    indirect=["emulator"],
)
def test_a_host_killed_mid_stage_leaves_a_day_another_host_finishes_exactly_from_s3(
    workspace: Workspace, emulator: Emulator, tmp_path: Path, pause: str, kept: bool
) -> None:
    stage_in_s3(workspace)
    if emulator.dataset.spec.padding_bytes:
        workspace.configure("storage", part_size_mib=5)
    kill_at(workspace, tmp_path, pause)

    other = host(tmp_path, "host-b")
    run = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler", env=other)
    assert run.returncode == 0, output(run)
    assert_days_exact(workspace, emulator)  # nothing else in the bucket: staging and uploads cleaned up
    assert day_requests(emulator) == (1 if kept else 2)
    assert only_locks(Path(other["AMP_DATA_DIR"])) and only_locks(workspace.data_dir)


# An archive over a 5 MiB part (random tokens compress about 2:1): its download streams into a
# multipart upload, whose first part is the first upload_part call of the run.
STREAMED = {
    "events_per_hour": 1200,
    "events_per_part": 1200,
    "noise_bytes": 6000,
    "empty_hours": frozenset(range(2, 24)),
}


@pytest.mark.parametrize("emulator", [STREAMED], indirect=True)
def test_a_host_killed_while_streaming_the_download_to_s3_leaves_no_archive_and_no_open_upload(
    workspace: Workspace, emulator: Emulator, tmp_path: Path
) -> None:
    stage_in_s3(workspace)
    workspace.configure("storage", part_size_mib=5)
    kill_at(workspace, tmp_path, "s3:upload_part:1")  # the download's first part
    assert workspace.keys(DAY_STAGING) == {}, "nothing visible of a download cut short"
    uploads = workspace.s3.list_multipart_uploads(Bucket=workspace.bucket, Prefix=DAY_STAGING)
    assert [upload["Key"].rsplit("/", 2)[1] for upload in uploads.get("Uploads", [])] == ["export"]

    run = workspace.luigi(
        "VerifyDay", "--date", DAY.isoformat(), "--local-scheduler", env=host(tmp_path, "host-b")
    )
    assert run.returncode == 0, output(run)
    assert_days_exact(workspace, emulator)  # the upload the kill left open was aborted with the staging
    assert day_requests(emulator) == 2


def test_a_truncated_staged_archive_is_discarded_by_name_and_downloaded_again(
    workspace: Workspace, emulator: Emulator
) -> None:
    stage_in_s3(workspace)
    exported = workspace.luigi("ExportDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert exported.returncode == 0, output(exported)
    [archive] = [key for key in workspace.keys(f"{DAY_STAGING}export/") if key.endswith(".zip")]
    body = workspace.read(archive)
    workspace.s3.put_object(Bucket=workspace.bucket, Key=archive, Body=body[: len(body) // 2])

    failed = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert failed.returncode != 0
    assert archive.rsplit("/", 1)[1] in output(failed) and "The download was discarded" in output(failed)
    assert workspace.keys(f"{DAY_STAGING}export/") == {}

    again = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert again.returncode == 0, output(again)
    assert_days_exact(workspace, emulator)
    assert day_requests(emulator) == 2


def test_a_changed_staged_member_is_discarded_by_name_and_extracted_again(
    workspace: Workspace, emulator: Emulator, tmp_path: Path
) -> None:
    stage_in_s3(workspace)
    extracted = workspace.luigi("ExtractDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert extracted.returncode == 0, output(extracted)
    # Any host's status sees the day half done in S3 staging, not only the host that staged it.
    status = workspace.amp_luigi(
        "status", "--start", str(DAY), "--stop", str(DAY + dt.timedelta(days=1)), env=host(tmp_path, "b")
    )
    assert f"{DAY} failed (or is running now): a staging directory left behind" in status.stdout, output(
        status
    )
    member = sorted(workspace.keys(f"{DAY_STAGING}members/"))[0]
    lines = gzip.decompress(workspace.read(member)).splitlines()
    changed = gzip.compress(b"\n".join(lines[1:]) + b"\n")  # one event gone, still valid gzip
    workspace.s3.put_object(Bucket=workspace.bucket, Key=member, Body=changed)

    failed = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert failed.returncode != 0
    text = output(failed)
    assert "the staged member changed since" in text and "The extracted members were discarded" in text
    assert member.rsplit("/", 1)[1].removesuffix(".gz") in text
    assert workspace.keys(f"{DAY_STAGING}members/") == {}

    again = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert again.returncode == 0, output(again)
    assert_days_exact(workspace, emulator)
    assert day_requests(emulator) == 1, "extracted again from the archive still in S3"


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[Luigid]:
    env = {**clean_environment(), "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}
    with Luigid(tmp_path / "luigid", env=env) as scheduler:
        yield scheduler


def unit_command(unit: str, replaced: dict[str, str], *, dropped: tuple[str, ...] = ()) -> list[str]:
    """The `luigi` command of a systemd unit in config/ as a host here runs it: the repository's
    luigi and logging configuration, options in `replaced` given these values, `dropped` left out,
    and new options in `replaced` added."""
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read_string((REPO / "config" / unit).read_text())
    words = shlex.split(parsed["Service"]["ExecStart"])
    command, rest = [LUIGI, *words[1:4]], words[4:]
    assert words[1:3] == ["--module", "amp_luigi"], words
    given: dict[str, str | None] = {}
    while rest:
        option = rest.pop(0)
        given[option] = rest.pop(0) if rest and not rest[0].startswith("--") else None
    given["--logging-conf-file"] = str(REPO / "config" / "logging.conf")
    for option in dropped:
        given.pop(option)
    given.update(replaced)
    for option, value in given.items():
        command += [option] if value is None else [option, value]
    return command


def test_two_hosts_without_a_shared_disk_share_a_backfill_on_one_luigid(
    workspace: Workspace, emulator: Emulator, luigid: Luigid, tmp_path: Path
) -> None:
    """Host B runs config/amp-luigi-worker.service (an assistant: it runs any task luigid has);
    host A the daily timer's config/amp-luigi.service against luigid, as docs/running.md says. Each
    has its own disk: the days pass between them only through S3."""
    stage_in_s3(workspace)
    emulator.latency_seconds = 0.3
    days = [DAY + dt.timedelta(days=n) for n in range(10)]
    scheduler = {"--scheduler-host": "127.0.0.1", "--scheduler-port": str(luigid.port)}
    the_days = {"--start": str(DAY), "--stop": str(days[-1] + dt.timedelta(days=1))}

    def start(name: str, command: list[str]) -> tuple[subprocess.Popen[str], Path]:
        (tmp_path / name).mkdir()
        log = tmp_path / name / "luigi.log"
        process = subprocess.Popen(
            [*command, "--lock-pid-dir", str(tmp_path / name / "locks")],
            cwd=workspace.path,
            env={**workspace.env, **host(tmp_path, name)},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        return process, log

    timer_command = unit_command(
        "amp-luigi.service",
        {**the_days, **scheduler, "--worker-keep-alive": None},
        dropped=("--local-scheduler",),
    )
    service_command = unit_command("amp-luigi-worker.service", {**the_days, **scheduler})
    assert "--assistant" in service_command and "--worker-keep-alive" in service_command
    # Host A's timer run first: it plans the range and its first request is held at Amplitude until
    # host B's worker service has joined luigid, so from then on both compete for every task.
    gate = emulator.gate(match=DAY)
    timer, timer_log = start("host-a", timer_command)
    service = None
    try:
        poll(lambda: gate.held, "host A's first request", timer)
        service, service_log = start("host-b", service_command)
        poll(lambda: len(luigid.api("worker_list")) == 2, "host B's worker in luigid", service)
        gate.release()
        assert timer.wait(timeout=300) == 0, timer_log.read_text()[-5000:]
    finally:
        gate.release()
        for process in (timer, service):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    asked = [day for record in emulator.requests for day in requested_days(record.start, record.end)]
    assert sorted(asked) == days, "each day asked for once, by whichever host ran its window"
    assert emulator.peak_in_flight <= 2  # luigid's [resources] amplitude_export, across both hosts
    assert_days_exact(workspace, emulator, days)  # and the staging objects gone from the bucket
    ran = {
        name: [line for line in log.read_text().splitlines() if " done      " in line]
        for name, log in (("host-a", timer_log), ("host-b", service_log))
    }
    stages = {
        name: {line.split(" done      ")[1].split("(")[0] for line in lines} for name, lines in ran.items()
    }
    day_stages = {"ExportWindow", "ExtractDay", "UploadDay", "VerifyDay"}
    assert all(found & day_stages for found in stages.values()), stages  # both hosts ran the days' stages
    assert stages["host-a"] | stages["host-b"] >= day_stages
    for name in ("host-a", "host-b"):
        assert only_locks(tmp_path / name / "data")


def test_a_host_killed_mid_stage_is_replaced_by_the_other_host_on_the_same_luigid(
    workspace: Workspace, emulator: Emulator, tmp_path: Path
) -> None:
    """Host A's UploadDay frozen, then A SIGKILLed; luigid drops A ([scheduler]
    worker_disconnect_delay), offers the task again (retry_delay) and host B's worker service runs it
    from what A left in S3 staging: the day exact, downloaded once."""
    stage_in_s3(workspace)
    config = tmp_path / "luigid.cfg"
    config.write_text(
        (REPO / "luigi.cfg").read_text()
        + "\n[scheduler]\nworker_disconnect_delay = 2\nretry_delay = 1\nprune_on_get_work = true\n"
    )
    stop = str(DAY + dt.timedelta(days=1))
    the_day = {"--start": str(DAY), "--stop": stop}
    with Luigid(tmp_path / "luigid", env={**clean_environment(), "LUIGI_CONFIG_PATH": str(config)}) as luigid:
        scheduler = {"--scheduler-host": "127.0.0.1", "--scheduler-port": str(luigid.port)}
        signals = tmp_path / "signals"
        signals.mkdir()
        timer = unit_command("amp-luigi.service", {**the_day, **scheduler}, dropped=("--local-scheduler",))
        timer[timer.index("amp_luigi")] = "tests.luigi_hooks"  # host A freezes at its first UploadDay
        a_env = {**workspace.env, **host(tmp_path, "host-a"), "AMP_TEST_SIGNAL_DIR": str(signals)}
        a_env["AMP_TEST_PAUSE"] = "start:UploadDay:1"
        host_a = subprocess.Popen(
            [*timer, "--lock-pid-dir", str(tmp_path / "locks-a")],
            cwd=workspace.path,
            env=a_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its worker and task processes die with it
        )
        host_b = None
        try:
            poll(lambda: (signals / "start_UploadDay").exists(), "host A's UploadDay", host_a)
            assert f"{DAY_STAGING}manifest.json" in workspace.keys(DAY_STAGING)
            os.killpg(host_a.pid, signal.SIGKILL)
            host_a.wait()
            service = unit_command("amp-luigi-worker.service", {**the_day, **scheduler})
            host_b = subprocess.Popen(
                [*service, "--lock-pid-dir", str(tmp_path / "locks-b")],
                cwd=workspace.path,
                env={**workspace.env, **host(tmp_path, "host-b")},
                stdout=(tmp_path / "host-b.log").open("w"),
                stderr=subprocess.STDOUT,
            )
            # The range done: the day verified, and its batch has forgotten its window's record.
            poll(lambda: ranges_done(luigid), "host B to end the range", host_b)
        finally:
            for process in (host_a, host_b):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()
    assert_days_exact(workspace, emulator)
    assert day_requests(emulator) == 1, "host B uploaded what host A had extracted into S3"
    assert only_locks(tmp_path / "host-b" / "data")


def ranges_done(luigid: Luigid) -> bool:
    done = luigid.api("task_list", status="DONE", upstream_status="", search="ExportRange")
    return any(task["name"] == "ExportRange" for task in done.values())


@pytest.mark.parametrize("emulator", [STREAMED], indirect=True)
def test_staging_in_s3_works_on_every_store_the_pipeline_is_proven_on(
    backend_workspace: Workspace, emulator: Emulator
) -> None:
    """moto and s3rver, over HTTP and TLS: the archive streamed into a multipart upload, read back in
    ranges, its members written and read, the day exact and the staging gone."""
    stage_in_s3(backend_workspace)
    backend_workspace.configure("storage", part_size_mib=5)
    run = backend_workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert run.returncode == 0, output(run)
    assert backend_workspace.keys(STAGING) == {}
    assert_days_exact(backend_workspace, emulator)
    assert only_locks(backend_workspace.data_dir)


@pytest.mark.parametrize(
    ("emulator", "path", "query"),
    [
        (SMALL, f"/{DAY_STAGING}members/", None),  # a member's PUT, as extraction writes it
        (STREAMED, f"/{DAY_STAGING}export/", "partNumber="),  # a part of the archive as it streams in
    ],
    ids=["member", "archive-part"],
    indirect=["emulator"],
)
def test_a_byte_flipped_on_the_way_to_s3_staging_is_caught_and_the_rerun_repairs_it(
    proxied_workspace: Workspace, emulator: Emulator, path: str, query: str | None
) -> None:
    """Staging's writes are proven as the data's are: a store that keeps what arrives (moto behind a
    proxy that flips one byte) never gets a corrupted staged file past its stage."""
    stage_in_s3(proxied_workspace)
    proxied_workspace.configure("storage", part_size_mib=5)
    rule = proxied_workspace.proxy.add(Rule(FLIP, method="PUT", path=path, query=query))  # type: ignore[union-attr]
    run = proxied_workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert_caught_and_repaired(proxied_workspace, emulator, rule, run)
    assert proxied_workspace.keys(STAGING) == {}
