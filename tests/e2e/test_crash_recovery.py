"""SIGKILL the real `luigi` command at points across a day's run; the rerun must leave S3 exact.

Each kill point freezes the run at a known moment (tests/luigi_hooks.py, or the emulator holding a
download open) and kills it there with SIGKILL: no cleanup handler, no `finally`, runs. The rerun
must then leave S3 exactly as a clean run does: every expected event once, no other object, both
markers, no abandoned multipart upload, and no staging files left behind.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from amp_luigi.emulator import Emulator
from tests.conftest import BIG, DAY, LUIGI, SMALL, Workspace
from tests.expect import assert_days_exact, poll

PREFIX = "python_import/"
DATA = f"{PREFIX}{DAY.isoformat()}/"
UPLOADED = f"{PREFIX}_uploaded/{DAY.isoformat()}.json"
VERIFIED = f"{PREFIX}_verified/{DAY.isoformat()}.json"
DEADLINE = 60.0


def start_run(workspace: Workspace, tmp_path: Path, pause: str | None = None) -> subprocess.Popen[str]:
    """The real `luigi` command for DAY, with the fault-injection module, in the background."""
    signals = tmp_path / "signals"
    signals.mkdir(exist_ok=True)
    env = {**workspace.env, "AMP_TEST_SIGNAL_DIR": str(signals)}
    if pause:
        env["AMP_TEST_PAUSE"] = pause
    log = (tmp_path / "killed-run.log").open("w")
    args = [
        LUIGI,
        "--module",
        "tests.luigi_hooks",
        "VerifyDay",
        "--date",
        DAY.isoformat(),
        "--local-scheduler",
    ]
    return subprocess.Popen(
        args, cwd=workspace.path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )


def kill_at(workspace: Workspace, tmp_path: Path, pause: str) -> None:
    """Run DAY until it reaches `pause` (tests/luigi_hooks.py), then SIGKILL it there."""
    process = start_run(workspace, tmp_path, pause)
    point = pause.rsplit(":", 1)[0].replace(":", "_")
    signal_file = tmp_path / "signals" / point
    poll(lambda: signal_file.exists() and signal_file.read_text(), f"the run reached {pause}", process)
    paused = int(signal_file.read_text())  # the luigi process, or the worker checking members
    process.kill()
    assert process.wait() == -9
    # A worker must not outlive its run: it would keep writing into the staging directory.
    poll(lambda: not _alive(paused), f"process {paused} to end with the killed run")


def hold_first_download(emulator: Emulator) -> threading.Event:
    """Make the emulator stall the first archive after its first bytes, until the returned event is set."""
    release = threading.Event()
    original = emulator._send
    held = threading.Event()

    def send(exchange: Any, response: Any, cut: Any = None) -> None:
        if response.status != 200 or held.is_set():
            return original(exchange, response, cut)
        held.set()
        wfile = exchange.handler.wfile
        writes = 0

        class Stalling:
            def write(self, data: bytes) -> int:
                nonlocal writes
                writes += 1
                if writes == 2:  # the first body chunk: send some of it, then stall
                    wfile.write(data[: len(data) // 2])
                    wfile.flush()
                    release.wait(DEADLINE)
                    data = data[len(data) // 2 :]
                return wfile.write(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(wfile, name)

        exchange.handler.wfile = Stalling()
        return original(exchange, response, cut)

    emulator._send = send  # type: ignore[method-assign]
    return release


def partial_downloads(workspace: Workspace) -> list[Path]:
    export = workspace.data_dir / DAY.isoformat() / "export"
    return list(export.glob(".*.partial")) if export.exists() else []


def rerun_to_completion(workspace: Workspace, emulator: Emulator) -> None:
    run = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert run.returncode == 0, run.stdout + run.stderr
    assert_days_exact(workspace, emulator)


# (kill point, dataset): the points run in the order a day's run passes them.
POINTS = [
    ("start:ExtractDay:1", SMALL),  # between download and extraction: parts.json written
    ("extract:3", SMALL),  # the third member half inflated, its .partial file open
    ("start:UploadDay:1", SMALL),  # between extraction and upload: manifest written
    ("s3:put_object:6", SMALL),  # some data objects in S3, others in flight, no marker
    ("s3:upload_part:2", BIG),  # a multipart upload begun, one part in S3
    ("start:VerifyDay:1", SMALL),  # between upload and verification: the upload marker written
    ("s3:list_objects_v2:2", SMALL),  # verification begun (after the stray check's listing), no marker
    ("cleanup:1", SMALL),  # the day proven, its staging not yet removed nor its marker written
]


@pytest.mark.parametrize(
    ("emulator", "pause"),
    [(data, point) for point, data in POINTS],
    ids=[p for p, _ in POINTS],
    indirect=["emulator"],
)
def test_a_run_killed_at_a_point_recovers_exactly(
    workspace: Workspace, emulator: Emulator, tmp_path: Path, pause: str
) -> None:
    if emulator.dataset.spec.padding_bytes:
        workspace.configure("storage", part_size_mib=5)
    kill_at(workspace, tmp_path, pause)
    if pause.startswith("s3:upload_part"):
        uploads = workspace.s3.list_multipart_uploads(Bucket=workspace.bucket).get("Uploads", [])
        assert uploads, "the kill left a multipart upload open"

    rerun_to_completion(workspace, emulator)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its exit status waits to be collected


def test_a_run_killed_while_downloading_recovers_exactly(
    workspace: Workspace, emulator: Emulator, tmp_path: Path
) -> None:
    release = hold_first_download(emulator)
    try:
        process = start_run(workspace, tmp_path)
        poll(lambda: partial_downloads(workspace), "a .partial download file", process)
        process.kill()
        assert process.wait() == -9
        assert not (workspace.data_dir / DAY.isoformat() / "export" / "parts.json").exists()
    finally:
        release.set()
    rerun_to_completion(workspace, emulator)


@pytest.mark.parametrize("emulator", [BIG], indirect=True)
def test_a_run_killed_when_the_first_object_shows_in_s3_recovers_exactly(
    workspace: Workspace, emulator: Emulator, tmp_path: Path
) -> None:
    """Chosen from outside, as an operator's kill would be: the moment S3 shows upload progress."""
    workspace.configure("storage", part_size_mib=5)
    process = start_run(workspace, tmp_path)

    def uploading() -> bool:
        if workspace.keys(DATA):
            return True
        uploads = workspace.s3.list_multipart_uploads(Bucket=workspace.bucket, Prefix=DATA)
        return bool(uploads.get("Uploads"))

    poll(uploading, "the first data object or multipart upload in S3", process)
    process.kill()
    process.wait()
    listed = workspace.keys()
    assert UPLOADED not in listed, "killed before the upload finished"
    rerun_to_completion(workspace, emulator)


def test_extra_and_corrupted_objects_fail_verification_by_name_and_the_rerun_repairs_them(
    workspace: Workspace, emulator: Emulator
) -> None:
    upload = workspace.luigi("UploadDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert upload.returncode == 0, upload.stderr
    data = sorted(workspace.keys(DATA))
    corrupted, stale = data[0], f"{DATA}187520_2024-03-01_7#9.json"
    body = workspace.read(corrupted)
    workspace.s3.put_object(Bucket=workspace.bucket, Key=corrupted, Body=body[: len(body) // 2])
    workspace.s3.put_object(Bucket=workspace.bucket, Key=stale, Body=b'{"stale": true}\n')

    verify = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert verify.returncode != 0
    output = verify.stdout + verify.stderr
    assert f"extra {stale}" in output
    assert f"size of {corrupted}" in output
    listed = workspace.keys()
    assert VERIFIED not in listed and UPLOADED not in listed

    rerun_to_completion(workspace, emulator)


def test_a_same_size_object_written_after_the_upload_fails_verification(
    workspace: Workspace, emulator: Emulator
) -> None:
    upload = workspace.luigi("UploadDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert upload.returncode == 0, upload.stderr
    key = sorted(workspace.keys(DATA))[-1]
    body = bytearray(workspace.read(key))
    body[10] ^= 1  # same size, different bytes, even with the metadata amp-luigi wrote copied over
    metadata = workspace.s3.head_object(Bucket=workspace.bucket, Key=key)["Metadata"]
    workspace.s3.put_object(Bucket=workspace.bucket, Key=key, Body=bytes(body), Metadata=metadata)

    verify = workspace.luigi("VerifyDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert verify.returncode != 0
    assert f"{key} is not the object uploaded (ETag" in verify.stdout + verify.stderr

    rerun_to_completion(workspace, emulator)


@pytest.mark.parametrize("keep_gzip", [False, True], ids=["json", "json.gz"])
def test_a_staged_member_changed_after_extraction_is_never_uploaded(
    workspace: Workspace, emulator: Emulator, keep_gzip: bool
) -> None:
    workspace.configure("storage", keep_gzip=keep_gzip)
    extract = workspace.luigi("ExtractDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert extract.returncode == 0, extract.stderr
    members = workspace.data_dir / DAY.isoformat() / "members"
    victim = sorted(members.iterdir())[3]
    # A valid gzip of other valid events: only the CRC32 extraction recorded can tell.
    victim.write_bytes(gzip.compress(b'{"$insert_id": "not-from-amplitude"}\n'))

    upload = workspace.luigi("UploadDay", "--date", DAY.isoformat(), "--local-scheduler")
    assert upload.returncode != 0
    name = victim.name if keep_gzip else victim.name.removesuffix(".gz")
    assert f"the bytes for {DATA}{name} have CRC32" in upload.stdout + upload.stderr
    assert f"{DATA}{name}" not in workspace.keys(DATA)
    assert UPLOADED not in workspace.keys(PREFIX)
    assert not (members.parent / "manifest.json").exists(), "the next run extracts again"

    # assert_days_exact reads .json objects; the rerun's UploadDay deletes the .json.gz ones as strays.
    workspace.configure("storage", keep_gzip="false")
    rerun_to_completion(workspace, emulator)


def _as_sha256_era(record: dict[str, Any], items: str) -> dict[str, Any]:
    """`record` as the first version wrote it: SHA-256s where CRC32s (and ETags) are now."""
    for item in record[items]:
        for crc32 in [key for key in item if key.endswith("crc32")]:
            item[crc32.replace("crc32", "sha256")] = "0" * 64
            del item[crc32]
        item.pop("etag", None)
    return record


@pytest.mark.parametrize("stage", ["UploadDay", "VerifyDay"])
def test_a_manifest_or_marker_from_an_older_version_is_discarded_and_the_rerun_repairs_it(
    workspace: Workspace, emulator: Emulator, stage: str
) -> None:
    before = {"UploadDay": "ExtractDay", "VerifyDay": "UploadDay"}[stage]
    done = workspace.luigi(before, "--date", DAY.isoformat(), "--local-scheduler")
    assert done.returncode == 0, done.stderr
    if stage == "UploadDay":
        manifest = workspace.data_dir / DAY.isoformat() / "manifest.json"
        manifest.write_text(json.dumps(_as_sha256_era(json.loads(manifest.read_text()), "members")))
    else:
        old = _as_sha256_era(json.loads(workspace.read(UPLOADED)), "objects")
        workspace.s3.put_object(Bucket=workspace.bucket, Key=UPLOADED, Body=json.dumps(old).encode())

    run = workspace.luigi(stage, "--date", DAY.isoformat(), "--local-scheduler")
    assert run.returncode != 0
    assert "is not in the form this amp-luigi writes" in run.stdout + run.stderr
    if stage == "UploadDay":
        assert not manifest.exists(), "the next run extracts again"
    else:
        assert UPLOADED not in workspace.keys(PREFIX), "the next run uploads again"
    rerun_to_completion(workspace, emulator)
