"""The hourly sweep: the cron re-check beside the per-event path, as Moodle's badges do.

It rebuilds the progress of learners who sent no event since a badge was created or its criteria
changed (their next event would, but it may never come), then awards every completed progress that has
no award yet (made while achievements were off, say).
"""

from __future__ import annotations

from sqlalchemy import and_, exists, select

from bridge.db.engine import Database
from bridge.db.models import Approval, Award, Badge, Event, Learner, Progress
from bridge.services.badges import RuleBookCache
from bridge.services.processing import EventProcessor
from bridge.settings import Settings

SWEEP_BATCH = 200


def award_sweep(database: Database, settings: Settings) -> int:
    """Rebuild stale progress, then award every completed progress that has no award yet.

    Returns how many awards it made. Tiered badges are settled by the ledger, which knows every tier.
    """
    processor = EventProcessor(database, settings, RuleBookCache(settings.track_event_types, 0))
    awarded = rebuild_stale_progress(database, processor)
    if not settings.enable_achievements:
        return awarded
    after = 0
    while True:
        with database.write() as session:
            learner_ids = list(
                session.scalars(
                    select(Progress.learner_id)
                    .join(Badge, Badge.id == Progress.badge_id)
                    .where(
                        Progress.learner_id > after,
                        Progress.complete | (Progress.tier != ""),
                        Badge.enabled,
                        ~exists().where(
                            and_(
                                Award.learner_id == Progress.learner_id,
                                Award.badge_id == Progress.badge_id,
                                Award.tier == Progress.tier,
                            )
                        ),
                        ~exists().where(
                            and_(
                                Approval.learner_id == Progress.learner_id,
                                Approval.badge_id == Progress.badge_id,
                                Approval.tier == Progress.tier,
                            )
                        ),
                    )
                    .group_by(Progress.learner_id)
                    .order_by(Progress.learner_id)
                    .limit(SWEEP_BATCH)
                )
            )
            if not learner_ids:
                return awarded
            awarded += len(processor.settle(session, learner_ids).awards)
        after = learner_ids[-1]


def rebuild_stale_progress(database: Database, processor: EventProcessor) -> int:
    """Rebuild, from their history, the records of learners with events a badge listens to but no record
    of its current criteria, who were seen before those criteria reached every worker. Returns the
    awards made. Every learner looked at gets a record (an empty one if nothing matched), so the next
    sweep does not look again."""
    with database.read() as session:
        rules = processor.rules.current(session)
    awarded = 0
    for badge in rules.badges:
        kinds = sorted(badge.criteria.kinds)
        if not kinds:
            continue  # on points only: they follow the points, not events
        conditions = [
            exists().where(
                Event.platform == Learner.platform,
                Event.learner == Learner.lms_user_id,
                Event.kind.in_(kinds),
                Event.status == "done",
            ),
            ~exists().where(
                Progress.learner_id == Learner.id,
                Progress.badge_id == badge.id,
                Progress.criteria_version == badge.criteria_version,
            ),
        ]
        if badge.criteria_since is not None:
            conditions.append(Learner.created_at <= badge.criteria_since + processor.rules_lag)
        after = 0
        while True:
            with database.write() as session:
                learner_ids = list(
                    session.scalars(
                        select(Learner.id)
                        .where(Learner.id > after, *conditions)
                        .order_by(Learner.id)
                        .limit(SWEEP_BATCH)
                    )
                )
                if not learner_ids:
                    break
                awarded += len(processor.rebuild(session, badge.id, learner_ids).awards)
            after = learner_ids[-1]
    return awarded
