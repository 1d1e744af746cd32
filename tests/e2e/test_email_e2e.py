"""Luigi's failure e-mail with docs/operations.md's `[email]` / `[smtp]` example: a failed day run by
the real `luigi` command mails an SMTP server on loopback (aiosmtpd, with a login), and the mail
names the day and the error and holds no secret."""

from __future__ import annotations

import configparser
import contextlib
import email
import email.policy
import os
import pty
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from amp_luigi.testing.local import free_port
from tests.conftest import DAY, LUIGI, SECRETS, Workspace
from tests.operations_doc import example

SMTP_PASSWORD = "smtp-password-SHOULD-NEVER-LEAK-77e1"
TASK_FAILED = 30  # luigi.cfg [retcode]


@dataclass
class Sink:
    """What an SMTP server on loopback received: messages with their envelopes, and the logins."""

    host: str
    port: int
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=isinstance(data, LoginPassword) and data.password.decode() == SMTP_PASSWORD)


@pytest.fixture
def smtp_sink() -> Iterator[Sink]:
    """aiosmtpd on a free loopback port, offering AUTH without TLS (it is loopback), stopped after."""
    sink = Sink("127.0.0.1", free_port())
    controller = Controller(
        sink,
        hostname=sink.host,
        port=sink.port,
        ready_timeout=30,
        authenticator=sink.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def configure_email(workspace: Workspace, sink: Sink) -> None:
    """The page's example, pointed at the sink instead of smtp.example.com."""
    documented = configparser.ConfigParser(interpolation=None)
    documented.read_string(example("email"))
    assert documented.get("smtp", "password") == "${SMTP_PASSWORD}"  # from the environment, as shown
    for section in documented.sections():
        options = dict(documented.items(section))
        if section == "smtp":
            options.update(host=sink.host, port=str(sink.port))
        workspace.configure(section, **options)


def test_a_failed_day_mails_its_date_and_error_without_secrets(
    workspace: Workspace, emulator, smtp_sink: Sink
) -> None:
    configure_email(workspace, smtp_sink)
    emulator.add_fault("status", times=None, status=401)
    run = workspace.luigi(
        *("VerifyDay", "--date", str(DAY), "--local-scheduler"),
        *("--lock-pid-dir", str(workspace.path / "locks")),
        env={"SMTP_PASSWORD": SMTP_PASSWORD},
    )
    assert run.returncode == TASK_FAILED, run.stdout + run.stderr
    # Every mail is in: smtplib's sendmail returns on the answer to DATA, which aiosmtpd gives only
    # after handle_DATA, and luigi sends before it exits.
    assert smtp_sink.logins == [("amp-luigi", SMTP_PASSWORD)]
    assert len(smtp_sink.messages) == 1, [message["Subject"] for *_, message in smtp_sink.messages]
    sender, recipients, message = smtp_sink.messages[0]
    assert (sender, recipients) == ("amp-luigi@example.com", ["data-alerts@example.com"])
    subject = str(message["Subject"])
    assert subject.startswith("[amp-luigi] Luigi: ExportDay(date=2024-03-01) FAILED. Host: "), subject
    part = message.get_body(("plain",))
    assert part is not None
    body = part.get_content()
    assert "date: 2024-03-01" in body
    assert "Amplitude refused the credentials (HTTP 401)" in body and "AMP_SECRET_KEY" in body
    everything = message.as_string() + body + run.stdout + run.stderr
    for secret in (*SECRETS, SMTP_PASSWORD):
        assert secret not in everything


def on_a_terminal(workspace: Workspace, *args: str) -> tuple[int, str]:
    """The real `luigi` command with its output on a pseudo-terminal, as when run by hand."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [LUIGI, "--module", "amp_luigi", *args],
        cwd=workspace.path,
        env={**workspace.env, "SMTP_PASSWORD": SMTP_PASSWORD},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = bytearray()
    with contextlib.suppress(OSError):  # EIO once the command has exited and closed the terminal
        while chunk := os.read(leader, 65536):
            output += chunk
    os.close(leader)
    return process.wait(timeout=60), output.decode(errors="replace")


def test_a_run_by_hand_on_a_terminal_mails_only_with_force_send(
    workspace: Workspace, emulator, smtp_sink: Sink
) -> None:
    configure_email(workspace, smtp_sink)
    emulator.add_fault("status", times=None, status=401)
    day = (
        "VerifyDay",
        "--date",
        str(DAY),
        "--local-scheduler",
        "--lock-pid-dir",
        str(workspace.path / "locks"),
    )
    code, output = on_a_terminal(workspace, *day)
    assert code == TASK_FAILED, output
    assert "because running from a tty" in output
    assert smtp_sink.messages == []

    workspace.configure("email", force_send=True)
    code, output = on_a_terminal(workspace, *day, "--workers", "1")  # another command line: no pid lock
    assert code == TASK_FAILED, output
    assert [str(message["Subject"]).split(" FAILED")[0] for *_, message in smtp_sink.messages] == [
        "[amp-luigi] Luigi: ExportDay(date=2024-03-01)"
    ]
    for secret in (*SECRETS, SMTP_PASSWORD):
        assert secret not in output
