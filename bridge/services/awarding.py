"""Writing awards: at most one per learner, badge and tier, decided by the unique key in the transaction."""

from __future__ import annotations

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Award, Badge, Learner, Progress
from bridge.db.upsert import insert_ignoring_conflicts


def grant_award(
    session: Session,
    *,
    learner_id: int,
    badge_id: str,
    criteria_version: int,
    points: int,
    event_id: int | None,
) -> int | None:
    """The new award's id, or None when the learner already holds this badge."""
    dialect = session.get_bind().dialect.name
    award_id = session.execute(
        insert_ignoring_conflicts(dialect, Award.__table__).returning(Award.id),
        {
            "learner_id": learner_id,
            "badge_id": badge_id,
            "tier": "",
            "criteria_version": criteria_version,
            "event_id": event_id,
            "awarded_at": utcnow(),
        },
    ).scalar_one_or_none()
    if award_id is not None and points:
        session.execute(
            update(Learner).where(Learner.id == learner_id).values(points=Learner.points + points)
        )
    return award_id


def award_sweep(database: Database, points_per_badge: int) -> int:
    """Award every completed progress that has no award yet (e.g. made while achievements were off).

    The cron re-check beside the per-event path, as Moodle's badges do; returns how many it awarded.
    """
    awarded = 0
    with database.write() as session:
        missing = session.execute(
            select(Progress.learner_id, Progress.badge_id, Progress.criteria_version, Badge.points)
            .join(Badge, Badge.id == Progress.badge_id)
            .where(
                Progress.complete,
                Badge.enabled,
                ~exists().where(Award.learner_id == Progress.learner_id, Award.badge_id == Progress.badge_id),
            )
        ).all()
        for learner_id, badge_id, version, points in missing:
            made = grant_award(
                session,
                learner_id=learner_id,
                badge_id=badge_id,
                criteria_version=version,
                points=points + points_per_badge,
                event_id=None,
            )
            awarded += made is not None
    return awarded
