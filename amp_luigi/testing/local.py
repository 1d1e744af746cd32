"""The local stand-ins every local run shares: ports, a deployment's environment, luigid.

The sandbox, the tests and the benchmarks start the same things the same way: a free loopback
port, the environment a deployment sets for the `luigi` command (pointed at the emulator and a
local S3), a boto3 client seeing what the pipeline sees, and a real `luigid`. S3 servers are in
s3servers.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from amp_luigi import luigi_defaults
from amp_luigi.projects import key_variables

PACKAGE = Path(__file__).resolve().parent.parent
# The AWS access key id of every local stand-in (not a secret: the secret key is chosen per run).
LOCAL_ACCESS_KEY = "AKIALOCALSTANDIN"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def luigi_command() -> list[str]:
    """The `luigi` console script next to this interpreter, else `python -m luigi` (the same code)."""
    script = Path(sys.executable).with_name("luigi")
    return [str(script)] if script.exists() else [sys.executable, "-m", "luigi"]


def luigid_command() -> list[str]:
    script = Path(sys.executable).with_name("luigid")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import luigi.cmdline; luigi.cmdline.luigid()"]


def project_config(projects: tuple[str, ...] = ()) -> str:
    """The repository's luigi.cfg (retcodes, resources, worker settings), as the deployment uses it,
    with a `[project.<name>]` section and an export cap in `[resources]` for each of `projects`
    (luigid reads its caps from this file, not from the workers)."""
    repo_config = PACKAGE.parent / "luigi.cfg"
    text = repo_config.read_text(encoding="utf-8") if repo_config.exists() else luigi_defaults.as_cfg()
    if projects and "[resources]\n" not in text:
        raise ValueError("luigi.cfg has no [resources] section for the projects' export caps")
    caps = "".join(
        f"{luigi_defaults.export_resource(name)} = {luigi_defaults.EXPORT_CAP}\n" for name in projects
    )
    sections = "".join(f"\n[{luigi_defaults.PROJECT_SECTION}{name}]\n" for name in projects)
    return text.replace("[resources]\n", f"[resources]\n{caps}", 1) + sections


def clean_environment() -> dict[str, str]:
    """This process's environment without any AWS, Amplitude or Luigi setting a user may have set."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "AMP_", "LUIGI_")) and key not in ("ACCESS_KEY", "SECRET_ACCESS_KEY")
    }


def deployment_environment(
    *,
    export_url: str,
    keys: dict[str, tuple[str, str]],
    bucket: str,
    endpoint: str,
    data_dir: Path,
    aws_secret: str,
) -> dict[str, str]:
    """The environment a deployment sets for the `luigi` command, pointed at local stand-ins.

    `keys` holds each project's API key and secret key by its name ('' for the unnamed project).
    """
    return {
        **clean_environment(),
        **{
            variable: value
            for name, pair in keys.items()
            for variable, value in zip(key_variables(name), pair, strict=True)
        },
        "AMP_EXPORT_URL": export_url,
        "AMP_DATA_DIR": str(data_dir),
        "AWS_BUCKET_NAME": bucket,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "ACCESS_KEY": LOCAL_ACCESS_KEY,
        "SECRET_ACCESS_KEY": aws_secret,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")])),
    }


def s3_client(env: dict[str, str]) -> Any:
    """A boto3 S3 client with the credentials, endpoint and CA bundle of `env`, as the pipeline sees them."""
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["ACCESS_KEY"],
        aws_secret_access_key=env["SECRET_ACCESS_KEY"],
        verify=env.get("AWS_CA_BUNDLE"),  # None: botocore's default (os.environ, then certifi)
    )


def wait_until(
    ready: Callable[[], bool], what: str, *, timeout: float, failed: Callable[[], str | None]
) -> None:
    """Poll `ready()` until it is true; RuntimeError when `failed()` says why not, or at the deadline.

    A server started here is ready when it answers, not after a fixed sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        failure = failed()
        if failure:
            raise RuntimeError(f"{what} did not start: {failure}")
        with contextlib.suppress(OSError):
            if ready():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout:g} s")
        time.sleep(0.05)  # a poll interval, not a wait for something to happen


class Luigid:
    """A `luigid` on a free loopback port with its state and logs in `directory`; stopped on exit."""

    def __init__(self, directory: Path, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def visualiser(self) -> str:
        return f"{self.url}/static/visualiser/index.html"

    def start(self, timeout: float = 30.0) -> Luigid:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "luigid.log").open("ab")
        self.process = subprocess.Popen(
            [
                *luigid_command(),
                "--address",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--state-path",
                str(self.directory / "luigid-state.pickle"),
                "--logdir",
                str(self.directory),
            ],
            cwd=self.directory,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches the sandbox, which stops luigid itself
        )
        log.close()
        process = self.process

        def answers() -> bool:
            self.api("task_list", status="DONE")
            return True

        try:
            wait_until(
                answers,
                f"luigid on port {self.port}",
                timeout=timeout,
                failed=lambda: (
                    f"exited with {process.returncode}; see {self.directory}"
                    if process.poll() is not None
                    else None
                ),
            )
        except RuntimeError:
            self.stop()
            raise
        return self

    def api(self, method: str, **data: Any) -> Any:
        """One call of the scheduler's JSON API, e.g. `api("task_list", status="DONE")`."""
        query = urllib.parse.urlencode({"data": json.dumps(data)})
        with urllib.request.urlopen(f"{self.url}/api/{method}?{query}", timeout=10) as answer:
            return json.loads(answer.read())["response"]

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> Luigid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
