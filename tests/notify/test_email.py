"""The email channel against a real SMTP server (aiosmtpd) on 127.0.0.1: what arrives, and how failures are
classified for the outbox (a refused recipient is permanent, a server that is down is retried)."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from bridge.notify.email import EmailChannel, EmailConfig
from bridge.notify.messages import DeliveryError, Notification
from tests.lti.tls import self_signed_certificate

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # the bytes travel as they are: no need for a real picture
PASSWORD = "s3cret-Pa55word"
LINKS = {
    "badge_page": "https://bridge.example.edu/ob/assertions/abc",
    "assertion": "https://bridge.example.edu/ob/assertions/abc",
    "image_png": "https://bridge.example.edu/ob/assertions/abc/badge.png",
    "credential": "https://bridge.example.edu/ob/assertions/abc/credential.jwt",
}


def award_made(target: str | None = "ada@example.edu", **award: Any) -> Notification:
    return Notification(
        id=41,
        kind="award.made",
        channel="email",
        created_at=datetime(2025, 3, 4, 10, 0, tzinfo=UTC),
        payload={
            "award": {
                "id": 7,
                "badge_id": "python-basics",
                "badge_name": "Python <Basics>",
                "badge_description": "Wrote & ran a program.",
                "tier": "gold",
                "awarded_at": "2025-03-04T09:59:00+00:00",
                **award,
            },
            "learner": {
                "platform": "moodle1",
                "lms_user_id": "42",
                "name": "Ada",
                "email": "ada@example.edu",
            },
            "links": LINKS,
        },
        target=target,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler: keeps what it accepts; refuses or defers the recipients it is told to."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self.refuse: dict[str, str] = {}  # address → SMTP reply

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 Message accepted"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    handler, port = Mailbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def plain(port: int, **overrides: Any) -> EmailConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "Badges <badges@bridge.example.edu>",
        "reply_to": "help@example.edu",
        "timeout": 5.0,
    }
    return EmailConfig(**(values | overrides))


def parts(message: EmailMessage) -> tuple[str, str, EmailMessage | None]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    images = [p for p in message.walk() if p.get_content_type() == "image/png"]
    return text.get_content(), html.get_content(), images[0] if images else None


def test_the_award_email_arrives_with_text_html_inline_image_links_and_subject(
    mailbox: tuple[Mailbox, int],
) -> None:
    handler, port = mailbox
    EmailChannel(plain(port), image=lambda _n: PNG).deliver(award_made())

    [message] = handler.messages
    assert handler.envelopes[0].rcpt_tos == ["ada@example.edu"]
    assert message["To"] == "ada@example.edu"
    assert message["Reply-To"] == "help@example.edu"
    assert message["Subject"] == "You earned the badge Python <Basics> (Gold)"
    assert message["Message-ID"].startswith("<notification-41.")
    assert message.get_content_type() == "multipart/alternative"
    text, html, image = parts(message)
    assert image is not None and image.get_content() == PNG
    assert image["Content-Disposition"].startswith("inline")
    cid = image["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html
    for url in LINKS.values():
        assert url in text and url in html
    assert "Python <Basics> (Gold)" in text  # text is not escaped...
    assert "Python &lt;Basics&gt; (Gold)" in html and "Wrote &amp; ran" in html  # ...HTML is
    assert "<Basics>" not in html
    assert "4 March 2025" in text


def test_without_an_image_the_html_points_at_the_hosted_png(mailbox: tuple[Mailbox, int]) -> None:
    handler, port = mailbox
    EmailChannel(plain(port)).deliver(award_made())
    _text, html, image = parts(handler.messages[0])
    assert image is None and "cid:" not in html
    assert f'<img src="{LINKS["image_png"]}"' in html


def test_an_image_that_cannot_be_made_does_not_hold_the_email_back(mailbox: tuple[Mailbox, int]) -> None:
    handler, port = mailbox

    def broken(_n: Notification) -> bytes:
        raise RuntimeError("cairo is missing")

    EmailChannel(plain(port), image=broken).deliver(award_made())
    _text, html, image = parts(handler.messages[0])
    assert image is None and LINKS["image_png"] in html


def test_revocation_and_admin_alerts_use_their_own_templates(mailbox: tuple[Mailbox, int]) -> None:
    handler, port = mailbox
    channel = EmailChannel(plain(port))
    revoked = award_made(revoked_at="2025-04-01T00:00:00+00:00", revoked_reason="Plagiarism")
    channel.deliver(Notification(**{**_fields(revoked), "kind": "award.revoked"}))
    approval = {"id": 9, "badge_id": "python-basics", "badge_name": "Python Basics", "tier": ""}
    learner = {"platform": "moodle1", "lms_user_id": "42", "name": "Ada", "email": None}
    channel.deliver(
        Notification(
            5,
            "approval.requested",
            "email",
            revoked.created_at,
            {"approval": approval, "learner": learner},
            "ops@example.edu",
        )
    )
    failed = {"platform": "canvas1", "run_id": 3, "error": "401 from Canvas"}
    channel.deliver(Notification(6, "sync.failed", "email", revoked.created_at, failed, "ops@example.edu"))

    subjects = [m["Subject"] for m in handler.messages]
    assert subjects == [
        "Your badge Python <Basics> (Gold) was revoked",
        "Approval needed: Python Basics for Ada",
        "Sync failed: canvas1",
    ]
    assert "Reason: Plagiarism" in parts(handler.messages[0])[0]
    assert "badge-bridge approvals approve 9" in parts(handler.messages[1])[0]
    assert handler.envelopes[2].rcpt_tos == ["ops@example.edu"]
    assert "401 from Canvas" in parts(handler.messages[2])[1]


def _fields(n: Notification) -> dict[str, Any]:
    return {
        k: getattr(n, k) for k in ("id", "kind", "channel", "created_at", "payload", "target", "attempts")
    }


def test_an_operator_template_overrides_the_shipped_one(mailbox: tuple[Mailbox, int], tmp_path: Path) -> None:
    handler, port = mailbox
    (tmp_path / "award_made.txt").write_text(
        '{% set subject = "Well done, " ~ learner.name %}Custom text for {{ badge_title }}.\n'
    )
    EmailChannel(plain(port, templates_dir=tmp_path)).deliver(award_made())
    [message] = handler.messages
    text, html, _image = parts(message)
    assert message["Subject"] == "Well done, Ada"
    assert text.strip() == "Custom text for Python <Basics> (Gold)."
    assert "See your badge" in html  # the HTML template was not overridden: the shipped one is used


def test_a_broken_operator_template_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "award_made.html").write_text("{% if %}")
    with pytest.raises(ValueError, match=r"award_made\.html:1: .*expression") as error:
        EmailChannel(plain(25, templates_dir=tmp_path))
    assert str(tmp_path) in str(error.value)  # the operator's file is named, not the shipped one


def test_a_refused_recipient_is_permanent_and_a_deferred_one_is_retried(mailbox: tuple[Mailbox, int]) -> None:
    handler, port = mailbox
    handler.refuse = {"gone@example.edu": "550 5.1.1 No such user", "busy@example.edu": "450 4.2.1 Try later"}
    channel = EmailChannel(plain(port))
    with pytest.raises(DeliveryError) as refused:
        channel.deliver(award_made("gone@example.edu"))
    assert refused.value.permanent and "550" in str(refused.value)
    with pytest.raises(DeliveryError) as deferred:
        channel.deliver(award_made("busy@example.edu"))
    assert not deferred.value.permanent and "450" in str(deferred.value)
    assert handler.messages == []


def test_no_address_is_permanent() -> None:
    notification = award_made(target=None)
    payload = {**notification.payload, "learner": {"platform": "moodle1", "lms_user_id": "42", "email": None}}
    with pytest.raises(DeliveryError) as error:
        EmailChannel(plain(25)).deliver(Notification(**{**_fields(notification), "payload": payload}))
    assert error.value.permanent


def test_a_server_that_is_down_or_silent_is_retryable() -> None:
    with pytest.raises(DeliveryError) as down:
        EmailChannel(plain(free_port())).deliver(award_made())
    assert not down.value.permanent and "ConnectionRefusedError" in str(down.value)

    with socket.socket() as silent:  # accepts the connection, never says hello
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        config = plain(silent.getsockname()[1], timeout=0.5)
        with pytest.raises(DeliveryError) as timed_out:
            EmailChannel(config).deliver(award_made())
    assert not timed_out.value.permanent and "timed out" in str(timed_out.value)


def test_credentials_are_refused_unencrypted() -> None:
    with pytest.raises(ValueError, match="unencrypted"):
        plain(25, username="bridge", password=PASSWORD)
    assert PASSWORD not in repr(EmailConfig("h", "a@b.c", username="bridge", password=PASSWORD))


class _Credentials:
    """aiosmtpd's authenticator: one account."""

    def __call__(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword) and data.login == b"bridge" and data.password == PASSWORD.encode()
        )
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[str, str]:
    return self_signed_certificate(tmp_path / "tls")


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_starttls_with_login_and_the_password_is_never_shown(
    tls_files: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = tls_files
    handler, port = Mailbox(), free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=_tls_context(cert, key),
        require_starttls=True,
        authenticator=_Credentials(),
        auth_require_tls=True,
    )
    controller.start()
    try:
        config = plain(port, security="starttls", username="bridge", password=PASSWORD, ca_file=Path(cert))
        caplog.set_level(logging.DEBUG)
        EmailChannel(config, image=lambda _n: PNG).deliver(award_made())
        assert len(handler.messages) == 1

        wrong = plain(
            port, security="starttls", username="bridge", password="wrong-" + PASSWORD, ca_file=Path(cert)
        )
        with pytest.raises(DeliveryError) as refused:
            EmailChannel(wrong).deliver(award_made())
        assert not refused.value.permanent and "credentials" in str(refused.value)
        assert PASSWORD not in str(refused.value) and refused.value.__cause__ is None

        untrusted = plain(port, security="starttls", username="bridge", password=PASSWORD)  # system CAs only
        with pytest.raises(DeliveryError) as unverified:
            EmailChannel(untrusted).deliver(award_made())
        assert not unverified.value.permanent and "SSL" in str(unverified.value)
    finally:
        controller.stop()
    assert PASSWORD not in caplog.text
    assert "email.sent" in caplog.text and "email.failed" in caplog.text
    assert len(handler.messages) == 1


def test_implicit_tls(tls_files: tuple[str, str]) -> None:
    cert, key = tls_files
    handler, port = Mailbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=_tls_context(cert, key))
    controller.start()
    try:
        EmailChannel(plain(port, security="tls", ca_file=Path(cert))).deliver(award_made())
    finally:
        controller.stop()
    assert handler.messages[0]["Subject"].startswith("You earned")
