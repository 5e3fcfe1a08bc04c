"""What the instructor's pages in the LMS show of one course, gathered in one place: its learners (the
members of the course on its platform, without the staff who launched the tool as instructors), the
progress of each on each badge, the approvals waiting with the events behind each, and awards per week
by the day the learners earned them.

A course is a course id of one platform (``CourseScope``); every query here is narrowed to it, so a page
of one course can neither show nor change another's learners. No sentence is made here: a cell says
which of the pages' sentences fits it (``Cell.says``) and with what values.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, cast, false, func, or_, select
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Approval, Award, Badge, CourseMember, Event, Learner, LearnerState
from bridge.db.models_lti import LtiLaunch
from bridge.domain.aggregates import EventFacts
from bridge.domain.evaluation import LearnerLedger
from bridge.domain.openbadges import evidence_text
from bridge.domain.rules import ActiveBadge
from bridge.services.analytics import week_starts
from bridge.services.badges import current_rulebook
from bridge.services.event_rows import to_learning_event
from bridge.services.ledgers import reading_ledger
from bridge.services.processing import rules_lag
from bridge.settings import Settings

EVIDENCE_SHOWN = 10
ON_THE_WAY = frozenset({"progress", "pending"})


@dataclass(frozen=True, slots=True)
class CourseScope:
    platform: str
    course: str
    registration_id: int  # the LTI registration and context the staff launched from
    context_id: str | None


@dataclass(frozen=True, slots=True)
class BadgeColumn:
    badge_id: str
    name: str
    tiers: list[str]  # tier names in order; empty for a badge without tiers


@dataclass(frozen=True, slots=True)
class Cell:
    kind: str  # "held", "pending", "progress", "locked", "none"
    # Which sentence: "held", "tier", "tier_next", "pending", "locked", "none", "to_tier", "percent".
    says: str
    values: dict[str, Any]  # tier, next (tier names, capitalised), percent (whole, rounded down)


@dataclass(frozen=True, slots=True)
class LearnerRow:
    lms_user_id: str
    display_name: str | None
    cells: list[Cell]  # in the order of the badge columns
    awards: list[tuple[int, str, str]]  # (award id, badge id, tier) held


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    id: int
    lms_user_id: str
    display_name: str | None
    badge_id: str
    badge_name: str
    tier: str
    earned_at: datetime
    evidence: list[tuple[str, datetime]]  # (what happened, when), latest first


def percent(fraction: float) -> int:
    """0..1 as a whole percentage, rounded down: 99.6% is not yet everything."""
    return int(max(0.0, min(fraction, 1.0)) * 100 + 1e-9)


def members(scope: CourseScope) -> Select[tuple[int]]:
    """The ids of the course's learners on its platform (a course id names a course of one platform)."""
    return (
        select(CourseMember.learner_id)
        .join(Learner, Learner.id == CourseMember.learner_id)
        .where(CourseMember.course == scope.course, Learner.platform == scope.platform)
    )


def learners(scope: CourseScope, query: str = "") -> Select[Any]:
    """The course's learners by name (or the one whose LMS id is ``query``), staff left out."""
    roles = cast(LtiLaunch.roles, String)
    staff = select(LtiLaunch.learner_id).where(
        LtiLaunch.registration_id == scope.registration_id,
        LtiLaunch.context_id == scope.context_id,
        or_(roles.like('%"instructor"%'), roles.like('%"administrator"%')),
    )
    found = select(Learner.id, Learner.lms_user_id, Learner.display_name, Learner.points, Learner.created_at)
    found = found.where(Learner.id.in_(members(scope)), Learner.id.not_in(staff))
    if query:
        named = Learner.display_name.icontains(query, autoescape=True)
        found = found.where(or_(named, Learner.lms_user_id == query))
    return found.order_by(func.lower(func.coalesce(Learner.display_name, Learner.lms_user_id)), Learner.id)


def count(database: Database, query: Select[Any]) -> int:
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(query.subquery())) or 0


def is_member(database: Database, scope: CourseScope, lms_user_id: str) -> bool:
    with database.read() as session:
        return session.scalar(members(scope).where(Learner.lms_user_id == lms_user_id)) is not None


def award_in_course(database: Database, scope: CourseScope, award_id: int) -> bool:
    with database.read() as session:
        found = select(Award.id).where(Award.id == award_id, Award.learner_id.in_(members(scope)))
        return session.scalar(found) is not None


def pending(scope: CourseScope, query: Select[Any]) -> Select[Any]:
    """``query`` narrowed to the approvals waiting in this course (or of its members, when the event
    that completed the badge named no course)."""
    in_course = or_(
        Approval.course == scope.course,
        and_(Approval.course.is_(None), Approval.learner_id.in_(members(scope))),
    )
    return (
        query.select_from(Approval)
        .join(Learner, Learner.id == Approval.learner_id)
        .where(Approval.status == "pending", Learner.platform == scope.platform, in_course)
    )


def waiting_count(database: Database, scope: CourseScope) -> int:
    with database.read() as session:
        return session.scalar(pending(scope, select(func.count(Approval.id)))) or 0


def approval_waiting(database: Database, scope: CourseScope, approval_id: int) -> bool:
    with database.read() as session:
        return (
            session.scalar(pending(scope, select(Approval.id)).where(Approval.id == approval_id)) is not None
        )


def progress_matrix(
    database: Database, settings: Settings, chosen: Select[Any]
) -> tuple[list[BadgeColumn], list[LearnerRow]]:
    """The enabled badges by name, and a row per learner of ``chosen`` (a ``learners()`` query, maybe
    paged) with a cell per badge: held (and which tier), waiting for approval, locked, on the way."""
    with database.read() as session:
        rules = current_rulebook(session, settings.track_event_types)
        names: dict[str, str] = {
            badge_id: name for badge_id, name in session.execute(select(Badge.id, Badge.name))
        }
        ordered = sorted(rules.badges, key=lambda badge: names[badge.id].lower())
        ids = select(chosen.subquery().c.id)
        documents = {
            learner_id: states
            for learner_id, states in session.execute(
                select(LearnerState.learner_id, LearnerState.states).where(LearnerState.learner_id.in_(ids))
            )
        }
        held: dict[int, list[tuple[int, str, str]]] = {}
        for award_id, learner_id, badge_id, tier in session.execute(
            select(Award.id, Award.learner_id, Award.badge_id, Award.tier)
            .where(Award.learner_id.in_(ids), Award.revoked_at.is_(None))
            .order_by(Award.id)
        ):
            held.setdefault(learner_id, []).append((award_id, badge_id, tier))
        waiting = {
            (learner_id, badge_id)
            for learner_id, badge_id in session.execute(
                select(Approval.learner_id, Approval.badge_id).where(
                    Approval.learner_id.in_(ids), Approval.status == "pending"
                )
            )
        }
        chosen_rows = session.execute(chosen).all()
    lag = rules_lag(settings)
    rows = []
    for learner in chosen_rows:
        ledger = reading_ledger(documents.get(learner.id), learner.points, learner.created_at, lag)
        tiers: dict[str, list[str]] = {}
        for _, badge_id, tier in held.get(learner.id, []):
            tiers.setdefault(badge_id, []).append(tier)
        cells = [_cell(badge, ledger, tiers, (learner.id, badge.id) in waiting) for badge in ordered]
        rows.append(LearnerRow(learner.lms_user_id, learner.display_name, cells, held.get(learner.id, [])))
    columns = [BadgeColumn(b.id, names[b.id], [tier.name for tier in b.criteria.tiers]) for b in ordered]
    return columns, rows


def _cell(badge: ActiveBadge, ledger: LearnerLedger, held: dict[str, list[str]], waiting: bool) -> Cell:
    progress = ledger.progress_of(badge) or badge.criteria.progress({}, ledger.points)
    upcoming = progress.next_tier
    after: dict[str, Any] = {}
    if upcoming is not None:  # a badge with tiers: how far to its next one
        share = progress.value / upcoming.target if upcoming.target > 0 else 1.0
        after = {"next": upcoming.name.capitalize(), "percent": percent(share)}
    if badge.id in held:
        order = [tier.name for tier in badge.criteria.tiers]
        top = max(held[badge.id], key=lambda tier: order.index(tier) if tier in order else -1)
        says = "held" if not top else "tier" if upcoming is None else "tier_next"
        return Cell("held", says, {"tier": top.capitalize(), **after})
    missing = any(needed not in held for needed in badge.prerequisites)
    if waiting or missing or progress.value <= 0:
        kind = "pending" if waiting else "locked" if missing else "none"
        return Cell(kind, kind, {})
    if upcoming is not None:
        return Cell("progress", "to_tier", after)
    return Cell("progress", "percent", {"percent": percent(progress.fraction)})


def on_the_way(columns: list[BadgeColumn], rows: list[LearnerRow]) -> Counter[str]:
    """Per badge id, the learners on their way to it: started and not holding it (or awaiting approval)."""
    return Counter(
        column.badge_id
        for row in rows
        for column, cell in zip(columns, row.cells, strict=True)
        if cell.kind in ON_THE_WAY
    )


def approval_queue(
    database: Database, settings: Settings, scope: CourseScope, limit: int = 50
) -> list[ApprovalRequest]:
    """The approvals waiting in the course, the oldest request first, each with its evidence."""
    with database.read() as session:
        rules = current_rulebook(session, settings.track_event_types)
        found = session.execute(
            pending(scope, select(Approval, Learner.lms_user_id, Learner.display_name, Badge.name))
            .join(Badge, Badge.id == Approval.badge_id)
            .order_by(Approval.requested_at, Approval.id)
            .limit(limit)
        ).all()
        return [
            ApprovalRequest(
                approval.id,
                user,
                name,
                approval.badge_id,
                badge_name,
                approval.tier,
                approval.earned_at,
                _evidence(
                    session, settings, rules.by_id.get(approval.badge_id), approval, (scope.platform, user)
                ),
            )
            for approval, user, name, badge_name in found
        ]


def _evidence(
    session: Session,
    settings: Settings,
    badge: ActiveBadge | None,
    approval: Approval,
    learner: tuple[str, str],
) -> list[tuple[str, datetime]]:
    """The events that completed the badge: the learner's events its requirements accept (filters too),
    until it was completed, latest first; the event that completed it among them."""
    requirements = [r for group in badge.criteria.groups for r in group if r.kinds] if badge else []
    kinds = sorted({kind for requirement in requirements for kind in requirement.kinds})
    condition: ColumnElement[bool] = Event.id == approval.event_id if approval.event_id else false()
    if kinds:
        platform, user = learner
        theirs = and_(Event.platform == platform, Event.learner == user, Event.status == "done")
        condition = or_(condition, theirs & Event.kind.in_(kinds) & (Event.occurred_at <= approval.earned_at))
    query = select(Event).where(condition).order_by(Event.occurred_at.desc(), Event.id.desc())
    shown: list[tuple[str, datetime]] = []
    for event in session.scalars(query.limit(EVIDENCE_SHOWN * 5)):
        facts = EventFacts(to_learning_event(event), settings.zone)
        if event.id == approval.event_id or any(r.accepts(facts) for r in requirements):
            shown.append(
                (evidence_text(event.kind, event.course, event.item, event.score), event.occurred_at)
            )
        if len(shown) == EVIDENCE_SHOWN:
            break
    return shown


def awards_per_week_earned(
    database: Database, settings: Settings, scope: CourseScope, weeks: int = 12, now: datetime | None = None
) -> list[tuple[date, int]]:
    """(Monday, awards) of the last ``weeks`` calendar weeks, counting the course's learners' awards (not
    revoked) by the day each was earned — which a late sync or an approval may record weeks later."""
    zone = settings.zone
    mondays = week_starts(weeks, zone, now or utcnow())
    since = datetime.combine(mondays[0], time(0), tzinfo=zone)
    with database.read() as session:
        earned = session.scalars(
            select(Award.earned_at).where(
                Award.revoked_at.is_(None), Award.earned_at >= since, Award.learner_id.in_(members(scope))
            )
        ).all()
    days = (moment.astimezone(zone).date() for moment in earned)
    counts = Counter(day - timedelta(days=day.weekday()) for day in days)
    return [(monday, counts.get(monday, 0)) for monday in mondays]
