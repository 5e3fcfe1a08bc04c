"""The REST API for people running the rules: badges, manual awards, approvals, audit log, progress."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bridge.services.audit import audit_page
from bridge.services.badge_admin import get_badge, list_badges
from bridge.services.manual_awards import approvals_page
from bridge.services.progress import learner_progress
from bridge.web.access import actor, bound_platform, check_platform, needs, platform_filter
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.inputs import json_body, query_choice, storable, validated
from bridge.web.openapi import documented
from bridge.web.paging import keyset, next_cursor
from bridge.web.responses import (
    ApprovalsOut,
    AuditOut,
    AwardMade,
    BadgesOut,
    BadgeView,
    DecisionOut,
    ProgressOut,
    RevokedOut,
)
from bridge.web.schemas import (
    ApprovalsQuery,
    AuditQuery,
    BadgeDocumentIn,
    DecisionIn,
    EnabledIn,
    ManualAwardIn,
    ReasonIn,
)

rules_api = Blueprint("rules_api", __name__, url_prefix="/api/v1")


def _document() -> dict[str, Any]:
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_badge", "body: expected a badge document (a JSON object)")
    storable(body, "invalid_badge")
    return body


@rules_api.get("/badges")
@needs("read")
@documented(answers={200: BadgesOut})
def get_badges() -> Response:
    return jsonify(badges=[asdict(b) for b in list_badges(services().database)])


@rules_api.get("/badges/<badge_id>")
@needs("read")
@documented(answers={200: BadgeView})
def get_one_badge(badge_id: str) -> Response:
    return jsonify(asdict(get_badge(services().database, badge_id)))


@rules_api.post("/badges")
@needs("admin", every_platform=True)
@documented(answers={201: BadgeView}, json=BadgeDocumentIn)
def create_badge() -> tuple[Response, int]:
    return jsonify(asdict(services().badge_admin.create(_document(), actor()))), 201


@rules_api.put("/badges/<badge_id>")
@needs("admin", every_platform=True)
@documented(answers={200: BadgeView}, json=BadgeDocumentIn)
def update_badge(badge_id: str) -> Response:
    return jsonify(asdict(services().badge_admin.update(badge_id, _document(), actor())))


@rules_api.patch("/badges/<badge_id>")
@needs("admin", every_platform=True)
@documented(answers={200: BadgeView}, json=EnabledIn)
def enable_badge(badge_id: str) -> Response:
    change = validated(EnabledIn, json_body(), "invalid_badge")
    return jsonify(asdict(services().badge_admin.set_enabled(badge_id, change.enabled, actor())))


@rules_api.post("/awards")
@needs("write")
@documented(answers={201: AwardMade}, json=ManualAwardIn)
def award_by_hand() -> tuple[Response, int]:
    given = validated(ManualAwardIn, json_body(), "invalid_award")
    check_platform(given.platform)
    made = services().manual_awards.award(
        platform=given.platform,
        learner=given.learner,
        badge_id=given.badge,
        tier=given.tier,
        actor=actor(),
        reason=given.reason,
    )
    return jsonify(asdict(made)), 201


@rules_api.post("/awards/<int:award_id>/revoke")
@needs("write")
@documented(answers={200: RevokedOut}, json=ReasonIn)
def revoke_award(award_id: int) -> Response:
    given = validated(ReasonIn, json_body(), "invalid_revocation")
    services().manual_awards.revoke(
        award_id=award_id, actor=actor(), reason=given.reason, platform=bound_platform()
    )
    return jsonify(id=award_id, revoked=True, reason=given.reason)


@rules_api.get("/approvals")
@needs("read")
@documented(answers={200: ApprovalsOut}, query=ApprovalsQuery)
def get_approvals() -> Response:
    """Approvals in the order they were asked for (``?order=newest`` for the latest first)."""
    status = query_choice("status", "pending", ("pending", "approved", "rejected", "all"))
    page_asked = keyset("approvals", order="oldest")
    page = approvals_page(
        services().database,
        status=None if status == "all" else status,
        platform=platform_filter(request.args.get("platform")),
        keyset=page_asked,
    )
    return jsonify(
        approvals=[asdict(a) for a in page.rows], next_cursor=next_cursor("approvals", page, page_asked)
    )


@rules_api.post("/approvals/<int:approval_id>/<any(approve, reject):decision>")
@needs("write")
@documented(answers={200: DecisionOut}, json=DecisionIn)
def decide_approval(approval_id: int, decision: str) -> Response:
    body = json_body() if request.content_length else {}
    given = validated(DecisionIn, body, "invalid_decision")
    award_id = services().manual_awards.decide(
        approval_id=approval_id,
        approve=decision == "approve",
        actor=actor(),
        reason=given.reason,
        platform=bound_platform(),
    )
    return jsonify(
        id=approval_id, status="approved" if decision == "approve" else "rejected", award_id=award_id
    )


@rules_api.get("/audit")
@needs("read")
@documented(answers={200: AuditOut}, query=AuditQuery)
def get_audit() -> Response:
    """The audit log, the latest first; a key bound to a platform sees only its learners' entries."""
    page_asked = keyset("audit")
    page = audit_page(
        services().database,
        platform=platform_filter(request.args.get("platform")),
        learner=request.args.get("learner"),
        keyset=page_asked,
    )
    return jsonify(entries=[asdict(e) for e in page.rows], next_cursor=next_cursor("audit", page, page_asked))


@rules_api.get("/learners/<platform>/<path:learner>/progress")
@needs("read")
@documented(answers={200: ProgressOut})
def get_progress(platform: str, learner: str) -> Response:
    views = learner_progress(services().database, services().settings, platform, learner)
    return jsonify(learner=learner, platform=platform, badges=[asdict(v) for v in views])
