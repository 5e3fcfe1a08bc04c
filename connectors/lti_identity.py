"""Who and where an LTI launch is, in the ids the platform's webhooks and REST API use.

The launch's ``sub`` is an LTI user id; the bridge names learners as the LMS does everywhere else, so
the platform's own user and course ids are read from where each LMS puts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CUSTOM = "https://purl.imsglobal.org/spec/lti/claim/custom"
CONTEXT = "https://purl.imsglobal.org/spec/lti/claim/context"


@dataclass(frozen=True, slots=True)
class LaunchIdentity:
    user_id: str | None  # None: the platform did not say (an anonymous launch, or a missing custom field)
    course_id: str | None
    missing: str | None = None  # what the platform's tool configuration must send, when user_id is None


def _text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip() and not value.startswith("$"):
        return value.strip()
    return None  # absent, or a substitution variable the platform left unexpanded ("$Canvas.user.id")


def _context_id(claims: Mapping[str, Any]) -> str | None:
    context = claims.get(CONTEXT)
    return _text(context.get("id")) if isinstance(context, Mapping) else None


def _custom(claims: Mapping[str, Any], name: str) -> str | None:
    custom = claims.get(CUSTOM)
    return _text(custom.get(name)) if isinstance(custom, Mapping) else None


def moodle_identity(claims: Mapping[str, Any]) -> LaunchIdentity:
    # Moodle's sub is the Moodle user id and its context id the course id (mod/lti/locallib.php,
    # lti_build_request_lti13: 'sub' => $USER->id, context id => $course->id).
    return LaunchIdentity(_text(claims.get("sub")), _context_id(claims))


def canvas_identity(claims: Mapping[str, Any]) -> LaunchIdentity:
    # Canvas's sub is its opaque lti_1_3_id and its context id a hash; the numeric ids its REST API and
    # Live Events use come only as custom fields the developer key asks for (Canvas docs,
    # lti_dev_key_config.md: custom_fields with $Canvas.user.id and $Canvas.course.id).
    user = _custom(claims, "canvas_user_id")
    course = _custom(claims, "canvas_course_id")
    missing = None if user else "custom field canvas_user_id=$Canvas.user.id"
    return LaunchIdentity(user, course or _context_id(claims), missing)


def generic_identity(claims: Mapping[str, Any]) -> LaunchIdentity:
    """Another platform: the LTI ids are the platform's ids."""
    return LaunchIdentity(_text(claims.get("sub")), _context_id(claims))


def lti_identity(kind: str, claims: Mapping[str, Any]) -> LaunchIdentity:
    """The launch's learner and course in the ids of a platform of ``kind``."""
    return {"moodle": moodle_identity, "canvas": canvas_identity}.get(kind, generic_identity)(claims)
