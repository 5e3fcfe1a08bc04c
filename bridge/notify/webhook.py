"""Outbound webhooks, signed as the Standard Webhooks specification says (https://www.standardwebhooks.com).

Each configured endpoint receives the kinds it subscribed to as a POST of
``{"type": "award.made", "timestamp": "<ISO 8601>", "data": <payload>}`` with three headers:

- ``webhook-id``: ``msg_<notification id>``, the same on every retry, so a receiver can drop duplicates
  (the outbox delivers at least once);
- ``webhook-timestamp``: when this attempt was signed (Unix seconds), which receivers check against replay;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, made by the
  ``standardwebhooks`` library with the endpoint's ``whsec_...`` secret.

Answers: 2xx is done; 408, 429, 5xx, connection errors and timeouts are retried (honouring
``Retry-After``); a redirect or any other 4xx is permanent (410 Gone is the specification's "stop sending").
Errors name the endpoint, never its URL (URLs of chat webhooks carry their token) nor the secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from standardwebhooks.webhooks import Webhook

from bridge import __version__
from bridge.notify.messages import KINDS, ChannelName, DeliveryError, Kind, Notification

log = logging.getLogger(__name__)

USER_AGENT = f"lms-badge-bridge/{__version__}"
RETRYABLE_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A receiver: ``name`` is what ``notification.target`` says; ``secret`` is ``whsec_<base64>``."""

    name: str
    url: str
    secret: str = field(repr=False)  # repr=False: a logged config shows no secret
    events: tuple[Kind, ...] = KINDS
    timeout: float = 10.0  # seconds to connect, and between bytes of the answer

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"webhook {self.name}: url must be http(s)")
        unknown = set(self.events) - set(KINDS)
        if unknown:
            raise ValueError(f"webhook {self.name}: unknown events {sorted(unknown)}")
        if self.timeout <= 0:
            raise ValueError(f"webhook {self.name}: timeout must be positive")
        try:
            Webhook(self.secret)
        except Exception:  # the library raises several types; its messages are not ours to show
            raise ValueError(f"webhook {self.name}: secret must be whsec_ followed by base64") from None


def retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` as seconds, from either of its forms (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def raise_for_delivery(response: requests.Response, what: str, *, explain: bool = False) -> None:
    """Turn a receiver's answer into the outbox's terms: return on 2xx, else raise DeliveryError.
    ``explain``: quote the start of a refusal's body (an LRS says what it found invalid; a webhook receiver's
    page is noise)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status in RETRYABLE_STATUSES or status >= 500:
        raise DeliveryError(f"{what} answered {status}", retry_after=retry_after(response))
    if 300 <= status < 400:
        raise DeliveryError(f"{what} answered a redirect ({status}): configure its final URL", permanent=True)
    detail = " ".join(response.text[:200].split()) if explain else ""
    raise DeliveryError(f"{what} answered {status}" + (f": {detail}" if detail else ""), permanent=True)


def plain_session() -> requests.Session:
    """A session with no retry of its own. Not the connectors' HttpClient, which retries internally: the
    outbox already retries with backoff and records each attempt, and retrying here as well would multiply
    the attempts and hold a sender thread for minutes. Redirects are not followed (see raise_for_delivery)."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, datetime):
        return iso8601(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def iso8601(moment: datetime) -> str:
    """UTC with a ``Z``; a naive datetime is taken as UTC, as the database stores it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_id(notification: Notification) -> str:
    return f"msg_{notification.id}"


class WebhookChannel:
    """Delivers a notification to the endpoint its ``target`` names."""

    name: ChannelName = "webhook"

    def __init__(
        self, endpoints: Iterable[WebhookEndpoint], *, session: requests.Session | None = None
    ) -> None:
        self.endpoints: dict[str, WebhookEndpoint] = {}
        for endpoint in endpoints:
            if endpoint.name in self.endpoints:
                raise ValueError(f"webhook {endpoint.name} is configured twice")
            self.endpoints[endpoint.name] = endpoint
        self._signers = {name: Webhook(e.secret) for name, e in self.endpoints.items()}
        self._session = session or plain_session()

    def body(self, notification: Notification) -> str:
        """The JSON sent: the same text on every attempt (the payload was frozen when the row was written)."""
        envelope = {
            "type": notification.kind,
            "timestamp": iso8601(notification.created_at),
            "data": notification.payload,
        }
        return json.dumps(envelope, default=_jsonable, ensure_ascii=False, separators=(",", ":"))

    def deliver(self, notification: Notification) -> None:
        endpoint = self.endpoints.get(notification.target or "")
        if endpoint is None:
            raise DeliveryError(f"no webhook named {notification.target!r} is configured", permanent=True)
        if notification.kind not in endpoint.events:
            # The endpoint unsubscribed since the row was written: there is nothing left to deliver.
            log.info(
                "webhook.unsubscribed", extra={"notification": notification.id, "webhook": endpoint.name}
            )
            return
        body = self.body(notification)
        msg_id = message_id(notification)
        # The library's sign() stamps the datetime as UTC whatever its zone: give it UTC.
        signed_at = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": self._signers[endpoint.name].sign(msg_id, signed_at, body),
        }
        what = f"webhook {endpoint.name}"
        try:
            response = self._session.post(
                endpoint.url,
                data=body.encode("utf-8"),
                headers=headers,
                timeout=endpoint.timeout,
                allow_redirects=False,
                stream=True,  # the answer's body is not read: a receiver's big page costs nothing
            )
        except requests.Timeout:
            self._failed(notification, endpoint, "timeout")
            raise DeliveryError(f"{what} timed out after {endpoint.timeout:g}s") from None
        except requests.RequestException as error:  # its text holds the URL: name the type only
            self._failed(notification, endpoint, type(error).__name__)
            raise DeliveryError(f"{what} unreachable ({type(error).__name__})") from None
        with response:
            try:
                raise_for_delivery(response, what)
            except DeliveryError:
                self._failed(notification, endpoint, str(response.status_code))
                raise
        log.info(
            "webhook.sent",
            extra={"notification": notification.id, "webhook": endpoint.name, "status": response.status_code},
        )

    @staticmethod
    def _failed(notification: Notification, endpoint: WebhookEndpoint, reason: str) -> None:
        log.warning(
            "webhook.failed",
            extra={"notification": notification.id, "webhook": endpoint.name, "reason": reason},
        )

    def close(self) -> None:
        self._session.close()
