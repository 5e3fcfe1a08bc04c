"""What a learner's page in the LMS shows, gathered in one place: earned badges with their Open Badges
links, progress on the rest, the course leaderboard, and the learner's own choices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select

from bridge.db.engine import Database
from bridge.db.models import Award, Badge, Learner
from bridge.issuing.linkedin import add_to_profile_url
from bridge.issuing.publisher import Publisher
from bridge.services.leaderboards import Leaderboard, UnknownLearner, leaderboard
from bridge.services.progress import BadgeProgressView, learner_progress
from bridge.settings import Settings

Period = Literal["week", "month", "all"]


@dataclass(frozen=True, slots=True)
class EarnedBadge:
    award_id: int
    badge_id: str
    name: str
    description: str
    tier: str
    earned_at: datetime
    badge_page: str  # the public badge page (the hosted assertion, as a browser sees it)
    image: str  # the badge's image
    baked_png: str  # the baked OB 2.0 PNG
    credential: str  # the OB 3.0 credential (VC-JWT)
    linkedin: str  # "Add to LinkedIn profile"


@dataclass(frozen=True, slots=True)
class LearnerOverview:
    name: str | None
    earned: list[EarnedBadge]
    in_progress: list[BadgeProgressView]
    locked: list[BadgeProgressView]  # badges whose prerequisites the learner does not hold yet
    board: Leaderboard | None
    leaderboard_opt_out: bool
    profile_url: str | None  # the public badge profile, when the learner opted in
    # Whether award emails are sent to the learner; None where the bridge sends none (no email channel).
    award_emails: bool | None = None


def learner_overview(
    database: Database,
    settings: Settings,
    publisher: Publisher,
    platform: str,
    lms_user_id: str,
    *,
    course: str | None,
    period: Period,
    only_badge: str | None = None,
) -> LearnerOverview:
    progress = learner_progress(database, settings, platform, lms_user_id)
    with database.read() as session:
        learner = session.execute(
            select(
                Learner.id,
                Learner.display_name,
                Learner.leaderboard_opt_out,
                Learner.profile_token,
                Learner.email_opt_out,
            ).where(Learner.platform == platform, Learner.lms_user_id == lms_user_id)
        ).one()
        rows = session.execute(
            select(Award.id, Award.badge_id, Award.tier, Award.earned_at, Badge.name, Badge.description)
            .join(Badge, Badge.id == Award.badge_id)
            .where(Award.learner_id == learner.id, Award.revoked_at.is_(None))
            .order_by(Award.earned_at.desc(), Award.id.desc())
        ).all()
    earned = [_earned(publisher, settings, *row) for row in rows]
    if only_badge is not None:  # the page of one badge a course placed (Deep Linking)
        earned = [e for e in earned if e.badge_id == only_badge]
        progress = [p for p in progress if p.badge_id == only_badge]
    held = {e.badge_id for e in earned}
    try:
        board = leaderboard(database, settings, platform, course=course, period=period, learner=lms_user_id)
    except UnknownLearner:
        board = None
    profile = publisher.url(f"/ob/profiles/{learner.profile_token}") if learner.profile_token else None
    return LearnerOverview(
        learner.display_name,
        earned,
        [p for p in progress if p.badge_id not in held and not p.locked_by],
        [p for p in progress if p.badge_id not in held and p.locked_by],
        board,
        bool(learner.leaderboard_opt_out),
        profile,
        not learner.email_opt_out if "email" in settings.notification_type else None,
    )


def _earned(
    publisher: Publisher,
    settings: Settings,
    award_id: int,
    badge_id: str,
    tier: str,
    earned_at: datetime,
    name: str,
    description: str,
) -> EarnedBadge:
    page = publisher.assertion_url(award_id)
    linkedin = add_to_profile_url(name, settings.issuer.name, earned_at, page, publisher.public_id(award_id))
    return EarnedBadge(
        award_id, badge_id, name, description, tier, earned_at, page,
        publisher.url(f"/ob/images/{badge_id}.png"), f"{page}/badge.png", f"{page}/credential.jwt", linkedin,
    )  # fmt: skip
