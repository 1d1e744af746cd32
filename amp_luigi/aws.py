"""The process's boto3 sessions and S3 clients, each made once and shared by every task and thread.

A session loads S3's service model (a fifth of a second of CPU, ~10 MB) once for all of its clients
and holds no connection, so a task forked by Luigi keeps its parent's; a client holds connections,
so each process makes its own (the process id is part of its key). Both are keyed on what botocore
reads from the environment itself (the endpoint, the profile, the region), so a changed endpoint
gets a new client. The values come from amp_luigi.projects, which reads the settings: nothing here
reads luigi.cfg.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from typing import Any, NamedTuple

import boto3
import botocore.config

from amp_luigi.proof import Proof, resolve
from amp_luigi.s3 import StoreFacts
from amp_luigi.settings import read_env

_BOTOCORE_ENVIRONMENT = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


class S3(NamedTuple):
    """A process's client of one store, and what the process has learnt about that store."""

    client: Any
    facts: StoreFacts


def endpoint_url() -> str:
    """The S3 endpoint botocore will use from the environment ('' = AWS's own)."""
    return read_env("AWS_ENDPOINT_URL_S3") or read_env("AWS_ENDPOINT_URL")


def upload_proof(choice: str) -> Proof:
    """The proof `[storage] upload_proof` asks for, `auto` resolved for this endpoint."""
    return resolve(choice, endpoint_url())


def s3(key: str, secret: str, attempts: int, threads: int, proof: Proof) -> S3:
    """This process's S3 client for these settings (ACCESS_KEY/SECRET_ACCESS_KEY, or '' for the chain)."""
    return _s3(key, secret, attempts, threads, proof, (*_environment(), os.getpid()))


def _environment() -> tuple[str, ...]:
    """What botocore reads from the environment (after `.env`, which may set any of it)."""
    return tuple(read_env(name) for name in _BOTOCORE_ENVIRONMENT)


@functools.lru_cache(maxsize=8)
def _s3(
    key: str, secret: str, attempts: int, threads: int, proof: Proof, environment: tuple[object, ...]
) -> S3:
    # boto3 clients are thread-safe; one per process serves every task and upload thread.
    session, config = session_and_config(key, secret, attempts, threads, proof)
    client = session.client("s3", config=config)
    if not proof.sends_checksums:
        send_no_checksums(client)
    return S3(client, StoreFacts())


def session_and_config(
    key: str, secret: str, attempts: int, threads: int, proof: Proof
) -> tuple[boto3.session.Session, botocore.config.Config]:
    """A boto3 session (without ACCESS_KEY: the standard AWS chain) and the client configuration."""
    return _session(key, secret, _environment()), client_config(attempts, threads, proof)


@functools.lru_cache(maxsize=8)
def _session(key: str, secret: str, environment: tuple[str, ...]) -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id=key or None, aws_secret_access_key=secret or None)


def client_config(attempts: int, threads: int, proof: Proof) -> botocore.config.Config:
    return botocore.config.Config(
        retries={"mode": "adaptive", "max_attempts": attempts},
        max_pool_connections=max(10, 2 * threads),
        connect_timeout=15,
        read_timeout=120,
        # Every upload carries its digest (a CRC32 or a Content-MD5) in a signed header: a SHA-256
        # of the body in the signature as well (botocore's default when it did not add the checksum
        # itself, and always over plain HTTP) would hash every byte again for nothing.
        s3={"payload_signing_enabled": False},
        # Checksum headers only where the proof uses them: several S3-compatible stores refuse them.
        request_checksum_calculation="when_supported" if proof.sends_checksums else "when_required",
        response_checksum_validation="when_supported" if proof.sends_checksums else "when_required",
    )


def send_no_checksums(client: Any) -> None:
    """Make `client` send Content-MD5 instead of checksum headers where S3 requires an integrity header.

    botocore >= 1.36 sends a CRC32 (no Content-MD5) even with `request_checksum_calculation =
    when_required`, where an operation requires one (DeleteObjects); stores without checksum headers
    refuse it (MissingContentMD5, or the header itself). Only for the etag and none proofs.
    """
    client.meta.events.register("before-sign.s3.DeleteObjects", _content_md5_instead_of_checksums)


def _content_md5_instead_of_checksums(request: Any, **_: Any) -> None:
    for name in [
        name
        for name in request.headers
        if name.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum-"))
    ]:
        del request.headers[name]
    body = request.body if isinstance(request.body, bytes | bytearray) else b""
    request.headers["Content-MD5"] = base64.b64encode(
        hashlib.md5(body, usedforsecurity=False).digest()
    ).decode()


def credentials(key: str, secret: str) -> dict[str, str]:
    """The keys, region and endpoint of this process's session, for a client that is not boto3
    (pyiceberg's S3 FileIO, its Glue catalog): the standard AWS chain's keys when ACCESS_KEY is unset,
    so a role or a profile works there too."""
    session = _session(key, secret, _environment())
    found = session.get_credentials()
    frozen = found.get_frozen_credentials() if found is not None else None
    values = {
        "access-key-id": frozen.access_key if frozen else "",
        "secret-access-key": frozen.secret_key if frozen else "",
        "session-token": (frozen.token or "") if frozen else "",
        "region": session.region_name or "us-east-1",
        "endpoint": endpoint_url(),
    }
    return {name: value for name, value in values.items() if value}


def forget_clients() -> None:
    """Make new sessions and clients (between in-process tests that change the environment)."""
    _session.cache_clear()
    _s3.cache_clear()
