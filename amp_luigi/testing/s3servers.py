"""Local S3 servers for tests: moto and s3rver, each over HTTP or HTTPS, on free loopback ports.

moto is the reference emulator (botocore's own test double); s3rver is a second implementation,
written in Node against the S3 documentation, that reads the protocol differently in places
(checksums, chunked uploads, multipart listings). A pipeline proven on both, with and without TLS,
does not depend on one server's leniency.

    with S3rverServer(tls=True, access_key="AKIA...", secret_key="...") as server:
        client = boto3.client("s3", endpoint_url=server.url, ...)  # with server.env in os.environ

Each server owns a temporary directory (its certificate, s3rver's objects, its log), removed at
stop(). start() returns once the server answers HTTP, or raises naming the log to read.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from amp_luigi.testing.local import LOCAL_ACCESS_KEY, clean_environment, free_port, wait_until
from amp_luigi.testing.tls import Certificate, self_signed

S3RVER_DIR = Path(__file__).resolve().parent / "s3rver"
S3RVER_VERSION = "3.7.1"
START_TIMEOUT = 30.0


class S3Server:
    """One S3 server on 127.0.0.1; `url` and `env` are what a client needs to reach and trust it."""

    kind = "s3"

    def __init__(self, *, tls: bool = False) -> None:
        self.tls = tls
        self.port = 0
        self.root: Path | None = None
        self.certificate: Certificate | None = None

    @property
    def name(self) -> str:
        """e.g. `s3rver-https`: what a test id shows."""
        return f"{self.kind}-{'https' if self.tls else 'http'}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment a client process needs besides the endpoint: the CA bundle over HTTPS."""
        return {"AWS_CA_BUNDLE": str(self.certificate.cert)} if self.certificate else {}

    def start(self, timeout: float = START_TIMEOUT) -> S3Server:
        self.root = Path(tempfile.mkdtemp(prefix=f"amp-luigi-{self.name}-"))
        try:
            if self.tls:
                self.certificate = self_signed(self.root / "tls")
            self.port = free_port()
            self._launch()
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._halt()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _launch(self) -> None:
        raise NotImplementedError

    def _halt(self) -> None:
        raise NotImplementedError

    def _failed(self) -> str | None:
        """Why the server cannot come up any more (it exited), or None while it may still."""
        return None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context that trusts this server's certificate only; None over HTTP."""
        if self.certificate is None:
            return None
        return ssl.create_default_context(cafile=str(self.certificate.cert))

    def _wait_until_ready(self, timeout: float) -> None:
        # Any HTTP answer (even 403 to an unsigned request) means the server accepts requests.
        def answers() -> bool:
            if self.tls:
                connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, timeout=2, context=self.ssl_context()
                )
            else:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                connection.request("GET", "/")
                connection.getresponse().read()
            except http.client.HTTPException:
                return False
            finally:
                connection.close()
            return True

        wait_until(answers, f"{self.name} on port {self.port}", timeout=timeout, failed=self._failed)


class MotoServer(S3Server):
    """moto's S3 in a thread of this process, through werkzeug's server, with TLS when asked.

    ThreadedMotoServer has no TLS option; werkzeug's `make_server` (which it wraps) has one, so the
    same application is served here with the certificate: moto's own TLS, no relay in front.
    moto keeps its buckets per process, not per server: tests name their buckets uniquely.
    """

    kind = "moto"

    def __init__(self, *, tls: bool = False) -> None:
        super().__init__(tls=tls)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _launch(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        context = None
        if self.certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certificate.cert, self.certificate.key)
        self._server = make_server(
            "127.0.0.1",
            self.port,
            DomainDispatcherApplication(create_backend_app),
            threaded=True,
            request_handler=MotoRequestHandler,
            ssl_context=context,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True)
        self._thread.start()

    def _halt(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


class ProcessServer(S3Server):
    """An S3 server in a child process that logs to `log`; stopped gently, then for sure."""

    program = "the server"

    def __init__(self, *, tls: bool = False) -> None:
        super().__init__(tls=tls)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def log(self) -> Path:
        assert self.root is not None
        return self.root / f"{self.kind}.log"

    def _failed(self) -> str | None:
        if self._process is not None and self._process.poll() is not None:
            return f"{self.program} exited with {self._process.returncode}; see {self.log}"
        return None

    def _halt(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class MotoProcessServer(ProcessServer):
    """moto's `moto_server` in a process of its own, over HTTP; every request it answers is a log line.

    For benchmarks: a server in the client's process would share its GIL and its CPU figures, and a
    floor measured from that process would wait on its own server. `pid` is for reading its CPU.
    """

    kind = "moto"
    program = "moto_server"

    def __init__(self) -> None:
        super().__init__(tls=False)

    def _launch(self) -> None:
        script = Path(sys.executable).with_name("moto_server")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [*command, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_environment(),
            )


class S3rverServer(ProcessServer):
    """s3rver (npm, pinned in s3rver/package.json, installed by .ci/setup) in a Node process.

    It stores objects as files under its temporary directory. Its listing continuation tokens are
    DES-encrypted, which OpenSSL 3 refuses without the legacy provider (NODE_OPTIONS below). It
    knows one key pair, S3RVER/S3RVER; s3rver/serve.js registers the tests' key id and secret as
    well, read from its environment, so clients keep the credentials they use everywhere else.
    """

    kind = "s3rver"
    program = "node"

    def __init__(self, *, tls: bool = False, access_key: str = LOCAL_ACCESS_KEY, secret_key: str) -> None:
        super().__init__(tls=tls)
        self.access_key = access_key
        self._secret_key = secret_key

    def __repr__(self) -> str:
        return f"S3rverServer(url={self.url!r})"  # never the secret key

    def _launch(self) -> None:
        node = shutil.which("node")
        if node is None or not (S3RVER_DIR / "node_modules" / "s3rver").is_dir():
            raise RuntimeError(
                f"s3rver is not installed in {S3RVER_DIR}: run .ci/setup (it needs node and npm)."
            )
        assert self.root is not None
        data = self.root / "data"
        data.mkdir()
        command = [node, str(S3RVER_DIR / "serve.js"), "--directory", str(data), "--port", str(self.port)]
        if self.certificate is not None:
            command += ["--key", str(self.certificate.key), "--cert", str(self.certificate.cert)]
        env = {
            **clean_environment(),
            "NODE_OPTIONS": "--openssl-legacy-provider",
            "S3RVER_ACCESS_KEY_ID": self.access_key,
            "S3RVER_SECRET_ACCESS_KEY": self._secret_key,
        }
        with self.log.open("wb") as log:
            # stdin stays open as a pipe: serve.js exits when it closes, so a crashed test run
            # leaves no server behind.
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root
            )


KINDS: dict[str, type[S3Server]] = {"moto": MotoServer, "s3rver": S3rverServer}


def server(name: str, *, secret_key: str, access_key: str = LOCAL_ACCESS_KEY) -> S3Server:
    """The server called `name` (`moto-http`, `moto-https`, `s3rver-http`, `s3rver-https`), not started."""
    kind, _, scheme = name.partition("-")
    if kind not in KINDS or scheme not in ("http", "https"):
        raise ValueError(f"unknown S3 server {name!r}: one of moto|s3rver - http|https")
    if kind == "s3rver":
        return S3rverServer(tls=scheme == "https", access_key=access_key, secret_key=secret_key)
    return MotoServer(tls=scheme == "https")
