"""The REST API, ``/api/v1``: learning events in (``trackEvent``), awards and event status out."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from bridge import metrics
from bridge.clock import utcnow
from bridge.domain.events import LearningEvent
from bridge.services.awards import event_status, list_awards
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.schemas import EventBatchIn, EventIn

api = Blueprint("api", __name__, url_prefix="/api/v1")


def _authorise(*, write: bool) -> None:
    access = services().settings.api_access
    if access == "disabled":
        raise ApiError(403, "api_disabled", "the REST API is disabled (set api_access to 'read' or 'write')")
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "missing_credentials", "send an API key as 'Authorization: Bearer <key>'")
    if not services().api_keys.is_valid(key.strip()):
        raise ApiError(401, "invalid_credentials", "the API key is unknown or revoked")
    if write and access != "write":
        raise ApiError(403, "api_read_only", "the REST API is read-only here (api_access = 'read')")


def _json_body() -> Any:
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"expected Content-Type application/json, got {request.mimetype or 'none'!r}",
        )
    try:
        return json.loads(request.get_data(cache=False))
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {error}") from None


def _field(location: tuple[Any, ...]) -> str:
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _validated(body: Any) -> tuple[list[EventIn], bool]:
    """The events in ``body`` (one event, ``{"events": [...]}`` or a bare list) and whether it was a batch."""
    is_batch = isinstance(body, list) or (isinstance(body, dict) and "events" in body)
    if not isinstance(body, dict | list):
        raise ApiError(422, "invalid_event", "body: expected a JSON object (one event) or a batch")
    try:
        if is_batch:
            batch = EventBatchIn.model_validate({"events": body} if isinstance(body, list) else body)
            return batch.events, True
        return [EventIn.model_validate(body)], False
    except ValidationError as error:
        fields = [{"field": _field(e["loc"]), "message": e["msg"]} for e in error.errors()]
        first = fields[0]
        raise ApiError(422, "invalid_event", f"{first['field']}: {first['message']}", fields=fields) from None


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
    _authorise(write=True)
    validated, is_batch = _validated(_json_body())
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
    _authorise(write=False)
    found = event_status(services().database, event_id)
    if found is None:
        raise ApiError(404, "unknown_event", f"no event with id {event_id}")
    return jsonify(asdict(found))


@api.get("/awards")
def get_awards() -> Response:
    _authorise(write=False)
    try:
        limit = min(int(request.args.get("limit", 100)), 1000)
    except ValueError:
        raise ApiError(422, "invalid_query", "limit: expected a whole number") from None
    if limit < 1:
        raise ApiError(422, "invalid_query", "limit: expected a number >= 1")
    awards = list_awards(
        services().database, request.args.get("platform"), request.args.get("learner"), limit
    )
    return jsonify(awards=[asdict(a) for a in awards])
