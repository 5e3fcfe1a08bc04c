"""LMS webhooks: ``POST /webhooks/canvas/<platform_id>`` and ``POST /webhooks/moodle/<platform_id>``.

Verify, parse, store in the inbox, answer 202: the work happens in the worker. A bad signature is a 401,
a malformed body a 400, an unknown platform (or one of another kind) a 404, and nothing is stored.
Every outcome is counted.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from prometheus_client import Counter

from bridge import metrics
from bridge.web.context import services
from bridge.web.errors import ApiError
from connectors import WebhookRejected

webhooks = Blueprint("webhooks", __name__, url_prefix="/webhooks")

WEBHOOKS_RECEIVED = Counter(
    "bridge_webhooks_received",
    "LMS webhooks received, by platform and outcome",
    ["platform", "outcome"],
)


def _refuse(platform: str, outcome: str, status: int, code: str, message: str) -> ApiError:
    WEBHOOKS_RECEIVED.labels(platform, outcome).inc()
    return ApiError(status, code, message)


@webhooks.post("/<any(canvas, moodle):lms>/<platform_id>")
def receive(lms: str, platform_id: str) -> tuple[Response, int]:
    context = services()
    platform = context.settings.platform(platform_id)
    connector = context.connectors.get(platform_id)
    if platform is None or platform.kind != lms or connector is None:
        # Labelled "unknown", not with the id asked for: callers must not grow the metric's label set.
        message = f"no {lms} platform {platform_id!r} is configured"
        raise _refuse("unknown", "unknown_platform", 404, "unknown_platform", message)
    try:
        payload = connector.verify_webhook(request.headers, request.get_data(cache=False))
        events = connector.parse_webhook(payload)
    except WebhookRejected as error:
        outcome = "bad_signature" if error.status == 401 else "malformed"
        raise _refuse(platform_id, outcome, error.status, error.code, str(error)) from None
    stored = context.inbox.store(events) if events else []
    accepted = sum(result.created for result in stored)
    for result in stored:
        metrics.EVENTS_RECEIVED.labels(platform_id, "accepted" if result.created else "duplicate").inc()
    fetching = connector.needs_fetch(payload)
    if fetching:
        context.webhook_fetches.submit(platform_id, payload)
    outcome = "accepted" if accepted else ("duplicate" if stored else ("fetching" if fetching else "ignored"))
    WEBHOOKS_RECEIVED.labels(platform_id, outcome).inc()
    return jsonify(
        event_type=connector.webhook_type(payload),
        accepted=accepted,
        duplicates=len(stored) - accepted,
        fetching=fetching,
    ), 202
