"""The webhook channel against a real receiver on 127.0.0.1 that verifies each request with the
``standardwebhooks`` library, as a receiver following the specification would."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bridge.notify.messages import KINDS, DeliveryError, Kind, Notification
from bridge.notify.webhook import WebhookChannel, WebhookEndpoint
from tests.notify.receivers import Received, Reply, serve

SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes....").decode()
PAYLOAD = {
    "award": {"id": 7, "badge_id": "python-basics", "badge_name": "Python Basics", "tier": "gold"},
    "learner": {"platform": "moodle1", "lms_user_id": "42", "name": "Ada", "email": "ada@example.edu"},
    "links": {"badge_page": "https://bridge.example.edu/ob/assertions/abc"},
}


def notification(kind: Kind = "award.made", target: str = "lms") -> Notification:
    created = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    return Notification(41, kind, "webhook", created, PAYLOAD, target)


class VerifyingReceiver:
    """Verifies the signature first (answering 401 to a bad one), then answers from a script."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.verified: list[dict[str, object]] = []
        self.rejected = 0

    def __call__(self, request: Received) -> Reply:
        try:
            self.verified.append(Webhook(SECRET).verify(request.body, request.headers))
        except WebhookVerificationError:
            self.rejected += 1
            return Reply(401)
        return Reply(self.statuses.pop(0) if self.statuses else 200, self.headers)


def endpoint(
    url: str, *, secret: str = SECRET, events: tuple[Kind, ...] = KINDS, timeout: float = 5.0
) -> WebhookEndpoint:
    return WebhookEndpoint("lms", url + "/hooks/badges", secret, events, timeout)


def test_500_twice_then_200_retries_with_the_same_id_and_a_valid_signature_each_time() -> None:
    receiver = VerifyingReceiver(500, 500, 200)
    with serve(receiver) as peer:
        channel = WebhookChannel([endpoint(peer.url)])
        for _attempt in range(2):
            with pytest.raises(DeliveryError) as error:
                channel.deliver(notification())
            assert not error.value.permanent and str(error.value) == "webhook lms answered 500"
        channel.deliver(notification())

    assert receiver.rejected == 0 and len(peer.requests) == 3
    assert {r.headers["webhook-id"] for r in peer.requests} == {"msg_41"}
    assert len({r.body for r in peer.requests}) == 1  # the same message each time
    [request] = peer.requests[-1:]
    assert request.path == "/hooks/badges" and request.headers["Content-Type"] == "application/json"
    assert request.headers["webhook-signature"].startswith("v1,")
    assert receiver.verified[-1] == {
        "type": "award.made",
        "timestamp": "2025-03-04T10:00:00Z",
        "data": PAYLOAD,
    }


def test_a_wrong_secret_is_caught_by_the_receiver() -> None:
    receiver = VerifyingReceiver()
    other = "whsec_" + base64.b64encode(b"another secret, thirty-two bytes").decode()
    with serve(receiver) as peer, pytest.raises(DeliveryError) as error:
        WebhookChannel([endpoint(peer.url, secret=other)]).deliver(notification())
    assert receiver.rejected == 1 and error.value.permanent  # a 401 is permanent: fix the secret, retry


def test_410_gone_is_permanent() -> None:
    with serve(VerifyingReceiver(410)) as peer, pytest.raises(DeliveryError) as error:
        WebhookChannel([endpoint(peer.url)]).deliver(notification())
    assert error.value.permanent and "410" in str(error.value)


@pytest.mark.parametrize("status", [408, 429, 503])
def test_throttled_or_unavailable_is_retried_after_what_the_receiver_asks(status: int) -> None:
    with (
        serve(VerifyingReceiver(status, headers={"Retry-After": "7"})) as peer,
        pytest.raises(DeliveryError) as error,
    ):
        WebhookChannel([endpoint(peer.url)]).deliver(notification())
    assert not error.value.permanent and error.value.retry_after == 7.0


def test_retry_after_as_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=120), usegmt=True)
    with (
        serve(VerifyingReceiver(429, headers={"Retry-After": later})) as peer,
        pytest.raises(DeliveryError) as error,
    ):
        WebhookChannel([endpoint(peer.url)]).deliver(notification())
    assert error.value.retry_after is not None and 100 < error.value.retry_after <= 120


def test_a_redirect_is_not_followed_and_is_permanent() -> None:
    moved = Reply(301, {"Location": "http://127.0.0.1:1/elsewhere"})
    with serve(lambda _r: moved) as peer, pytest.raises(DeliveryError) as error:
        WebhookChannel([endpoint(peer.url)]).deliver(notification())
    assert error.value.permanent and len(peer.requests) == 1


def test_a_timeout_is_retryable_and_a_closed_port_too() -> None:
    with serve(lambda _r: Reply(200, delay=3.0)) as peer, pytest.raises(DeliveryError) as slow:
        WebhookChannel([endpoint(peer.url, timeout=0.3)]).deliver(notification())
    assert not slow.value.permanent and "timed out" in str(slow.value)

    url = peer.url  # the server is stopped now: nothing listens there
    with pytest.raises(DeliveryError) as down:
        WebhookChannel([endpoint(url)]).deliver(notification())
    assert not down.value.permanent and "ConnectionError" in str(down.value)
    assert "127.0.0.1" not in str(down.value)  # endpoints are named, URLs (which may hold tokens) are not


def test_an_unknown_endpoint_is_permanent_and_an_unsubscribed_kind_is_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve(VerifyingReceiver()) as peer:
        channel = WebhookChannel([endpoint(peer.url, events=("sync.failed",))])
        with pytest.raises(DeliveryError) as unknown:
            channel.deliver(notification(target="removed"))
        assert unknown.value.permanent
        caplog.set_level(logging.INFO)
        channel.deliver(notification())  # award.made: no longer wanted there
        channel.deliver(notification(kind="sync.failed"))
    assert [json.loads(r.body)["type"] for r in peer.requests] == ["sync.failed"]


def test_endpoints_are_checked_when_configured() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookEndpoint(name="lms", url="https://x.example", secret="whsec_")
    with pytest.raises(ValueError, match="unknown events"):
        WebhookEndpoint(name="lms", url="https://x.example", secret=SECRET, events=("award.deleted",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        WebhookChannel([endpoint("https://x.example"), endpoint("https://y.example")])
    assert SECRET not in repr(endpoint("https://x.example"))
