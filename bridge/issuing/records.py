"""Reading what the published documents need from award rows; the learner's badge-profile choices.

Documents are built on request from these rows, so the award-writing path stores nothing extra and a
revocation shows everywhere at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Award, Badge, Event, Learner
from bridge.db.pseudonyms import new_pseudonym
from bridge.db.upsert import insert_ignoring_conflicts
from bridge.domain.openbadges import Evidence, evidence_text
from bridge.domain.text import name_problem
from bridge.services.audit import record_audit
from bridge.services.errors import Invalid

MAX_EVIDENCE = 10  # the latest earning events shown; the award row keeps up to 100


@dataclass(frozen=True, slots=True)
class BadgeRecord:
    id: str
    name: str
    description: str
    criteria_narrative: str
    tags: tuple[str, ...]
    image_file: str
    tiers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AwardRecord:
    """One award with what its documents show: learner, badge, dates, revocation and evidence."""

    award_id: int
    platform: str
    lms_user_id: str
    learner_name: str | None
    email: str | None
    badge: BadgeRecord
    tier: str
    awarded_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class PublicProfile:
    name: str
    awards: list[AwardRecord]


def _award_query() -> Select[tuple[Award, Badge, Learner]]:
    return (
        select(Award, Badge, Learner)
        .join(Badge, Badge.id == Award.badge_id)
        .join(Learner, Learner.id == Award.learner_id)
    )


def _record(session: Session, award: Award, badge: Badge, learner: Learner) -> AwardRecord:
    return AwardRecord(
        award_id=award.id,
        platform=learner.platform,
        lms_user_id=learner.lms_user_id,
        learner_name=learner.display_name,
        email=learner.email,
        badge=_badge(badge),
        tier=award.tier,
        awarded_at=award.awarded_at,
        expires_at=award.expires_at,
        revoked_at=award.revoked_at,
        revoked_reason=award.revoked_reason,
        evidence=_evidence(session, award),
    )


def _evidence(session: Session, award: Award) -> tuple[Evidence, ...]:
    ids = list(award.event_ids or [])[:MAX_EVIDENCE] or ([award.event_id] if award.event_id else [])
    items = []
    if ids:
        events = session.scalars(select(Event).where(Event.id.in_(ids)).order_by(Event.occurred_at.desc()))
        for e in events:
            items.append(
                Evidence(
                    name=evidence_text(e.kind, e.course, e.item, e.score),
                    narrative=f"Recorded by {e.platform} on {e.occurred_at:%Y-%m-%d %H:%M} UTC.",
                )
            )
    if award.granted_by is not None:
        # The reason an instructor typed is for the audit log, not for the public: say only who decided.
        items.append(
            Evidence(name="Awarded by an instructor", narrative="Confirmed by hand, not by the rules.")
        )
    return tuple(items)


def award_record(database: Database, award_id: int) -> AwardRecord | None:
    with database.read() as session:
        row = session.execute(_award_query().where(Award.id == award_id)).one_or_none()
        return None if row is None else _record(session, *row)


def _badge(badge: Badge) -> BadgeRecord:
    return BadgeRecord(
        id=badge.id,
        name=badge.name,
        description=badge.description,
        criteria_narrative=badge.narrative or badge.description,
        tags=tuple(badge.tags),
        image_file=badge.image,
        tiers=tuple(str(t["name"]) for t in badge.tiers),
    )


def badge_record(database: Database, badge_id: str) -> BadgeRecord | None:
    with database.read() as session:
        badge = session.get(Badge, badge_id)
        return None if badge is None else _badge(badge)


def revoked_awards(
    database: Database, platforms: Collection[str], *, exclude: bool, id_range: range | None = None
) -> list[tuple[int, str | None]]:
    """(award id, reason) of revoked awards of learners on ``platforms`` (or on any other, ``exclude``)."""
    query = select(Award.id, Award.revoked_reason).join(Learner).where(Award.revoked_at.is_not(None))
    in_platforms = Learner.platform.in_(list(platforms))
    if platforms or not exclude:
        query = query.where(~in_platforms if exclude else in_platforms)
    if id_range is not None:
        query = query.where(Award.id >= id_range.start, Award.id < id_range.stop)
    with database.read() as session:
        return [(award_id, reason) for award_id, reason in session.execute(query.order_by(Award.id))]


def public_profile(database: Database, token: str) -> PublicProfile | None:
    with database.read() as session:
        learner = session.scalars(select(Learner).where(Learner.profile_token == token)).one_or_none()
        if learner is None:
            return None
        rows = session.execute(
            _award_query()
            .where(Award.learner_id == learner.id, Award.revoked_at.is_(None))
            .order_by(Award.awarded_at.desc(), Award.id.desc())
        ).all()
        return PublicProfile(
            learner.display_name or learner.pseudonym, [_record(session, *row) for row in rows]
        )


@dataclass(frozen=True, slots=True)
class BadgeProfileSettings:
    public: bool
    token: str | None
    email: str | None


_KEEP = object()


def set_badge_profile(
    database: Database,
    platform: str,
    lms_user_id: str,
    *,
    public: bool,
    actor: str,
    email: str | object | None = _KEEP,
) -> BadgeProfileSettings:
    """Opt in (a new unguessable token) or out (the old URL stops answering); optionally set the email.

    A learner not seen yet is made (as their first event or launch would make them), so that an email
    set before their first event is in their first badge. The caller checks the platform is configured.
    The change is in the audit log under ``actor`` (whether the email changed, never the email)."""
    problem = name_problem(lms_user_id)
    if problem is not None:
        raise Invalid(f"learner: {problem}", "invalid_learner")
    find = select(Learner).where(Learner.platform == platform, Learner.lms_user_id == lms_user_id)
    with database.write() as session:
        learner = session.scalars(find).one_or_none()
        if learner is None:
            new = {"platform": platform, "lms_user_id": lms_user_id, "points": 0, "created_at": utcnow()}
            # A worker may make the same learner meanwhile: then theirs is the one.
            session.execute(
                insert_ignoring_conflicts(session.get_bind().dialect.name, Learner.__table__).values(
                    pseudonym=new_pseudonym(), **new
                )
            )
            learner = session.scalars(find).one()
        if public and learner.profile_token is None:
            learner.profile_token = secrets.token_urlsafe(24)
        elif not public:
            learner.profile_token = None
        if email is not _KEEP:
            learner.email = email  # type: ignore[assignment]
        details = {"public": public, "email_changed": email is not _KEEP}
        record_audit(session, actor, "badge_profile", learner_id=learner.id, details=details)
        return BadgeProfileSettings(public, learner.profile_token, learner.email)


KEEP_EMAIL: object = _KEEP
