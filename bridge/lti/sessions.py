"""After a validated launch: who it is (the learner the webhooks and sync name), what it may do, and
the short-lived token its pages carry instead of a third-party cookie.

The token is the launch's id signed with the tool's secret (itsdangerous, which Flask already brings),
valid for ``session_minutes``; it names nothing but the launch, whose stored row holds the context,
user and roles, so a token shows and changes only what that launch may. State-changing requests carry
a CSRF token derived from the same launch, in a form field or header, which a page on another site
cannot read.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import CourseMember, Learner
from bridge.db.models_lti import LtiContext, LtiLaunch, LtiUser
from bridge.db.pseudonyms import new_pseudonym
from bridge.db.upsert import insert_ignoring_conflicts
from bridge.lti.launch import LTI, LaunchRefused
from bridge.lti.roles import ADMINISTRATOR, INSTRUCTOR, bridge_roles
from connectors.lti_identity import lti_identity

NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"


@dataclass(frozen=True, slots=True)
class LaunchContext:
    """What a launch's pages act as."""

    launch_id: str
    registration_id: int
    platform: str
    deployment_id: str
    message_type: str
    learner_id: int
    lms_user_id: str
    name: str | None
    context_id: str | None
    course: str | None
    roles: tuple[str, ...]
    claims: Mapping[str, Any]

    @property
    def is_instructor(self) -> bool:
        return INSTRUCTOR in self.roles or ADMINISTRATOR in self.roles

    @property
    def is_administrator(self) -> bool:
        return ADMINISTRATOR in self.roles


class LaunchTokens:
    def __init__(self, secret: bytes, lifetime: timedelta) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="lti-launch")
        self._csrf_key = hmac.new(secret, b"lti-csrf", hashlib.sha256).digest()
        self.lifetime = lifetime

    def token(self, launch_id: str) -> str:
        return self._serializer.dumps(launch_id)

    def launch_id(self, token: str) -> str | None:
        try:
            value = self._serializer.loads(token, max_age=int(self.lifetime.total_seconds()))
        except BadSignature:  # tampered with, from another tool's secret, or expired
            return None
        return value if isinstance(value, str) else None

    def csrf(self, launch_id: str) -> str:
        return hmac.new(self._csrf_key, launch_id.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, launch_id: str, given: str | None) -> bool:
        # As bytes: compare_digest refuses str with non-ASCII characters, which a form may carry.
        return given is not None and hmac.compare_digest(self.csrf(launch_id).encode(), given.encode())


def record_launch(
    database: Database,
    claims: Mapping[str, Any],
    registration_id: int,
    platform: str,
    kind: str,
    lifetime: timedelta,
) -> LaunchContext:
    """Store a validated launch: the learner (created if new), their LTI identity, name and email, the
    course's LTI Advantage endpoints, and the launch itself."""
    identity = lti_identity(kind, claims)
    if identity.user_id is None:
        needed = identity.missing or "the user's id (sub)"
        raise LaunchRefused(
            "unknown_user", f"The launch does not say who you are: the platform must send {needed}."
        )
    roles = bridge_roles(claims.get(f"{LTI}roles") or [])
    context = claims.get(f"{LTI}context") if isinstance(claims.get(f"{LTI}context"), Mapping) else None
    context_id = context.get("id") if context and isinstance(context.get("id"), str) else None
    name, email = _text(claims.get("name")), _text(claims.get("email"))
    sub = _text(claims.get("sub"))
    now = utcnow()
    with database.write() as session:
        learner = _learner(session, platform, identity.user_id)
        if sub is not None:
            _remember_user(session, registration_id, sub, learner, name, email)
        if context_id is not None and identity.course_id is not None:
            _remember_context(session, registration_id, claims, context, platform, identity.course_id)
            session.execute(
                insert_ignoring_conflicts(session.get_bind().dialect.name, CourseMember.__table__).values(
                    learner_id=learner.id, course=identity.course_id, first_seen_at=now
                )
            )
        launch = LtiLaunch(
            id=str(uuid.uuid4()),
            registration_id=registration_id,
            deployment_id=claims[f"{LTI}deployment_id"],
            message_type=claims[f"{LTI}message_type"],
            sub=sub,
            learner_id=learner.id,
            context_id=context_id,
            course=identity.course_id if context_id is not None else None,
            roles=roles,
            claims=dict(claims),
            created_at=now,
            expires_at=now + lifetime,
        )
        session.add(launch)
        return _context(launch, platform, learner)


def find_launch(database: Database, launch_id: str) -> LaunchContext | None:
    with database.read() as session:
        row = session.execute(
            select(LtiLaunch, Learner)
            .join(Learner, Learner.id == LtiLaunch.learner_id)
            .where(LtiLaunch.id == launch_id)
        ).one_or_none()
        if row is None or row[0].expires_at < utcnow():
            return None
        return _context(row[0], row[1].platform, row[1])


def _context(launch: LtiLaunch, platform: str, learner: Learner) -> LaunchContext:
    return LaunchContext(
        launch.id,
        launch.registration_id,
        platform,
        launch.deployment_id,
        launch.message_type,
        learner.id,
        learner.lms_user_id,
        learner.display_name,
        launch.context_id,
        launch.course,
        tuple(launch.roles),
        launch.claims,
    )


def _text(value: Any) -> str | None:
    return value.strip()[:255] if isinstance(value, str) and value.strip() else None


def _learner(session: Session, platform: str, lms_user_id: str) -> Learner:
    session.execute(
        insert_ignoring_conflicts(session.get_bind().dialect.name, Learner.__table__).values(
            platform=platform,
            lms_user_id=lms_user_id,
            points=0,
            pseudonym=new_pseudonym(),
            created_at=utcnow(),
        )
    )
    return session.scalars(
        select(Learner).where(Learner.platform == platform, Learner.lms_user_id == lms_user_id)
    ).one()


def _remember_user(
    session: Session, registration_id: int, sub: str, learner: Learner, name: str | None, email: str | None
) -> None:
    """The LMS's name and email stand for the learner, unless the learner chose others: a name or email
    still equal to what an LMS last said was the LMS's, and follows it."""
    user = session.get(LtiUser, (registration_id, sub))
    said_before = {
        (u.name, u.email) for u in session.scalars(select(LtiUser).where(LtiUser.learner_id == learner.id))
    }
    if name and (learner.display_name is None or learner.display_name in {n for n, _ in said_before}):
        learner.display_name = name
    if email and (learner.email is None or learner.email in {e for _, e in said_before}):
        learner.email = email.lower()
    if user is None:
        user = LtiUser(registration_id=registration_id, sub=sub)
        session.add(user)
    user.learner_id, user.name, user.email, user.updated_at = learner.id, name, email, utcnow()


def _remember_context(
    session: Session,
    registration_id: int,
    claims: Mapping[str, Any],
    context: Mapping[str, Any],
    platform: str,
    course: str,
) -> None:
    nrps = claims.get(NRPS) if isinstance(claims.get(NRPS), Mapping) else {}
    ags = claims.get(AGS) if isinstance(claims.get(AGS), Mapping) else {}
    row = session.get(LtiContext, (registration_id, context["id"]))
    if row is None:
        row = LtiContext(registration_id=registration_id, context_id=context["id"], grade_sync=False)
        session.add(row)
    row.deployment_id = claims[f"{LTI}deployment_id"]
    row.platform, row.course = platform, course
    row.title = _text(context.get("title")) or _text(context.get("label"))
    # Service URLs only from a validated launch of this registration: never from anything a user sends.
    row.memberships_url = nrps.get("context_memberships_url") or row.memberships_url
    row.lineitems_url = ags.get("lineitems") or row.lineitems_url
    row.ags_scopes = [s for s in ags.get("scope", []) if isinstance(s, str)] or list(row.ags_scopes or [])
    row.updated_at = utcnow()
