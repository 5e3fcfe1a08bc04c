"""A learner's in-app notifications: ``GET /api/v1/learners/<platform>/<learner>/notifications`` (latest
first; ``?unseen=true`` for the unseen only) and ``POST .../notifications/seen`` (``{"ids": [...]}``, or
``{}`` for all). The LMS pages' toast reads the first and marks with the second."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from bridge.notify.outbox import in_app, learner_id_of, mark_seen
from bridge.web.access import authorise
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.inputs import json_body, query_choice, query_int, validated

notifications_api = Blueprint("notifications_api", __name__, url_prefix="/api/v1/learners")


class SeenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[Annotated[int, Field(ge=1)]], Field(max_length=1000)] | None = None


def _learner(platform: str, learner: str) -> int:
    if services().settings.platform(platform) is None:
        raise ApiError(404, "unknown_platform", f"platform: {platform!r} is not configured")
    found = learner_id_of(services().database, platform, learner)
    if found is None:
        raise ApiError(404, "unknown_learner", f"no learner {learner!r} on platform {platform!r}")
    return found


@notifications_api.get("/<platform>/<path:learner>/notifications")
def list_notifications(platform: str, learner: str) -> Response:
    authorise(write=False)
    unseen = query_choice("unseen", "false", ("true", "false")) == "true"
    found = in_app(
        services().database, _learner(platform, learner), unseen_only=unseen, limit=query_int("limit", 50)
    )
    return jsonify(notifications=[asdict(n) for n in found])


@notifications_api.post("/<platform>/<path:learner>/notifications/seen")
def post_seen(platform: str, learner: str) -> Response:
    authorise(write=True)
    body = validated(SeenIn, json_body() if request.get_data() else {}, "invalid_request")
    return jsonify(marked=mark_seen(services().database, _learner(platform, learner), body.ids))
