"""The REST API, ``/api/v1``: learning events in (``trackEvent``), awards and events with their status out."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bridge import metrics
from bridge.clock import utcnow
from bridge.db.models import EVENT_STATUSES
from bridge.domain.events import LearningEvent
from bridge.services.awards import event_status, list_awards, list_events
from bridge.web.access import bound_platform, check_platform, needs, platform_filter
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.inputs import json_body, query_choice, validated
from bridge.web.openapi import documented
from bridge.web.paging import keyset, next_cursor
from bridge.web.responses import AwardsOut, EventsOut, EventsStoredOut, EventStatus
from bridge.web.schemas import AwardsQuery, EventBatchIn, EventIn, EventsBodyIn, EventsQuery

api = Blueprint("api", __name__, url_prefix="/api/v1")


def _events_in(body: Any) -> tuple[list[EventIn], bool]:
    """The events in ``body`` (one event, ``{"events": [...]}`` or a bare list) and whether it was a batch."""
    is_batch = isinstance(body, list) or (isinstance(body, dict) and "events" in body)
    if not isinstance(body, dict | list):
        raise ApiError(422, "invalid_event", "body: expected a JSON object (one event) or a batch")
    if is_batch:
        batch = {"events": body} if isinstance(body, list) else body
        return validated(EventBatchIn, batch, "invalid_event", text_checked=True).events, True
    return [validated(EventIn, body, "invalid_event", text_checked=True)], False


def _to_domain(events: list[EventIn], is_batch: bool) -> list[LearningEvent]:
    settings = services().settings
    tracked = set(settings.track_event_types)
    allowed: set[str] = set()  # platforms checked once per request, not once per event of a batch
    now = utcnow()
    domain = []
    for index, event in enumerate(events):
        where = f"events[{index}]." if is_batch else ""
        if event.platform not in allowed:
            check_platform(event.platform, f"{where}platform")
            if settings.platform(event.platform) is None:
                raise ApiError(
                    404, "unknown_platform", f"{where}platform: {event.platform!r} is not configured"
                )
            allowed.add(event.platform)
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
@needs("write")
@documented(answers={200: EventsStoredOut, 202: EventsStoredOut}, json=EventsBodyIn)
def track_events() -> tuple[Response, int]:
    """Store one event or a batch; 202 when anything new was stored, 200 when all were duplicates."""
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


@api.get("/events")
@needs("read")
@documented(answers={200: EventsOut}, query=EventsQuery)
def get_events() -> Response:
    """Events in the inbox, the latest received first: ``?status=pending|done|failed``, ``?platform=``,
    ``?learner=``, paged by ``cursor``."""
    status = query_choice("status", "all", ("all", *EVENT_STATUSES))
    page_asked = keyset("events")
    page = list_events(
        services().database,
        status=None if status == "all" else status,
        platform=platform_filter(request.args.get("platform")),
        learner=request.args.get("learner"),
        keyset=page_asked,
    )
    return jsonify(events=[asdict(e) for e in page.rows], next_cursor=next_cursor("events", page, page_asked))


@api.get("/events/<int:event_id>")
@needs("read")
@documented(answers={200: EventStatus})
def get_event(event_id: int) -> Response:
    found = event_status(services().database, event_id)
    if found is None or bound_platform() not in (None, found.platform):
        raise ApiError(404, "unknown_event", f"no event with id {event_id}")
    return jsonify(asdict(found))


@api.get("/awards")
@needs("read")
@documented(answers={200: AwardsOut}, query=AwardsQuery)
def get_awards() -> Response:
    """Awards, the newest first (``?order=oldest`` for the other way), with their tier and assertion."""
    page_asked = keyset("awards")
    page = list_awards(
        services().database,
        platform_filter(request.args.get("platform")),
        request.args.get("learner"),
        page_asked,
    )
    publisher = services().publisher
    # Each with its Open Badges assertion: where the learner's badge lives outside the LMS.
    return jsonify(
        awards=[asdict(a) | {"assertion": publisher.assertion_url(a.id)} for a in page.rows],
        next_cursor=next_cursor("awards", page, page_asked),
    )
