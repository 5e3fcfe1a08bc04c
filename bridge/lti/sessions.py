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

from bridge.clock import utcnow
from bridge.db.driver import Driver
from bridge.db.engine import Database
from bridge.db.models import Learner
from bridge.db.models_lti import LtiLaunch
from bridge.lti.identity import KnownLearner, learner_for, remember_context
from bridge.lti.launch import LTI, LaunchRefused
from bridge.lti.roles import ADMINISTRATOR, INSTRUCTOR, bridge_roles
from bridge.lti.store import LaunchStore, Sql, StateUsed
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
    store: LaunchStore,
    state_hash: str,
    claims: Mapping[str, Any],
    registration_id: int,
    platform: str,
    kind: str,
    lifetime: timedelta,
) -> LaunchContext:
    """Store a validated launch, in the transaction that uses up its state: the learner (created if new),
    their LTI identity, name and email, the course's LTI Advantage endpoints, and the launch itself."""
    identity = lti_identity(kind, claims)
    if identity.user_id is None:
        store.discard_state(state_hash)
        needed = identity.missing or "the user's id (sub)"
        raise LaunchRefused(
            "unknown_user", f"The launch does not say who you are: the platform must send {needed}."
        )
    user_id = identity.user_id
    roles = bridge_roles(claims.get(f"{LTI}roles") or [])
    context = claims.get(f"{LTI}context") if isinstance(claims.get(f"{LTI}context"), Mapping) else None
    context_id = context.get("id") if context and isinstance(context.get("id"), str) else None
    course = identity.course_id if context_id is not None else None
    sub = _text(claims.get("sub"))
    deployment_id, message_type = claims[f"{LTI}deployment_id"], claims[f"{LTI}message_type"]
    launch_id = str(uuid.uuid4())

    def write(sql: Sql) -> KnownLearner:
        driver = sql.driver
        name, email = _text(claims.get("name")), _text(claims.get("email"))
        learner = learner_for(sql, platform, user_id, registration_id, sub, name, email)
        if context is not None and context_id is not None and course is not None:
            values = _context_values(claims, context, platform, course)
            remember_context(sql, registration_id, context_id, values, learner.id)
        now = utcnow()
        row = (
            launch_id, registration_id, deployment_id, message_type, sub, learner.id, context_id, course,
            driver.json(roles), driver.json(claims), driver.time(now), driver.time(now + lifetime),
        )  # fmt: skip
        sql.run(_insert_launch(driver), row)
        return learner

    try:
        learner = store.record(state_hash, write)
    except StateUsed:
        raise LaunchRefused("state_unknown", "This launch was used already or has expired.", 401) from None
    return LaunchContext(
        launch_id, registration_id, platform, deployment_id, message_type, learner.id, user_id,
        learner.display_name, context_id, course, tuple(roles), claims,
    )  # fmt: skip


def _insert_launch(driver: Driver) -> str:
    j, m = driver.json_mark, driver.mark
    return (
        "INSERT INTO lti_launches (id, registration_id, deployment_id, message_type, sub, learner_id, "
        "context_id, course, roles, claims, created_at, expires_at) "
        f"VALUES ({driver.marks(8)}, {j}, {j}, {m}, {m})"
    )


def _context_values(
    claims: Mapping[str, Any], context: Mapping[str, Any], platform: str, course: str
) -> dict[str, Any]:
    nrps = claims.get(NRPS) if isinstance(claims.get(NRPS), Mapping) else {}
    ags = claims.get(AGS) if isinstance(claims.get(AGS), Mapping) else {}
    scopes = ags.get("scope") if isinstance(ags.get("scope"), list) else []
    return {
        "deployment_id": claims[f"{LTI}deployment_id"],
        "platform": platform,
        "course": course,
        "title": _text(context.get("title")) or _text(context.get("label")),
        # Service URLs only from a validated launch of this registration: never from anything a user sends.
        "memberships_url": _url(nrps.get("context_memberships_url")),
        "lineitems_url": _url(ags.get("lineitems")),
        "ags_scopes": [scope for scope in scopes if isinstance(scope, str)],
    }


def _url(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


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
