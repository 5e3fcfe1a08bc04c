"""Turning one stored event into its effects: learner progress, awards and points.

Runs inside the worker's transaction, so the effects commit together with the event being marked done.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Event, Learner, Progress
from bridge.db.upsert import insert_ignoring_conflicts
from bridge.domain.criteria import Criteria
from bridge.domain.events import LearningEvent
from bridge.domain.rules import ActiveBadge
from bridge.services.awarding import grant_award
from bridge.services.badges import RuleBookCache
from bridge.settings import Settings


@dataclass(frozen=True, slots=True)
class AwardMade:
    award_id: int
    badge_id: str
    platform: str
    learner: str


def to_learning_event(row: Event) -> LearningEvent:
    return LearningEvent(
        platform=row.platform,
        event_key=row.event_key,
        kind=row.kind,
        learner=row.learner,
        occurred_at=row.occurred_at,
        course=row.course,
        item=row.item,
        score=row.score,
        data=row.data,
    )


class EventProcessor:
    """The processing pipeline the worker runs for each claimed event."""

    def __init__(self, database: Database, settings: Settings, rules: RuleBookCache) -> None:
        self._settings = settings
        self._rules = rules
        self._insert_learner = insert_ignoring_conflicts(database.engine.dialect.name, Learner.__table__)

    def __call__(self, session: Session, row: Event) -> list[AwardMade]:
        badges = self._rules.current(session).for_kind(row.kind)
        if not badges:
            return []
        learner_id = self._lock_learner(session, row.platform, row.learner)
        event = to_learning_event(row)
        awards = []
        for badge in badges:
            if self._advance(session, learner_id, badge, row, event) and self._settings.enable_achievements:
                made = grant_award(
                    session,
                    learner_id=learner_id,
                    badge_id=badge.id,
                    criteria_version=badge.criteria_version,
                    points=badge.points + self._settings.points_per_badge,
                    event_id=row.id,
                )
                if made is not None:
                    awards.append(AwardMade(made, badge.id, row.platform, row.learner))
        return awards

    def _lock_learner(self, session: Session, platform: str, lms_user_id: str) -> int:
        # The learner row serialises evaluation per learner across workers (PostgreSQL); the worker
        # claims in (platform, learner) order, so two workers take these locks in the same order.
        session.execute(
            self._insert_learner,
            {"platform": platform, "lms_user_id": lms_user_id, "points": 0, "created_at": utcnow()},
        )
        return session.execute(
            select(Learner.id)
            .where(Learner.platform == platform, Learner.lms_user_id == lms_user_id)
            .with_for_update()
        ).scalar_one()

    def _advance(
        self, session: Session, learner_id: int, badge: ActiveBadge, row: Event, event: LearningEvent
    ) -> bool:
        """Update the learner's progress on ``badge``; True when its criteria are now complete."""
        progress = session.get(Progress, (learner_id, badge.id))
        if progress is None:
            state = badge.criteria.advance({}, event)
            progress = Progress(learner_id=learner_id, badge_id=badge.id)
            session.add(progress)
        elif progress.criteria_version != badge.criteria_version:
            state = _replay(session, row, badge.criteria)  # includes this event
        else:
            state = badge.criteria.advance(progress.state, event)
        summary = badge.criteria.progress(state)
        progress.criteria_version = badge.criteria_version
        progress.state = state
        progress.value, progress.target, progress.complete = summary.value, summary.target, summary.complete
        progress.updated_at = utcnow()
        return summary.complete


def _replay(session: Session, row: Event, criteria: Criteria) -> dict[str, float]:
    """The state from scratch: every processed event of this learner that the criteria listen to."""
    history = session.scalars(
        select(Event)
        .where(
            Event.platform == row.platform,
            Event.learner == row.learner,
            Event.kind.in_(criteria.kinds),
            (Event.status == "done") | (Event.id == row.id),
        )
        .order_by(Event.occurred_at, Event.id)
    )
    state: dict[str, float] = {}
    for past in history:
        state = criteria.advance(state, to_learning_event(past))
    return state
