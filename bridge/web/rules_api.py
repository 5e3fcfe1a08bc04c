"""The REST API for people running the rules: badges, manual awards, approvals, audit log, progress."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bridge.services.audit import audit_log
from bridge.services.badge_admin import get_badge, list_badges
from bridge.services.manual_awards import list_approvals
from bridge.services.progress import learner_progress
from bridge.web.access import authorise
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.inputs import json_body, query_choice, query_int, validated
from bridge.web.schemas import DecisionIn, EnabledIn, ManualAwardIn, ReasonIn

rules_api = Blueprint("rules_api", __name__, url_prefix="/api/v1")


def _document() -> dict[str, Any]:
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_badge", "body: expected a badge document (a JSON object)")
    return body


@rules_api.get("/badges")
def get_badges() -> Response:
    authorise(write=False)
    return jsonify(badges=[asdict(b) for b in list_badges(services().database)])


@rules_api.get("/badges/<badge_id>")
def get_one_badge(badge_id: str) -> Response:
    authorise(write=False)
    return jsonify(asdict(get_badge(services().database, badge_id)))


@rules_api.post("/badges")
def create_badge() -> tuple[Response, int]:
    actor = authorise(write=True)
    return jsonify(asdict(services().badge_admin.create(_document(), actor))), 201


@rules_api.put("/badges/<badge_id>")
def update_badge(badge_id: str) -> Response:
    actor = authorise(write=True)
    return jsonify(asdict(services().badge_admin.update(badge_id, _document(), actor)))


@rules_api.patch("/badges/<badge_id>")
def enable_badge(badge_id: str) -> Response:
    actor = authorise(write=True)
    change = validated(EnabledIn, json_body(), "invalid_badge")
    return jsonify(asdict(services().badge_admin.set_enabled(badge_id, change.enabled, actor)))


@rules_api.post("/awards")
def award_by_hand() -> tuple[Response, int]:
    actor = authorise(write=True)
    given = validated(ManualAwardIn, json_body(), "invalid_award")
    made = services().manual_awards.award(
        platform=given.platform,
        learner=given.learner,
        badge_id=given.badge,
        tier=given.tier,
        actor=actor,
        reason=given.reason,
    )
    return jsonify(asdict(made)), 201


@rules_api.post("/awards/<int:award_id>/revoke")
def revoke_award(award_id: int) -> Response:
    actor = authorise(write=True)
    given = validated(ReasonIn, json_body(), "invalid_revocation")
    services().manual_awards.revoke(award_id=award_id, actor=actor, reason=given.reason)
    return jsonify(id=award_id, revoked=True, reason=given.reason)


@rules_api.get("/approvals")
def get_approvals() -> Response:
    authorise(write=False)
    status = query_choice("status", "pending", ("pending", "approved", "rejected", "all"))
    found = list_approvals(services().database, None if status == "all" else status, query_int("limit", 100))
    return jsonify(approvals=[asdict(a) for a in found])


@rules_api.post("/approvals/<int:approval_id>/<any(approve, reject):decision>")
def decide_approval(approval_id: int, decision: str) -> Response:
    actor = authorise(write=True)
    body = json_body() if request.content_length else {}
    given = validated(DecisionIn, body, "invalid_decision")
    award_id = services().manual_awards.decide(
        approval_id=approval_id, approve=decision == "approve", actor=actor, reason=given.reason
    )
    return jsonify(
        id=approval_id, status="approved" if decision == "approve" else "rejected", award_id=award_id
    )


@rules_api.get("/audit")
def get_audit() -> Response:
    authorise(write=False)
    entries = audit_log(
        services().database,
        platform=request.args.get("platform"),
        learner=request.args.get("learner"),
        limit=query_int("limit", 100),
    )
    return jsonify(entries=[asdict(e) for e in entries])


@rules_api.get("/learners/<platform>/<learner>/progress")
def get_progress(platform: str, learner: str) -> Response:
    authorise(write=False)
    views = learner_progress(services().database, services().settings, platform, learner)
    return jsonify(learner=learner, platform=platform, badges=[asdict(v) for v in views])
