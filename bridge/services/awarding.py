"""The hourly award sweep: the cron re-check beside the per-event path, as Moodle's badges do."""

from __future__ import annotations

from sqlalchemy import and_, exists, select

from bridge.db.engine import Database
from bridge.db.models import Approval, Award, Badge, Progress
from bridge.services.badges import RuleBookCache
from bridge.services.processing import EventProcessor
from bridge.settings import Settings

SWEEP_BATCH = 200


def award_sweep(database: Database, settings: Settings) -> int:
    """Award every completed progress that has no award yet (made while achievements were off, say).

    Returns how many awards it made. Tiered badges are settled by the ledger, which knows every tier.
    """
    if not settings.enable_achievements:
        return 0
    processor = EventProcessor(database, settings, RuleBookCache(settings.track_event_types, 0))
    awarded = 0
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
