"""The hourly sweep: the cron re-check beside the per-event path, as Moodle's badges do.

It rebuilds the progress of learners who sent no event since a badge was created or its criteria
changed (their next event would, but it may never come), then awards every completed progress that has
no award yet (made while achievements were off, say).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Select, and_, exists, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from bridge.db.engine import Database
from bridge.db.models import Approval, Award, Badge, Event, Learner, Progress
from bridge.services.badges import RuleBookCache
from bridge.services.processing import BatchResult, EventProcessor
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
    unawarded = (
        select(Progress.learner_id)
        .join(Badge, Badge.id == Progress.badge_id)
        .where(
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
    )
    return awarded + _in_chunks(database, unawarded, Progress.learner_id, processor.settle)


def rebuild_stale_progress(database: Database, processor: EventProcessor) -> int:
    """Rebuild, from their history, the records of learners with events a badge listens to but no
    progress report of its current criteria, who were seen before those criteria reached every worker.
    Returns the awards made. Every learner looked at gets a reported record (an empty one if nothing
    matched), so the next sweep does not look again. (A learner whose event rebuilt the record but who
    has not completed it has no report yet: rebuilt once more here, to the same record.)"""
    with database.read() as session:
        rules = processor.rules.current(session)
    awarded = 0
    for badge in rules.badges:
        kinds = sorted(badge.criteria.kinds)
        if not kinds:
            continue  # on points only: they follow the points, not events
        stale = select(Learner.id).where(
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
        )
        if badge.criteria_since is not None:
            stale = stale.where(Learner.created_at <= badge.criteria_since + processor.rules_lag)

        def rebuild(session: Session, learner_ids: Sequence[int], badge_id: str = badge.id) -> BatchResult:
            return processor.rebuild(session, badge_id, learner_ids)

        awarded += _in_chunks(database, stale, Learner.id, rebuild)
    return awarded


def _in_chunks(
    database: Database,
    learners: Select[tuple[int]],
    learner_id: InstrumentedAttribute[int],
    handle: Callable[[Session, Sequence[int]], BatchResult],
) -> int:
    """``handle`` the learner ids ``learners`` selects, a chunk per transaction, in id order; returns the
    number of awards made."""
    awarded, after = 0, 0
    while True:
        with database.write() as session:
            chunk = learners.where(learner_id > after).order_by(learner_id).limit(SWEEP_BATCH)
            learner_ids = list(session.scalars(chunk))
            if not learner_ids:
                return awarded
            awarded += len(handle(session, learner_ids).awards)
        after = learner_ids[-1]
