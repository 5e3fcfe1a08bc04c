"""A learner's in-app notifications: ``GET /api/v1/learners/<platform>/<learner>/notifications`` (latest
first; ``?unseen=true`` for the unseen only) and ``POST .../notifications/seen`` (``{"ids": [...]}``, or
``{}`` for all). The LMS pages' toast reads the first and marks with the second."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from bridge.notify.outbox import in_app_page, learner_id_of, mark_seen
from bridge.web.access import needs
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.inputs import json_body, query_choice, validated
from bridge.web.openapi import documented
from bridge.web.paging import keyset, next_cursor
from bridge.web.responses import MarkedOut, NotificationsOut
from bridge.web.schemas import NotificationsQuery

notifications_api = Blueprint("notifications_api", __name__, url_prefix="/api/v1/learners")


class SeenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Ids are 64-bit: a larger one is refused here (422), not by PostgreSQL ("bigint out of range": a 500).
    ids: Annotated[list[Annotated[int, Field(ge=1, le=2**63 - 1)]], Field(max_length=1000)] | None = None


def _learner(platform: str, learner: str) -> int:
    if services().settings.platform(platform) is None:
        raise ApiError(404, "unknown_platform", f"platform: {platform!r} is not configured")
    found = learner_id_of(services().database, platform, learner)
    if found is None:
        raise ApiError(404, "unknown_learner", f"no learner {learner!r} on platform {platform!r}")
    return found


@notifications_api.get("/<platform>/<path:learner>/notifications")
@needs("read")
@documented(answers={200: NotificationsOut}, query=NotificationsQuery)
def list_notifications(platform: str, learner: str) -> Response:
    unseen = query_choice("unseen", "false", ("true", "false")) == "true"
    page_asked = keyset("notifications", limit=50)
    page = in_app_page(
        services().database, _learner(platform, learner), unseen_only=unseen, keyset=page_asked
    )
    return jsonify(
        notifications=[asdict(n) for n in page.rows],
        next_cursor=next_cursor("notifications", page, page_asked),
    )


@notifications_api.post("/<platform>/<path:learner>/notifications/seen")
@needs("write")
@documented(answers={200: MarkedOut}, json=SeenIn)
def post_seen(platform: str, learner: str) -> Response:
    body = validated(SeenIn, json_body() if request.get_data() else {}, "invalid_request")
    return jsonify(marked=mark_seen(services().database, _learner(platform, learner), body.ids))
