"""The REST API, ``/api/v1``: learning events in (``trackEvent``), awards and event status out."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bridge import metrics
from bridge.clock import utcnow
from bridge.domain.events import LearningEvent
from bridge.services.awards import event_status, list_awards
from bridge.web.access import authorise
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.inputs import json_body, query_int, validated
from bridge.web.schemas import EventBatchIn, EventIn

api = Blueprint("api", __name__, url_prefix="/api/v1")


def _events_in(body: Any) -> tuple[list[EventIn], bool]:
    """The events in ``body`` (one event, ``{"events": [...]}`` or a bare list) and whether it was a batch."""
    is_batch = isinstance(body, list) or (isinstance(body, dict) and "events" in body)
    if not isinstance(body, dict | list):
        raise ApiError(422, "invalid_event", "body: expected a JSON object (one event) or a batch")
    if is_batch:
        batch = validated(EventBatchIn, {"events": body} if isinstance(body, list) else body, "invalid_event")
        return batch.events, True
    return [validated(EventIn, body, "invalid_event")], False


def _to_domain(events: list[EventIn], is_batch: bool) -> list[LearningEvent]:
    settings = services().settings
    tracked = set(settings.track_event_types)
    now = utcnow()
    domain = []
    for index, event in enumerate(events):
        where = f"events[{index}]." if is_batch else ""
        if settings.platform(event.platform) is None:
            raise ApiError(404, "unknown_platform", f"{where}platform: {event.platform!r} is not configured")
        if event.kind not in tracked:
            raise ApiError(
                422, "invalid_event", f"{where}kind: {event.kind!r} is not tracked (see track_event_types)"
            )
        domain.append(
            LearningEvent(
                platform=event.platform,
                event_key=event.event_key,
                kind=event.kind,
                learner=event.learner,
                occurred_at=event.occurred_at or now,
                course=event.course,
                item=event.item,
                score=event.score,
                data=event.data,
            )
        )
    return domain


@api.post("/events")
def track_events() -> tuple[Response, int]:
    """Store one event or a batch; 202 when anything new was stored, 200 when all were duplicates."""
    authorise(write=True)
    validated, is_batch = _events_in(json_body())
    events = _to_domain(validated, is_batch)
    stored = services().inbox.store(events)
    for event, result in zip(events, stored, strict=True):
        metrics.EVENTS_RECEIVED.labels(event.platform, "accepted" if result.created else "duplicate").inc()
    status = 202 if any(s.created for s in stored) else 200
    results = [{"id": s.id, "status": "accepted" if s.created else "duplicate"} for s in stored]
    if not is_batch:
        return jsonify(results[0]), status
    accepted = sum(s.created for s in stored)
    return jsonify(results=results, accepted=accepted, duplicates=len(stored) - accepted), status


@api.get("/events/<int:event_id>")
def get_event(event_id: int) -> Response:
    authorise(write=False)
    found = event_status(services().database, event_id)
    if found is None:
        raise ApiError(404, "unknown_event", f"no event with id {event_id}")
    return jsonify(asdict(found))


@api.get("/awards")
def get_awards() -> Response:
    authorise(write=False)
    limit = query_int("limit", 100)
    awards = list_awards(
        services().database, request.args.get("platform"), request.args.get("learner"), limit
    )
    publisher = services().publisher
    # Each with its Open Badges assertion: where the learner's badge lives outside the LMS.
    return jsonify(awards=[asdict(a) | {"assertion": publisher.assertion_url(a.id)} for a in awards])
