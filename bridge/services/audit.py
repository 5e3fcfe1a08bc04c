"""The audit log: every manual action and rule change, who made it, when and why. Append-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import AuditEntry, Learner
from bridge.services.paging import Keyset, Page, page_of, paged


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    action: str
    platform: str | None
    learner: str | None
    badge_id: str | None
    tier: str | None
    award_id: int | None
    reason: str | None
    details: dict[str, Any]


def record_audit(session: Session, actor: str, action: str, **fields: Any) -> None:
    details = fields.pop("details", {})
    session.add(AuditEntry(at=utcnow(), actor=actor, action=action, details=details, **fields))


def audit_log(
    database: Database, *, platform: str | None = None, learner: str | None = None, limit: int = 100
) -> list[AuditView]:
    """The latest manual actions first."""
    return audit_page(database, platform=platform, learner=learner, keyset=Keyset(limit)).rows


def audit_page(
    database: Database, *, platform: str | None = None, learner: str | None = None, keyset: Keyset
) -> Page[AuditView]:
    """A page of the audit log, the latest first unless ``keyset`` says otherwise."""
    query = select(AuditEntry, Learner.platform, Learner.lms_user_id).outerjoin(
        Learner, Learner.id == AuditEntry.learner_id
    )
    if platform is not None:
        query = query.where(Learner.platform == platform)
    if learner is not None:
        query = query.where(Learner.lms_user_id == learner)
    with database.read() as session:
        rows = [
            AuditView(
                e.id,
                e.at,
                e.actor,
                e.action,
                platform,
                user,
                e.badge_id,
                e.tier,
                e.award_id,
                e.reason,
                dict(e.details),
            )
            for e, platform, user in session.execute(paged(query, AuditEntry.id, keyset))
        ]
    return page_of(rows, keyset, lambda e: e.id)
