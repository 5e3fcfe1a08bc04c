"""What instructors and admins do by hand: award, revoke, approve, reject — each in the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Approval, Award, Badge, Learner
from bridge.domain.criteria import Tier
from bridge.domain.rules import ActiveBadge
from bridge.notify.outbox import add_notifications, routes
from bridge.services.audit import record_audit
from bridge.services.badges import RuleBookCache, active_badge
from bridge.services.effects import AwardMade
from bridge.services.errors import Conflict, Invalid, NotFound
from bridge.services.paging import Keyset, Page, page_of, paged
from bridge.services.processing import EventProcessor
from bridge.settings import Settings


@dataclass(frozen=True)
class ApprovalView:
    id: int
    badge_id: str
    tier: str
    platform: str
    learner: str
    status: str
    earned_at: datetime
    requested_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    award_id: int | None


class ManualAwards:
    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        # Always the latest rules: a manual action must not act on a rule book a few seconds old.
        self._rules = RuleBookCache(settings.track_event_types, 0)
        self._processor = EventProcessor(database, settings, self._rules)

    def award(
        self, *, platform: str, learner: str, badge_id: str, tier: str, actor: str, reason: str
    ) -> AwardMade:
        """Award ``badge_id`` (``tier`` for a badge with tiers) by hand, whatever the criteria say."""
        reason = _required(reason)
        if self._settings.platform(platform) is None:
            raise NotFound(f"platform {platform!r} is not configured", "unknown_platform")
        with self._database.write() as session:
            badge, chosen = self._badge_and_tier(session, badge_id, tier)
            rules = self._rules.current(session)  # read once: this cache reloads on every call
            context = self._processor.ledgers.lock_learners(session, [(platform, learner)], every_award=True)
            ledger = context[(platform, learner)].ledger
            key = (badge.id, chosen.name)
            if key in ledger.awarded:
                existing = session.execute(
                    select(Award.id, Award.revoked_at).where(
                        Award.learner_id == context[(platform, learner)].id,
                        Award.badge_id == badge.id,
                        Award.tier == chosen.name,
                    )
                ).one()
                if existing.revoked_at is not None:
                    raise Conflict(
                        f"award {existing.id} of {badge_id} was revoked: a revoked award is final",
                        "award_revoked",
                    )
                raise Conflict(
                    f"learner {learner!r} already holds {badge_id} (award {existing.id})", "already_awarded"
                )
            ledger.grant(badge, chosen, rules, utcnow(), actor, reason)
            made, _ = self._processor.effects.write_effects(session, list(context.values()), utcnow())
            mine = next(m for m in made if m.badge_id == badge.id and m.tier == chosen.name)
            learner_id = context[(platform, learner)].id
            # A pending approval of the same badge is settled by this award.
            session.execute(
                update(Approval)
                .where(
                    Approval.learner_id == learner_id,
                    Approval.badge_id == badge.id,
                    Approval.tier == chosen.name,
                    Approval.status == "pending",
                )
                .values(
                    status="approved",
                    decided_at=utcnow(),
                    decided_by=actor,
                    reason=reason,
                    award_id=mine.award_id,
                )
            )
            record_audit(
                session,
                actor,
                "award",
                learner_id=learner_id,
                badge_id=badge.id,
                tier=chosen.name,
                award_id=mine.award_id,
                reason=reason,
                details={"unlocked": [f"{m.badge_id}/{m.tier}".rstrip("/") for m in made if m is not mine]},
            )
            return mine

    def revoke(self, *, award_id: int, actor: str, reason: str, platform: str | None = None) -> None:
        """Mark an award revoked (never deleted) and take back its points. With ``platform``, only an
        award of that platform's learners: another's is "not found", as to a caller limited to one."""
        reason = _required(reason)
        with self._database.write() as session:
            award = session.get(Award, award_id)
            if award is None:
                raise NotFound(f"no award with id {award_id}", "unknown_award")
            learner = session.execute(
                select(Learner).where(Learner.id == award.learner_id).with_for_update()
            ).scalar_one()
            if platform is not None and learner.platform != platform:
                raise NotFound(f"no award with id {award_id}", "unknown_award")
            if award.revoked_at is not None:
                raise Conflict(
                    f"award {award_id} was already revoked on {award.revoked_at:%Y-%m-%d}", "already_revoked"
                )
            award.revoked_at, award.revoked_by, award.revoked_reason = utcnow(), actor, reason
            learner.points -= award.points
            record_audit(
                session,
                actor,
                "revoke",
                learner_id=learner.id,
                badge_id=award.badge_id,
                tier=award.tier,
                award_id=award.id,
                reason=reason,
                details={"points_removed": award.points},
            )
            to = routes(self._settings, "award.revoked")
            add_notifications(session, "award.revoked", to, award_id=award.id, learner_id=learner.id)

    def decide(
        self, *, approval_id: int, approve: bool, actor: str, reason: str | None, platform: str | None = None
    ) -> int | None:
        """Approve (award it, returning the award id) or reject a pending approval (with ``platform``,
        only one of that platform's learners)."""
        if not approve:
            reason = _required(reason)
        with self._database.write() as session:
            approval = session.get(Approval, approval_id)
            learner = None if approval is None else session.get(Learner, approval.learner_id)
            if approval is None or learner is None or platform not in (None, learner.platform):
                raise NotFound(f"no approval with id {approval_id}", "unknown_approval")
            if approval.status != "pending":
                raise Conflict(f"approval {approval_id} was already {approval.status}", "already_decided")
            award_id = None
            if approve:
                badge, tier = self._badge_and_tier(session, approval.badge_id, approval.tier)
                key = (learner.platform, learner.lms_user_id)
                rules = self._rules.current(session)
                context = self._processor.ledgers.lock_learners(
                    session, [key], every_award=True, create=False
                )
                context[key].ledger.grant(badge, tier, rules, approval.earned_at, actor, reason or "approved")
                made, _ = self._processor.effects.write_effects(session, list(context.values()), utcnow())
                award_id = next(m.award_id for m in made if m.badge_id == badge.id and m.tier == tier.name)
                session.execute(
                    update(Award)
                    .where(Award.id == award_id)
                    .values(course=approval.course, event_id=approval.event_id)
                )
            approval.status = "approved" if approve else "rejected"
            approval.decided_at, approval.decided_by, approval.reason = utcnow(), actor, reason
            approval.award_id = award_id
            record_audit(
                session,
                actor,
                "approve" if approve else "reject",
                learner_id=learner.id,
                badge_id=approval.badge_id,
                tier=approval.tier,
                award_id=award_id,
                reason=reason,
                details={"approval_id": approval.id},
            )
            return award_id

    def _badge_and_tier(self, session: Session, badge_id: str, tier: str) -> tuple[ActiveBadge, Tier]:
        row = session.get(Badge, badge_id)
        if row is None:
            raise NotFound(f"no badge with id {badge_id!r}", "unknown_badge")
        badge = active_badge(row, self._settings.track_event_types)
        if not badge.criteria.tiers:
            if tier:
                raise Invalid(f"tier: {badge_id} has no tiers, got {tier!r}", "invalid_tier")
            return badge, Tier("", 0, badge.points)
        for candidate in badge.criteria.tiers:
            if candidate.name == tier:
                return badge, candidate
        names = ", ".join(t.name for t in badge.criteria.tiers)
        raise Invalid(f"tier: {badge_id} has tiers {names}, got {tier!r}", "invalid_tier")


def list_approvals(
    database: Database, status: str | None = "pending", limit: int = 100
) -> list[ApprovalView]:
    """Approvals in the order they were asked for."""
    return approvals_page(database, status=status, keyset=Keyset(limit, newest_first=False)).rows


def approvals_page(
    database: Database, *, status: str | None, platform: str | None = None, keyset: Keyset
) -> Page[ApprovalView]:
    query = select(Approval, Learner.platform, Learner.lms_user_id).join(
        Learner, Learner.id == Approval.learner_id
    )
    if status is not None:
        query = query.where(Approval.status == status)
    if platform is not None:
        query = query.where(Learner.platform == platform)
    with database.read() as session:
        rows = [
            ApprovalView(
                a.id,
                a.badge_id,
                a.tier,
                platform,
                user,
                a.status,
                a.earned_at,
                a.requested_at,
                a.decided_at,
                a.decided_by,
                a.reason,
                a.award_id,
            )
            for a, platform, user in session.execute(paged(query, Approval.id, keyset))
        ]
    return page_of(rows, keyset, lambda a: a.id)


def _required(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise Invalid("reason: say why (it goes into the audit log)", "reason_required")
    return reason.strip()
