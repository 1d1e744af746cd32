"""Settings: environment variables over luigi.cfg, .env, and messages that say what to set where."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import luigi
import pytest
from botocore.awsrequest import AWSResponse

from amp_luigi.errors import ConfigError
from amp_luigi.projects import project
from amp_luigi.settings import amplitude, staging, storage
from amp_luigi.tasks import VerifyDay
from amp_luigi.validation import EXPORT_URLS
from tests.conftest import REPO, Configure, crc32_of
from tests.luigi_hooks import error_response


def test_luigi_cfg_alone_configures_everything(configure: Configure, tmp_path: Path) -> None:
    configure(
        "[amplitude]\napi_key = cfg-key\nsecret_key = cfg-secret\nregion = us\n"
        "[storage]\nbucket = cfg-bucket\nprefix = /events/raw/\n"
        "[staging]\ndata_dir = stage-here\n"
    )
    assert amplitude().credentials() == ("cfg-key", "cfg-secret")
    assert amplitude().export_url() == EXPORT_URLS["us"] == "https://amplitude.com/api/2/export"
    assert storage().value("bucket") == "cfg-bucket"
    assert storage().value("prefix") == "events/raw"
    assert staging().root() == (tmp_path / "stage-here").resolve()


def test_environment_variables_win_over_luigi_cfg(
    configure: Configure, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(
        "[amplitude]\napi_key = cfg-key\nsecret_key = cfg-secret\nurl = http://cfg.example/api/2/export\n"
        "[storage]\nbucket = cfg-bucket\nprefix = cfg-prefix\naccess_key = cfg-ak\nsecret_access_key = cfg-sk\n"
        "[staging]\ndata_dir = cfg-dir\n"
    )
    monkeypatch.setenv("AMP_API_KEY", "env-key")
    monkeypatch.setenv("AMP_SECRET_KEY", "env-secret")
    monkeypatch.setenv("AMP_EXPORT_URL", "http://127.0.0.1:9/api/2/export")
    monkeypatch.setenv("AWS_BUCKET_NAME", "env-bucket")
    monkeypatch.setenv("AMP_S3_PREFIX", "env-prefix")
    monkeypatch.setenv("AMP_DATA_DIR", str(tmp_path / "env-dir"))
    monkeypatch.setenv("ACCESS_KEY", "env-ak")
    monkeypatch.setenv("SECRET_ACCESS_KEY", "env-sk")

    assert amplitude().credentials() == ("env-key", "env-secret")
    assert amplitude().export_url() == "http://127.0.0.1:9/api/2/export"
    assert project("").client().url == "http://127.0.0.1:9/api/2/export"
    assert storage().value("bucket") == "env-bucket"
    assert storage().value("prefix") == "env-prefix"
    assert staging().root() == tmp_path / "env-dir"
    assert storage().aws_keys() == ("env-ak", "env-sk")


def test_defaults(configure: Configure, monkeypatch: pytest.MonkeyPatch) -> None:
    assert amplitude().export_url() == EXPORT_URLS["eu"] == "https://analytics.eu.amplitude.com/api/2/export"
    assert storage().value("prefix") == "python_import"
    assert storage().part_size() == 16 * 1024 * 1024
    assert staging().root() == (Path.cwd() / "amp-data").resolve()
    assert staging().limits().max_line_bytes == 64 * 1024 * 1024
    monkeypatch.setenv("AMP_API_KEY", "k")
    monkeypatch.setenv("AMP_SECRET_KEY", "s")
    monkeypatch.setenv("AWS_BUCKET_NAME", "amp-bucket")  # a project is usable only with its bucket
    client = project("").client()
    assert client.retry.max_attempts == 3
    assert client.timeout == (15.0, 900.0)


@pytest.mark.parametrize(
    ("call", "variable", "option", "cfg"),
    [
        (lambda: amplitude().credentials(), "AMP_API_KEY", "`api_key` in the [amplitude] section", ""),
        (lambda: project("").client(), "AWS_BUCKET_NAME", "`bucket` in the [storage] section", ""),
        (
            lambda: project("").client(),
            "AMP_API_KEY",
            "`api_key` in the [amplitude] section",
            "[storage]\nbucket = amp-bucket\n",
        ),
        (lambda: storage().value("bucket"), "AWS_BUCKET_NAME", "`bucket` in the [storage] section", ""),
        (lambda: project("").open_bucket(), "AWS_BUCKET_NAME", "`bucket` in the [storage] section", ""),
    ],
)
def test_a_missing_required_setting_names_the_variable_and_the_option(
    configure: Configure, call: Callable[[], object], variable: str, option: str, cfg: str
) -> None:
    configure(cfg)
    with pytest.raises(ConfigError) as raised:
        call()
    assert variable in str(raised.value)
    assert option in str(raised.value)
    assert "luigi.cfg" in str(raised.value)


def test_a_missing_secret_key_is_named_when_the_api_key_is_set(
    configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMP_API_KEY", "k")
    with pytest.raises(ConfigError, match=r"AMP_SECRET_KEY.*`secret_key` in the \[amplitude\] section"):
        amplitude().credentials()


def test_an_unknown_region_is_a_config_error(configure: Configure) -> None:
    configure("[amplitude]\nregion = asia\n")
    with pytest.raises(ConfigError, match=r"region 'asia'.*eu, us"):
        amplitude().export_url()


@pytest.mark.parametrize(
    "url", ["analytics.eu.amplitude.com/api/2/export", "ftp://example.com/export", "http://", "not a url"]
)
def test_a_url_that_is_not_http_is_a_config_error(
    configure: Configure, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("AMP_EXPORT_URL", url)
    with pytest.raises(ConfigError, match="AMP_EXPORT_URL"):
        amplitude().export_url()


@pytest.mark.parametrize(
    ("present", "absent"), [("ACCESS_KEY", "SECRET_ACCESS_KEY"), ("SECRET_ACCESS_KEY", "ACCESS_KEY")]
)
def test_aws_keys_come_in_pairs(
    configure: Configure, monkeypatch: pytest.MonkeyPatch, present: str, absent: str
) -> None:
    monkeypatch.setenv("AWS_BUCKET_NAME", "bkt")
    monkeypatch.setenv(present, "value")
    with pytest.raises(ConfigError, match="ACCESS_KEY and SECRET_ACCESS_KEY"):
        project("").open_bucket()


def test_without_aws_keys_the_standard_chain_is_used(
    configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_BUCKET_NAME", "bkt")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-chain")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = project("").open_bucket()
    assert bucket.name == "bkt"
    assert bucket.client._request_signer._credentials.access_key == "from-the-chain"


def test_access_key_wins_over_the_aws_chain(configure: Configure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_BUCKET_NAME", "bkt")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-chain")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("ACCESS_KEY", "AKIAOURS")
    monkeypatch.setenv("SECRET_ACCESS_KEY", "ours")
    assert project("").open_bucket().client._request_signer._credentials.access_key == "AKIAOURS"


@pytest.fixture
def local_endpoint(configure: Configure, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bucket `bkt`, our own keys, and S3 at http://127.0.0.1:9 (plain HTTP; nothing listens there)."""
    monkeypatch.setenv("AWS_BUCKET_NAME", "bkt")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("ACCESS_KEY", "k")
    monkeypatch.setenv("SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")


def test_aws_endpoint_url_is_honoured_by_the_clients(
    local_endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert project("").open_bucket().client.meta.endpoint_url == "http://127.0.0.1:9"
    assert (
        VerifyDay(date=dt.date(2024, 3, 1)).output().bucket.client.meta.endpoint_url == "http://127.0.0.1:9"
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:10")
    luigi.task_register.Register.clear_instance_cache()  # tasks keep their targets: new settings, new tasks
    assert (
        VerifyDay(date=dt.date(2024, 3, 1)).output().bucket.client.meta.endpoint_url == "http://127.0.0.1:10"
    )


@pytest.mark.parametrize("proof", ["checksum", "etag"])
def test_uploads_sign_the_crc32_header_instead_of_hashing_the_body(
    local_endpoint: None, monkeypatch: pytest.MonkeyPatch, proof: str
) -> None:
    # Over plain HTTP, botocore's default would put a SHA-256 of the body in the signature; the
    # digest the proof sends (a CRC32 or a Content-MD5) is signed instead.
    monkeypatch.setenv("AMP_S3_UPLOAD_PROOF", proof)
    bucket = project("").open_bucket()
    sent: list[Any] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        if request.url.endswith("/_check/probe"):  # the checksum proof's probe: refused, as AWS does
            return error_response(400, "BadDigest", request.url)
        sent.append(request)
        etag = hashlib.md5(b"{}\n").hexdigest() if proof == "etag" else "e"
        headers = {"ETag": f'"{etag}"', "x-amz-checksum-crc32": crc32_of(b"{}\n")}
        return AWSResponse(request.url, 200, headers, types.SimpleNamespace(stream=lambda: iter([b""])))

    bucket.client.meta.events.register("before-send.s3.PutObject", answer)
    assert bucket.upload("p/a.json", iter([b"{}\n"]), crc32_of(b"{}\n"), {}).strip('"')
    [request] = sent
    assert request.headers["X-Amz-Content-SHA256"] == b"UNSIGNED-PAYLOAD"
    signed = b"x-amz-checksum-crc32;" if proof == "checksum" else b"content-md5;"
    assert signed in request.headers["Authorization"]


def test_a_part_size_below_s3s_minimum_is_refused(configure: Configure) -> None:
    configure("[storage]\npart_size_mib = 4\n")
    with pytest.raises(ConfigError, match="part_size_mib"):
        storage().part_size()


def test_secrets_are_private_parameters_never_shown(configure: Configure) -> None:
    configure(
        "[amplitude]\napi_key = cfg-key\nsecret_key = cfg-SECRET-1\n"
        "[storage]\nbucket = amp-bucket\naccess_key = ak\nsecret_access_key = cfg-SECRET-2\n"
    )
    shown = repr(amplitude()) + str(amplitude()) + repr(storage()) + str(storage())
    shown += str(amplitude().to_str_params(only_public=True)) + str(storage().to_str_params(only_public=True))
    assert "SECRET" not in shown
    assert "cfg-SECRET-1" not in repr(project("").client())


def run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AMP_", "AWS_", "LUIGI_")) and key not in ("ACCESS_KEY", "SECRET_ACCESS_KEY")
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_dot_env_file_is_read_without_overriding_the_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "AMP_API_KEY=dotenv-key\nAMP_SECRET_KEY=dotenv-secret\nAWS_BUCKET_NAME=dotenv-bucket\n"
    )
    code = (
        "from amp_luigi.settings import amplitude, storage\n"
        "print(*amplitude().credentials(), storage().value('bucket'))\n"
    )
    run = run_python(code, tmp_path, AWS_BUCKET_NAME="real-env-bucket")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["dotenv-key", "dotenv-secret", "real-env-bucket"]
