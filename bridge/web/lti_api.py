"""``/api/v1/lti/registrations``: the LTI tool's registrations and deployments, for administrators.

The same actions as ``badge-bridge lti``, for keys with the ``admin`` scope that are not bound to a
platform (registrations wire the LMSs to the tool: they concern every platform).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field

from bridge.lti.grades import set_grade_sync
from bridge.lti.registry import NewRegistration, list_registrations, register, set_status
from bridge.web.access import actor, needs
from bridge.web.context import services
from bridge.web.inputs import json_body, validated
from bridge.web.openapi import documented
from bridge.web.responses import GradeSync, RegistrationInfo, RegistrationsOut

lti_api = Blueprint("lti_api", __name__, url_prefix="/api/v1/lti")
# Registration ids are 32-bit (lti_registrations.id is an INTEGER): a larger id in a path is no registration
# (404 from the route), never an out-of-range error from PostgreSQL (500).

Url = Annotated[str, Field(min_length=8, max_length=1024, pattern=r"^https?://")]
Name = Annotated[str, Field(min_length=1, max_length=255)]


class RegistrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    platform: Annotated[str, Field(min_length=1, max_length=64)]
    issuer: Name
    client_id: Name
    auth_login_url: Url
    auth_token_url: Url
    key_set_url: Url
    auth_audience: Annotated[str, Field(max_length=1024)] | None = None
    deployment_ids: Annotated[list[Name], Field(max_length=100)] = []


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    status: Literal["active", "disabled"]
    deployment_id: Name | None = None


@lti_api.get("/registrations")
@needs("admin", every_platform=True)
@documented(answers={200: RegistrationsOut})
def get_registrations() -> Response:
    return jsonify(registrations=[asdict(r) for r in list_registrations(services().database)])


@lti_api.post("/registrations")
@needs("admin", every_platform=True)
@documented(answers={201: RegistrationInfo}, json=RegistrationIn)
def post_registration() -> tuple[Response, int]:
    body = validated(RegistrationIn, json_body(), "invalid_registration")
    new = NewRegistration(
        body.platform,
        body.issuer,
        body.client_id,
        body.auth_login_url,
        body.auth_token_url,
        body.key_set_url,
        body.auth_audience,
        tuple(body.deployment_ids),
    )
    known = {p.id for p in services().settings.platforms}
    created = register(services().database, new, actor=actor(), known_platforms=known)
    return jsonify(asdict(created)), 201


@lti_api.post("/registrations/<int(max=2147483647):registration_id>/status")
@needs("admin", every_platform=True)
@documented(answers={200: RegistrationInfo}, json=DecisionIn)
def post_status(registration_id: int) -> Response:
    """Approve or disable a registration (``{"status"}``) or one of its deployments (``deployment_id``)."""
    body = validated(DecisionIn, json_body(), "invalid_decision")
    changed = set_status(
        services().database, registration_id, body.status, actor=actor(), deployment_id=body.deployment_id
    )
    return jsonify(asdict(changed))


class GradeSyncIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


@lti_api.put("/registrations/<int(max=2147483647):registration_id>/contexts/<path:context_id>/grade-sync")
@needs("admin", every_platform=True)
@documented(answers={200: GradeSync}, json=GradeSyncIn)
def put_grade_sync(registration_id: int, context_id: str) -> Response:
    """Turn a course's "Badge points" gradebook column on or off (off by default)."""
    body = validated(GradeSyncIn, json_body(), "invalid_grade_sync")
    return jsonify(
        asdict(set_grade_sync(services().database, registration_id, context_id, body.enabled, actor()))
    )
