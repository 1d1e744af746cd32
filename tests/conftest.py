"""Shared fixtures: a moto S3 server over HTTP, the Amplitude emulator, a configured working directory,
and a runner for the real `luigi` command.

Integrity on every S3 (amp_luigi/testing): `s3_backend` is each of moto and s3rver over HTTP and
HTTPS (started once per session), `backend_workspace` a workspace on it; `proxied_workspace` is on
moto over HTTP through a FaultProxy the test gives rules to. `workspace` stays on moto over HTTP.

Secrets used here are distinctive on purpose, so tests can grep every output for them.
"""

from __future__ import annotations

import configparser
import datetime as dt
import os
import shutil
import subprocess
import sys
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import hypothesis
import luigi
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from amp_luigi import projects
from amp_luigi.checksum import crc32_text
from amp_luigi.emulator import Emulator
from amp_luigi.testing.local import deployment_environment, free_port, s3_client
from amp_luigi.testing.proxy import FaultProxy
from amp_luigi.testing.s3servers import server as s3_server

# Tests talk to 127.0.0.1 only: never let botocore look for credentials at the EC2 metadata address.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# Property tests: the same examples on every run, so a run is deterministic while the search stays broad;
# no per-example deadline on a machine shared with other work. Each test sets its own max_examples.
hypothesis.settings.register_profile("amp-luigi", derandomize=True, deadline=None)
hypothesis.settings.load_profile("amp-luigi")

REPO = Path(__file__).resolve().parent.parent
LUIGI = str(Path(sys.executable).with_name("luigi"))
API_KEY = "apikey-TESTKEY-5f1e"
SECRET_KEY = "amp-secret-SHOULD-NEVER-LEAK-8c2d"
AWS_SECRET = "aws-secret-SHOULD-NEVER-LEAK-41aa"
SECRETS = (SECRET_KEY, AWS_SECRET)
DAY = dt.date(2024, 3, 1)
MOCK_BUCKET = "amp-unit-test"
# Emulated days. Small: ~35 members of ~25 events. Big: a few members of ~9 MiB, so with
# part_size_mib = 5 each goes up in several parts of a multipart upload.
SMALL = {"events_per_hour": 40, "events_per_part": 25}
BIG = {
    "events_per_hour": 2000,
    "events_per_part": 1200,
    "padding_bytes": 6000,
    "empty_hours": frozenset(range(2, 24)),
}
# Test-speed knobs read after the project's own luigi.cfg (LUIGI_CONFIG_PATH) in every test.
FAST_RETRIES = """
[amplitude]
backoff_seconds = 0.01
max_backoff_seconds = 2
read_timeout = 20
connect_timeout = 5

[storage]
max_attempts = 3
"""


def crc32_of(data: bytes) -> str:
    """The CRC32 S3 would show for `data`, from zlib (not the ISA-L code under test)."""
    return crc32_text(zlib.crc32(data))


Configure = Callable[[str], None]


@pytest.fixture
def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Configure]:
    """A clean environment in an empty directory; `configure(text)` writes its luigi.cfg and reads it."""
    for key in list(os.environ):
        if key.startswith(("AMP_", "AWS_", "LUIGI_")) or key in ("ACCESS_KEY", "SECRET_ACCESS_KEY"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)

    def reload(text: str = "") -> None:
        (tmp_path / "luigi.cfg").write_text(text)
        luigi.configuration.LuigiConfigParser._instance = None
        luigi.task_register.Register.clear_instance_cache()
        luigi.configuration.get_config()
        projects.reset()  # what an earlier test's settings said is checked again

    reload()
    yield reload
    luigi.configuration.LuigiConfigParser._instance = None
    luigi.task_register.Register.clear_instance_cache()
    projects.reset()


@pytest.fixture
def mock_s3_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An in-process moto S3 (mock_aws) client with one bucket, MOCK_BUCKET, for unit tests."""
    # mock_aws intercepts AWS's own endpoints only: a custom endpoint would bypass it.
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        # The mock hands a body to werkzeug's test client, which takes bytes but not the bytearray
        # parts Bucket.upload sends (a real server, moto's included, takes either).
        client.meta.events.register_first("before-send.s3", _body_as_bytes)
        client.create_bucket(Bucket=MOCK_BUCKET)
        yield client


def _body_as_bytes(request: Any, **_: Any) -> None:
    if isinstance(request.body, bytearray):
        request.body = bytes(request.body)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto S3 server on loopback, shared by the session; each test gets its own bucket."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


# Every S3 the pipeline is proven on: two implementations, each over plain HTTP and over TLS.
BACKENDS = ("moto-http", "moto-https", "s3rver-http", "s3rver-https")


@dataclass(frozen=True)
class Backend:
    """An S3 server a workspace can point at: its name, its endpoint and the client environment it needs."""

    name: str
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)  # AWS_CA_BUNDLE over HTTPS


@pytest.fixture(scope="session", params=BACKENDS)
def s3_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each S3 server, started once per session (moto over HTTP is `moto_endpoint`'s); tests use own buckets."""
    name = request.param
    if name == "moto-http":
        yield Backend(name, request.getfixturevalue("moto_endpoint"))
        return
    with s3_server(name, secret_key=AWS_SECRET) as server:
        yield Backend(name, server.url, server.env)


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The Amplitude emulator on loopback: SMALL days, or BIG with `indirect=True` parametrization."""
    with Emulator(api_key=API_KEY, secret_key=SECRET_KEY, **getattr(request, "param", SMALL)) as emu:
        yield emu


@dataclass
class Workspace:
    """A working directory with luigi.cfg, the environment of a real deployment, and its bucket."""

    path: Path
    env: dict[str, str]
    bucket: str
    s3: Any = field(repr=False)  # a boto3 S3 client
    backend: str = "moto-http"
    proxy: FaultProxy | None = None  # between the pipeline and S3 (proxied_workspace); self.s3 goes direct

    @property
    def data_dir(self) -> Path:
        return Path(self.env["AMP_DATA_DIR"])

    def configure(self, section: str, **options: object) -> None:
        """Set options in the test's own config file, read after the project's luigi.cfg."""
        overrides = configparser.ConfigParser()
        overrides.read(self.env["LUIGI_CONFIG_PATH"])
        if not overrides.has_section(section):
            overrides.add_section(section)
        for option, value in options.items():
            overrides.set(section, option, str(value).lower() if isinstance(value, bool) else str(value))
        with open(self.env["LUIGI_CONFIG_PATH"], "w") as out:
            overrides.write(out)

    def luigi(
        self, *args: str, timeout: float = 180, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `luigi` command here, as cron would, and return what it printed."""
        return subprocess.run(
            [LUIGI, "--module", "amp_luigi", *args],
            cwd=self.path,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def amp_luigi(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`python -m amp_luigi ...` (status, check, athena) here, as a user runs it."""
        return subprocess.run(
            [sys.executable, "-m", "amp_luigi", *args],
            cwd=self.path,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def keys(self, prefix: str = "") -> dict[str, int]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()


def make_workspace(
    tmp_path: Path, emulator: Emulator, backend: Backend, *, proxy: FaultProxy | None = None
) -> Workspace:
    """A working directory and its own new bucket on `backend`; the pipeline goes through `proxy` if given."""
    bucket = f"amp-test-{uuid.uuid4().hex[:12]}"
    env = deployment_environment(
        export_url=emulator.url,
        keys={"": (API_KEY, SECRET_KEY)},
        bucket=bucket,
        endpoint=backend.endpoint,
        data_dir=tmp_path / "staging",
        aws_secret=AWS_SECRET,
    )
    env.update(backend.env)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "luigi.cfg", work / "luigi.cfg")
    # Luigi's pid lock is keyed by the command line alone: identical commands of tests running at
    # the same time on this machine (other sessions, xdist) would refuse each other, and exit 0.
    (tmp_path / "test.cfg").write_text(FAST_RETRIES + f"\n[core]\nlock_pid_dir = {tmp_path / 'locks'}\n")
    env["LUIGI_CONFIG_PATH"] = str(tmp_path / "test.cfg")
    s3 = s3_client(env)
    s3.create_bucket(Bucket=bucket)
    if proxy is not None:
        env["AWS_ENDPOINT_URL_S3"] = proxy.url
    return Workspace(work, env, bucket, s3, backend.name, proxy)


@pytest.fixture
def workspace(tmp_path: Path, moto_endpoint: str, emulator: Emulator) -> Workspace:
    return make_workspace(tmp_path, emulator, Backend("moto-http", moto_endpoint))


@pytest.fixture
def backend_workspace(tmp_path: Path, s3_backend: Backend, emulator: Emulator) -> Workspace:
    """A workspace on each of BACKENDS in turn (`s3_backend`): the test runs once per S3."""
    return make_workspace(tmp_path, emulator, s3_backend)


@pytest.fixture
def proxied_workspace(tmp_path: Path, moto_endpoint: str, emulator: Emulator) -> Iterator[Workspace]:
    """A workspace on moto over HTTP whose pipeline reaches S3 through a FaultProxy (`.proxy`)."""
    host, port = moto_endpoint.removeprefix("http://").rsplit(":", 1)
    with FaultProxy((host, int(port))) as proxy:
        yield make_workspace(tmp_path, emulator, Backend("moto-http", moto_endpoint), proxy=proxy)


@pytest.fixture
def in_process(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """The workspace's environment and luigi.cfg applied to this process, for in-process task tests."""
    for key in [k for k in os.environ if k.startswith(("AWS_", "AMP_"))]:
        monkeypatch.delenv(key)
    for key, value in workspace.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(workspace.path)
    config = luigi.configuration.get_config()
    config.read([str(workspace.path / "luigi.cfg"), workspace.env["LUIGI_CONFIG_PATH"]])
    luigi.task_register.Register.clear_instance_cache()
    projects.reset()  # boto3 clients are cached per process: none from an earlier test
    yield workspace
    luigi.configuration.LuigiConfigParser._instance = None
    luigi.task_register.Register.clear_instance_cache()
    projects.reset()


# Fixtures that start a server (moto, the emulator, luigid) or need one; `workspace` and `in_process`
# depend on them, and pytest lists the whole closure in `item.fixturenames`.
SERVER_FIXTURES = frozenset({"moto_endpoint", "emulator", "luigid", "smtp_sink"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a server `e2e` (those in tests/e2e/, and any using a server's
    fixture), so `pytest -m "not e2e"` is the quick in-process set that .ci/run repeats on each
    supported Python; tests starting servers themselves carry the marker in their module."""
    for item in items:
        if "e2e" in item.path.parts or SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
