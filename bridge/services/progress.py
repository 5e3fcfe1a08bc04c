"""A learner's progress on every active badge, for the REST API, the CLI and (later) the LTI views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Approval, Award, Badge, Learner, LearnerState
from bridge.domain.evaluation import AwardPolicy, LearnerLedger
from bridge.domain.progress_text import describe
from bridge.services.badges import current_rulebook
from bridge.services.errors import NotFound
from bridge.services.ledgers import reading_ledger
from bridge.services.processing import rules_lag
from bridge.settings import Settings


@dataclass(frozen=True)
class NextTier:
    name: str
    target: float
    remaining: float


@dataclass(frozen=True)
class BadgeProgressView:
    badge_id: str
    name: str
    image: str
    value: float
    target: float
    fraction: float
    complete: bool
    tier: str
    next_tier: NextTier | None
    sentence: str
    awarded_tiers: list[str]  # '' for an untiered badge
    awarded_at: datetime | None  # of the latest award
    pending_approval: bool
    locked_by: list[str]  # prerequisites the learner does not hold yet


def learner_progress(
    database: Database, settings: Settings, platform: str, lms_user_id: str
) -> list[BadgeProgressView]:
    """Every enabled badge, earned or not; a learner with no events yet has zero progress everywhere."""
    if settings.platform(platform) is None:
        raise NotFound(f"platform {platform!r} is not configured", "unknown_platform")
    today = utcnow().astimezone(settings.zone).date().toordinal()
    with database.read() as session:
        rules = current_rulebook(session, settings.track_event_types)
        learner = session.execute(
            select(Learner.id, Learner.points, Learner.created_at).where(
                Learner.platform == platform, Learner.lms_user_id == lms_user_id
            )
        ).one_or_none()
        ledger = LearnerLedger(0, {}, set(), set(), set(), AwardPolicy())
        awards: dict[str, list[tuple[str, datetime]]] = {}
        pending: set[str] = set()
        if learner is not None:
            stored = session.scalar(select(LearnerState.states).where(LearnerState.learner_id == learner.id))
            ledger = reading_ledger(stored, learner.points, learner.created_at, rules_lag(settings))
            for award in session.execute(
                select(Award.badge_id, Award.tier, Award.awarded_at)
                .where(Award.learner_id == learner.id, Award.revoked_at.is_(None))
                .order_by(Award.awarded_at)
            ):
                awards.setdefault(award.badge_id, []).append((award.tier, award.awarded_at))
            pending = set(
                session.scalars(
                    select(Approval.badge_id).where(
                        Approval.learner_id == learner.id, Approval.status == "pending"
                    )
                )
            )
        shown = {row.id: row for row in session.execute(select(Badge.id, Badge.name, Badge.image))}
    views = []
    for badge in rules.badges:
        # None: criteria changed since the learner's events were evaluated, rebuilt at their next event.
        progress = ledger.progress_of(badge) or badge.criteria.progress({}, ledger.points)
        earned = awards.get(badge.id, [])
        upcoming = progress.next_tier
        views.append(
            BadgeProgressView(
                badge_id=badge.id,
                name=shown[badge.id].name,
                image=shown[badge.id].image,
                value=progress.value,
                target=progress.target,
                fraction=round(progress.fraction, 4),
                complete=progress.complete,
                tier=progress.tier,
                next_tier=None
                if upcoming is None
                else NextTier(upcoming.name, upcoming.target, upcoming.target - progress.value),
                sentence=describe(progress, today),
                awarded_tiers=[tier for tier, _ in earned],
                awarded_at=earned[-1][1] if earned else None,
                pending_approval=badge.id in pending,
                locked_by=[b for b in badge.prerequisites if b not in awards],
            )
        )
    return views
