"""Email notifications over SMTP: one multipart message per notification, rendered from Jinja templates.

The message is ``multipart/alternative`` (a text part, and an HTML part inside ``multipart/related`` with the
badge PNG as an inline ``cid:`` image), so every client shows something and none fetches a remote image.
Templates ship in ``bridge/notify/templates`` as ``<kind>.txt`` / ``<kind>.html`` (``award.made`` →
``award_made``); an operator's ``templates_dir`` overrides them file by file. The text template sets the
subject with ``{% set subject = ... %}``, so an override can change it too.

Failures are classified for the outbox: a refusal of *this* message (5xx to the recipient or to its data) is
permanent; anything else (4xx, connection, timeout, TLS, authentication, a refused sender) is about the server
or the settings, is retried, and clears itself once they are fixed. The password is never logged nor put in
an error, and errors are raised ``from None`` so no traceback carries a server exchange.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Literal

from jinja2 import ChainableUndefined, ChoiceLoader, Environment, FileSystemLoader, TemplateError

from bridge.notify.messages import KINDS, ChannelName, DeliveryError, Notification

log = logging.getLogger(__name__)

SHIPPED_TEMPLATES = Path(__file__).with_name("templates")
Security = Literal["starttls", "tls", "none"]
ImageSource = Callable[[Notification], bytes | None]
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "none": 25}


@dataclass(frozen=True, slots=True)
class EmailConfig:
    """SMTP settings. ``port`` None: the usual port for ``security`` (587, 465, 25)."""

    host: str
    from_address: str  # "Badges <badges@example.edu>" or a bare address
    port: int | None = None
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # repr=False: a logged config shows no secret
    reply_to: str | None = None
    timeout: float = 30.0  # seconds to connect and per SMTP command
    templates_dir: Path | None = None  # the operator's overrides, file by file
    ca_file: Path | None = None  # a private CA for the server's certificate; None: the system's CAs

    def __post_init__(self) -> None:
        if self.security not in DEFAULT_PORTS:
            raise ValueError(f"security must be one of {', '.join(DEFAULT_PORTS)}, not {self.security!r}")
        if "@" not in parseaddr(self.from_address)[1]:
            raise ValueError("from_address must contain an email address")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.username and self.security == "none":
            raise ValueError("refusing to send SMTP credentials unencrypted: use security starttls or tls")
        if self.templates_dir is not None and not Path(self.templates_dir).is_dir():
            raise ValueError(f"templates_dir {self.templates_dir} is not a directory")

    @property
    def resolved_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]


def _day(value: Any) -> str:
    """An ISO 8601 timestamp as ``4 March 2025``; anything else as it came."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return "" if value is None else str(value)
    return f"{moment.day} {moment:%B %Y}"


def badge_title(part: Any) -> str:
    """``Python Basics (Gold)``: the badge's name with its tier, as the badge class names it."""
    if not isinstance(part, Mapping):
        return ""
    name, tier = str(part.get("badge_name") or part.get("badge_id") or ""), part.get("tier")
    return f"{name} ({str(tier).capitalize()})" if tier else name


def _compile_all(templates: Environment) -> None:
    """Load every kind's two templates; a broken one raises ValueError naming its file and line."""
    for kind in KINDS:
        for suffix in (".txt", ".html"):
            name = kind.replace(".", "_") + suffix
            try:
                templates.get_template(name)
            except TemplateError as error:
                where = getattr(error, "filename", None) or name
                line = getattr(error, "lineno", None)
                raise ValueError(f"email template {where}{f':{line}' if line else ''}: {error}") from error


class EmailChannel:
    """Sends each notification to ``notification.target`` (the learner's or an admin's address)."""

    name: ChannelName = "email"

    def __init__(self, config: EmailConfig, *, image: ImageSource | None = None) -> None:
        """``image`` returns the PNG to show inline (the baked badge), or None for none."""
        self.config = config
        self._image = image
        loaders = [FileSystemLoader(str(SHIPPED_TEMPLATES))]
        if config.templates_dir is not None:
            loaders.insert(0, FileSystemLoader(str(config.templates_dir)))
        self._templates = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=lambda name: bool(name and name.endswith(".html")),
            undefined=ChainableUndefined,  # a missing optional field renders empty, it does not fail a send
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._templates.filters["day"] = _day
        # Compile every template now: a broken override fails at start, not on the first award.
        _compile_all(self._templates)
        self._tls = (
            ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
            if config.security != "none"
            else None
        )
        self._where = f"SMTP {config.host}:{config.resolved_port}"

    def deliver(self, notification: Notification) -> None:
        message = self.compose(notification)
        try:
            self._send(message)
        except DeliveryError as error:
            log.warning(
                "email.failed",
                extra={"notification": notification.id, "kind": notification.kind, "reason": str(error)},
            )
            raise
        log.info("email.sent", extra={"notification": notification.id, "kind": notification.kind})

    def compose(self, notification: Notification) -> EmailMessage:
        """The message ``deliver`` sends (also handy for a preview)."""
        payload = dict(notification.payload)
        learner = payload.get("learner")
        recipient = notification.target or (learner.get("email") if isinstance(learner, Mapping) else None)
        if not recipient or "@" not in recipient or any(c in recipient for c in "\r\n"):
            raise DeliveryError("no valid email address for this notification", permanent=True)
        domain = parseaddr(self.config.from_address)[1].rpartition("@")[2]
        image = self._image_for(notification)
        cid = make_msgid("badge", domain=domain) if image else None
        context = {
            **payload,
            "kind": notification.kind,
            "notification_id": notification.id,
            "badge_title": badge_title(payload.get("award") or payload.get("approval")),
            "image_cid": cid[1:-1] if cid else None,  # the HTML says src="cid:..." without the brackets
        }
        stem = notification.kind.replace(".", "_")
        try:
            text_module = self._templates.get_template(f"{stem}.txt").make_module(context)
            html = self._templates.get_template(f"{stem}.html").render(context)
        except TemplateError as error:
            raise DeliveryError(f"email template {stem}: {error}", permanent=True) from None
        subject = str(getattr(text_module, "subject", "") or context["badge_title"] or notification.kind)

        message = EmailMessage()
        message["Subject"] = " ".join(subject.split())  # one line, whatever the badge's name holds
        message["From"] = self.config.from_address
        message["To"] = recipient
        if self.config.reply_to:
            message["Reply-To"] = self.config.reply_to
        message["Date"] = format_datetime(datetime.now(UTC))
        # Stable across retries, so a client shows a message delivered twice once.
        stamp = int(notification.created_at.timestamp())
        message["Message-ID"] = f"<notification-{notification.id}.{stamp}@{domain}>"
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to us
        unsubscribe = (payload.get("links") or {}).get("unsubscribe")
        if unsubscribe:  # mail clients offer it as a button; one POST, no page (RFC 8058)
            message["List-Unsubscribe"] = f"<{unsubscribe}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(str(text_module))
        message.add_alternative(html, subtype="html")
        if image and cid:
            html_part = message.get_payload()[1]
            filename = f"{(payload.get('award') or {}).get('badge_id') or 'badge'}.png"
            html_part.add_related(image, "image", "png", cid=cid, disposition="inline", filename=filename)
        return message

    def _image_for(self, notification: Notification) -> bytes | None:
        """The inline PNG, or None: a badge that cannot be baked now must not hold its email back (the HTML
        then shows the hosted PNG)."""
        if self._image is None:
            return None
        try:
            return self._image(notification)
        except Exception:
            log.warning("email.image_failed", extra={"notification": notification.id}, exc_info=True)
            return None

    def _send(self, message: EmailMessage) -> None:
        """One connection per message: the outbox sends a few at a time and servers drop idle sessions."""
        config, where = self.config, self._where
        try:
            client: smtplib.SMTP
            if config.security == "tls":
                client = smtplib.SMTP_SSL(
                    config.host, config.resolved_port, timeout=config.timeout, context=self._tls
                )
            else:
                client = smtplib.SMTP(config.host, config.resolved_port, timeout=config.timeout)
            with client:
                if config.security == "starttls":
                    client.starttls(context=self._tls)
                if config.username:
                    client.login(config.username, config.password or "")
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            code = min(code for code, _ in error.recipients.values())
            raise DeliveryError(f"{where} refused the recipient ({code})", permanent=code >= 500) from None
        except smtplib.SMTPDataError as error:
            detail = self._scrub(error.smtp_error)
            raise DeliveryError(
                f"{where} refused the message ({error.smtp_code} {detail})", permanent=error.smtp_code >= 500
            ) from None
        except smtplib.SMTPAuthenticationError as error:
            # No server text: some servers echo the exchange. Retried: a fixed password clears the backlog.
            raise DeliveryError(f"{where} refused the credentials ({error.smtp_code})") from None
        except smtplib.SMTPResponseException as error:
            detail = self._scrub(error.smtp_error)
            raise DeliveryError(f"{where} answered {error.smtp_code} {detail}") from None
        except (smtplib.SMTPException, OSError) as error:  # OSError: refused, unreachable, timeout, TLS
            detail = self._scrub(str(error)) or "no detail"
            raise DeliveryError(f"{where} unreachable: {type(error).__name__} ({detail})") from None

    def _scrub(self, text: bytes | str) -> str:
        """A server's words, short and without the password (in case a server echoes it)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if self.config.password:
            text = text.replace(self.config.password, "[redacted]")
        return " ".join(text.split())[:200]
