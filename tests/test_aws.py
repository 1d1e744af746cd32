"""The process's boto3 sessions and clients: one client per process and settings, a session kept
across a fork, a new client when the endpoint changes, and the configuration each proof needs."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import pytest

from amp_luigi import aws
from amp_luigi.proof import Proof

KEYS = ("AKIAEXAMPLE", "secret")


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    aws.forget_clients()
    yield
    aws.forget_clients()


def test_one_client_per_process_and_settings_with_what_it_learns_of_the_store() -> None:
    first = aws.s3(*KEYS, 3, 4, Proof.ETAG)
    assert aws.s3(*KEYS, 3, 4, Proof.ETAG) is first
    assert aws.s3(*KEYS, 3, 8, Proof.ETAG).client is not first.client
    assert first.client.meta.endpoint_url == "http://127.0.0.1:9"


def test_a_changed_endpoint_gets_a_new_client(monkeypatch: pytest.MonkeyPatch) -> None:
    before = aws.s3(*KEYS, 3, 4, Proof.ETAG).client
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:10")
    after = aws.s3(*KEYS, 3, 4, Proof.ETAG).client
    assert after is not before
    assert after.meta.endpoint_url == "http://127.0.0.1:10"


def _ids_in_child(queue: multiprocessing.Queue[tuple[int, int]]) -> None:
    session, _ = aws.session_and_config(*KEYS, 3, 4, Proof.ETAG)
    queue.put((id(session), id(aws.s3(*KEYS, 3, 4, Proof.ETAG).client)))


def test_a_forked_task_keeps_the_session_and_makes_its_own_client() -> None:
    """The session (S3's service model, ~0.1 s of CPU) is not loaded again in each forked task; the
    client, which holds connections, is never shared with the parent."""
    session, _ = aws.session_and_config(*KEYS, 3, 4, Proof.ETAG)
    client = aws.s3(*KEYS, 3, 4, Proof.ETAG).client
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[tuple[int, int]] = context.Queue()
    child = context.Process(target=_ids_in_child, args=(queue,))
    child.start()
    session_id, client_id = queue.get(timeout=60)
    child.join(timeout=60)
    assert session_id == id(session)
    assert client_id != id(client)


@pytest.mark.parametrize(
    ("proof", "checksums"), [(Proof.CHECKSUM, "when_supported"), (Proof.ETAG, "when_required")]
)
def test_checksum_headers_only_where_the_proof_uses_them(proof: Proof, checksums: str) -> None:
    config = aws.client_config(5, 16, proof)
    assert config.request_checksum_calculation == checksums
    assert config.response_checksum_validation == checksums
    assert config.s3 == {"payload_signing_enabled": False}, "the digest in a signed header is enough"
    assert config.max_pool_connections == 32, "two connections per upload thread"
    assert config.retries == {"mode": "adaptive", "max_attempts": 5}


def test_auto_is_resolved_for_the_endpoint_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    assert aws.upload_proof("auto") is Proof.ETAG  # http://127.0.0.1:9: not AWS
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    assert aws.upload_proof("auto") is Proof.CHECKSUM
    assert aws.upload_proof("none") is Proof.NONE
