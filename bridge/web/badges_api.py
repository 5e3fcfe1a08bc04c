"""``PUT /api/v1/learners/<platform>/<learner>/badge-profile``: a learner's public badge profile and email.

The learner id is the rest of the path before ``/badge-profile``, so ids with ``/`` work (sent as is or
as ``%2F``). Setting either for a learner not seen yet makes the learner, so that an email given before
their first event is in their first badge.

The public profile is opt-in: turning it on makes an unguessable URL, turning it off makes that URL stop
answering (turning it on again makes a new one). The email is the recipient identity hashed into every
badge; until it is known badges name the pseudonymous fallback (``bridge/domain/openbadges.py``).
"""

from __future__ import annotations

from typing import Annotated

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from bridge.domain.text import name_problem
from bridge.issuing.records import KEEP_EMAIL, set_badge_profile
from bridge.web.access import actor, needs
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.inputs import json_body, validated
from bridge.web.openapi import documented
from bridge.web.responses import BadgeProfileOut

badges_api = Blueprint("badges_api", __name__, url_prefix="/api/v1")


class BadgeProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    public: StrictBool
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)] | None = Field(
        default=None, description="Leave out to keep the current email; null clears it"
    )

    @field_validator("email")
    @classmethod
    def _storable(cls, email: str | None) -> str | None:
        # NUL, other control characters and lone surrogates cannot be stored (PostgreSQL refuses NUL).
        problem = None if email is None else name_problem(email, 320)
        if problem is not None:
            raise ValueError(f"the email {problem}")
        return email


@badges_api.put("/learners/<platform>/<path:lms_user_id>/badge-profile")
@needs("write")
@documented(answers={200: BadgeProfileOut}, json=BadgeProfileIn)
def put_badge_profile(platform: str, lms_user_id: str) -> Response:
    if services().settings.platform(platform) is None:
        raise ApiError(404, "unknown_platform", f"platform: {platform!r} is not configured")
    body = validated(BadgeProfileIn, json_body())
    email = body.email.lower() if body.email else body.email
    result = set_badge_profile(
        services().database,
        platform,
        lms_user_id,
        public=body.public,
        actor=actor(),
        email=email if "email" in body.model_fields_set else KEEP_EMAIL,
    )
    url = services().publisher.url(f"/ob/profiles/{result.token}") if result.token else None
    return jsonify(public=result.public, url=url, email=result.email)
