"""``PUT /api/v1/learners/<platform>/<learner>/badge-profile``: a learner's public badge profile and email.

The public profile is opt-in: turning it on makes an unguessable URL, turning it off makes that URL stop
answering (turning it on again makes a new one). The email is the recipient identity hashed into every
badge; until it is known badges name the pseudonymous fallback (``bridge/domain/openbadges.py``).
"""

from __future__ import annotations

from typing import Annotated

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from bridge.issuing.records import KEEP_EMAIL, set_badge_profile
from bridge.web.access import authorise
from bridge.web.context import services
from bridge.web.inputs import json_body, validated

badges_api = Blueprint("badges_api", __name__, url_prefix="/api/v1")


class BadgeProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    public: StrictBool
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)] | None = Field(
        default=None, description="Leave out to keep the current email; null clears it"
    )


@badges_api.put("/learners/<platform>/<lms_user_id>/badge-profile")
def put_badge_profile(platform: str, lms_user_id: str) -> Response:
    actor = authorise(write=True)
    body = validated(BadgeProfileIn, json_body())
    email = body.email.lower() if body.email else body.email
    result = set_badge_profile(
        services().database,
        platform,
        lms_user_id,
        public=body.public,
        actor=actor,
        email=email if "email" in body.model_fields_set else KEEP_EMAIL,
    )
    url = services().publisher.url(f"/ob/profiles/{result.token}") if result.token else None
    return jsonify(public=result.public, url=url, email=result.email)
