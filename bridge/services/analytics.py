"""Badge analytics: completion rates, time to earn, awards per week, tier funnels, and a CSV export.

Every figure can be narrowed to a platform's learners, or a course's members (of a platform, when one is
given). Revoked awards never count. Each report costs a fixed number of statements, except completion,
which takes one more per badge that has prerequisites.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, case, distinct, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Award, Badge, CourseMember, Learner, Progress

UTC_ZONE = ZoneInfo("UTC")
RECENT = timedelta(weeks=4)
_DAY = 86_400.0
# Time-to-earn histogram buckets: (name, upper bound in seconds, exclusive); the last is open-ended.
BUCKETS: tuple[tuple[str, float], ...] = (
    ("under_1_day", _DAY),
    ("1_to_7_days", 7 * _DAY),
    ("7_to_30_days", 30 * _DAY),
    ("30_to_90_days", 90 * _DAY),
    ("90_days_or_more", math.inf),
)
CSV_COLUMNS = (
    "badge_id",
    "name",
    "eligible",
    "earned",
    "completion_rate",
    "median_hours_to_earn",
    "awards_last_4_weeks",
)


@dataclass(frozen=True)
class TimeToEarn:
    """From the first counted event (``progress.started_at``) to the award's ``earned_at``, in hours."""

    count: int
    median_hours: float | None
    p90_hours: float | None
    histogram: dict[str, int]


@dataclass(frozen=True)
class BadgeReport:
    badge_id: str
    name: str
    enabled: bool
    prerequisites: list[str]
    eligible: int  # learners holding every prerequisite (all learners of the scope when there are none)
    earned: int  # eligible learners holding the badge
    completion_rate: float | None  # earned / eligible; None when nobody is eligible
    time_to_earn: TimeToEarn
    awards_last_4_weeks: int


@dataclass(frozen=True)
class WeekCount:
    week_start: date  # the Monday, in the settings' time zone
    awards: int


@dataclass(frozen=True)
class TierStep:
    tier: str
    target: float
    reached: int  # learners holding this tier
    rate: float | None  # reached / started


@dataclass(frozen=True)
class TierFunnel:
    badge_id: str
    name: str
    started: int  # learners with progress on the badge
    tiers: list[TierStep]


def _in_scope(
    learner_id: InstrumentedAttribute[int], platform: str | None, course: str | None
) -> list[ColumnElement[bool]]:
    """Conditions keeping rows of learners in the scope: a platform's learners, a course's members."""
    conditions: list[ColumnElement[bool]] = []
    if course is not None:
        members = select(CourseMember.learner_id).where(CourseMember.course == course)
        conditions.append(learner_id.in_(members))
    if platform is not None:
        conditions.append(learner_id.in_(select(Learner.id).where(Learner.platform == platform)))
    return conditions


def _held(platform: str | None, course: str | None) -> list[ColumnElement[bool]]:
    return [Award.revoked_at.is_(None), *_in_scope(Award.learner_id, platform, course)]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def badge_report(
    database: Database,
    *,
    platform: str | None = None,
    course: str | None = None,
    now: datetime | None = None,
) -> list[BadgeReport]:
    """One row per badge (disabled ones too: their awards still stand), in badge id order."""
    recent_since = (now or utcnow()) - RECENT
    with database.read() as session:
        badges = session.execute(
            select(Badge.id, Badge.name, Badge.enabled, Badge.prerequisites).order_by(Badge.id)
        ).all()
        population = session.scalar(
            select(func.count(Learner.id)).where(*_in_scope(Learner.id, platform, course))
        )
        holders = dict(
            session.execute(
                select(Award.badge_id, func.count(distinct(Award.learner_id)))
                .where(*_held(platform, course))
                .group_by(Award.badge_id)
            ).all()
        )
        recent = dict(
            session.execute(
                select(Award.badge_id, func.count(Award.id))
                .where(*_held(platform, course), Award.awarded_at >= recent_since)
                .group_by(Award.badge_id)
            ).all()
        )
        completion: dict[str, tuple[int, int]] = {}
        for badge in badges:
            if badge.prerequisites:
                completion[badge.id] = _completion_with_prerequisites(
                    session, badge.id, list(badge.prerequisites), platform, course
                )
            else:
                completion[badge.id] = (population or 0, holders.get(badge.id, 0))
    times = time_to_earn(database, platform=platform, course=course)
    reports = []
    for badge in badges:
        eligible, earned = completion[badge.id]
        reports.append(
            BadgeReport(
                badge_id=badge.id,
                name=badge.name,
                enabled=bool(badge.enabled),
                prerequisites=list(badge.prerequisites),
                eligible=eligible,
                earned=earned,
                completion_rate=_rate(earned, eligible),
                time_to_earn=times.get(badge.id) or _time_to_earn([]),
                awards_last_4_weeks=recent.get(badge.id, 0),
            )
        )
    return reports


def _completion_with_prerequisites(
    session: Session, badge_id: str, prerequisites: list[str], platform: str | None, course: str | None
) -> tuple[int, int]:
    """(eligible, earned): learners holding every prerequisite, and those of them holding the badge."""
    per_learner = (
        select(
            Award.learner_id,
            func.count(distinct(case((Award.badge_id.in_(prerequisites), Award.badge_id)))).label("held"),
            func.max(case((Award.badge_id == badge_id, 1), else_=0)).label("has"),
        )
        .where(*_held(platform, course), Award.badge_id.in_([*prerequisites, badge_id]))
        .group_by(Award.learner_id)
        .subquery()
    )
    eligible, earned = session.execute(
        select(func.count(), func.coalesce(func.sum(per_learner.c.has), 0)).where(
            per_learner.c.held == len(set(prerequisites))
        )
    ).one()
    return int(eligible), int(earned)


def time_to_earn(
    database: Database, *, platform: str | None = None, course: str | None = None
) -> dict[str, TimeToEarn]:
    """Per badge id, over its awards whose progress row knows when the learner started."""
    query = (
        select(Award.badge_id, Award.earned_at, Progress.started_at)
        .join(Progress, (Progress.learner_id == Award.learner_id) & (Progress.badge_id == Award.badge_id))
        .where(*_held(platform, course), Progress.started_at.is_not(None))
    )
    seconds: dict[str, list[float]] = defaultdict(list)
    with database.read() as session:
        for badge_id, earned_at, started_at in session.execute(query):
            if started_at is not None:
                seconds[badge_id].append(max(0.0, (earned_at - started_at).total_seconds()))
    return {badge_id: _time_to_earn(values) for badge_id, values in seconds.items()}


def _time_to_earn(seconds: list[float]) -> TimeToEarn:
    ordered = sorted(seconds)
    histogram = dict.fromkeys((name for name, _ in BUCKETS), 0)
    for value in ordered:
        histogram[next(name for name, upper in BUCKETS if value < upper)] += 1
    if not ordered:
        return TimeToEarn(0, None, None, histogram)
    return TimeToEarn(
        len(ordered),
        round(_quantile(ordered, 0.5) / 3600, 2),
        round(_quantile(ordered, 0.9) / 3600, 2),
        histogram,
    )


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (as PostgreSQL's percentile_cont)."""
    position = (len(ordered) - 1) * q
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def week_starts(weeks: int, zone: ZoneInfo, now: datetime) -> list[date]:
    """The Mondays of the last ``weeks`` calendar weeks in ``zone``, oldest first, this week last."""
    today = now.astimezone(zone).date()
    this_monday = today - timedelta(days=today.weekday())
    return [this_monday - timedelta(weeks=back) for back in range(weeks - 1, -1, -1)]


def awards_per_week(
    database: Database,
    *,
    zone: ZoneInfo = UTC_ZONE,
    weeks: int = 12,
    badge: str | None = None,
    platform: str | None = None,
    course: str | None = None,
    now: datetime | None = None,
) -> list[WeekCount]:
    """Awards made (``awarded_at``) in each of the last ``weeks`` calendar weeks, weeks without any as 0."""
    mondays = week_starts(weeks, zone, now or utcnow())
    starts = [datetime.combine(monday, time(0), tzinfo=zone) for monday in mondays]
    # Each award's week index, newest boundary first; grouped in an outer query so that PostgreSQL sees
    # one expression (the same CASE in SELECT and GROUP BY would carry separate parameters).
    week_of = case(
        *((Award.awarded_at >= start, index) for index, start in reversed(list(enumerate(starts))))
    )
    conditions = [*_held(platform, course), Award.awarded_at >= starts[0]]
    if badge is not None:
        conditions.append(Award.badge_id == badge)
    indexed = select(week_of.label("week")).where(*conditions).subquery()
    with database.read() as session:
        counts: dict[int, int] = dict(
            session.execute(select(indexed.c.week, func.count()).group_by(indexed.c.week)).all()
        )
    return [WeekCount(monday, int(counts.get(index, 0))) for index, monday in enumerate(mondays)]


def tier_funnel(
    database: Database, *, platform: str | None = None, course: str | None = None
) -> list[TierFunnel]:
    """For each badge with tiers: learners who started it, and who reached each tier, in tier order."""
    with database.read() as session:
        tiered = [
            b
            for b in session.execute(select(Badge.id, Badge.name, Badge.tiers).order_by(Badge.id))
            if b.tiers
        ]
        ids = [b.id for b in tiered]
        started = dict(
            session.execute(
                select(Progress.badge_id, func.count(distinct(Progress.learner_id)))
                .where(Progress.badge_id.in_(ids), *_in_scope(Progress.learner_id, platform, course))
                .group_by(Progress.badge_id)
            ).all()
        )
        reached = {
            (badge_id, tier): count
            for badge_id, tier, count in session.execute(
                select(Award.badge_id, Award.tier, func.count(distinct(Award.learner_id)))
                .where(Award.badge_id.in_(ids), Award.tier != "", *_held(platform, course))
                .group_by(Award.badge_id, Award.tier)
            )
        }
    funnels = []
    for badge in tiered:
        began = int(started.get(badge.id, 0))
        steps = []
        for tier in badge.tiers:
            count = int(reached.get((badge.id, tier["name"]), 0))
            steps.append(TierStep(tier["name"], tier["target"], count, _rate(count, began)))
        funnels.append(TierFunnel(badge.id, badge.name, began, steps))
    return funnels


def known_badge(database: Database, badge_id: str) -> bool:
    with database.read() as session:
        return session.get(Badge, badge_id) is not None


def _cell(text: str) -> str:
    """Text that a spreadsheet would read as a formula is quoted with a leading apostrophe."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def badges_csv(reports: list[BadgeReport]) -> str:
    """The per-badge table as CSV text (RFC 4180 line ends), with a header row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in reports:
        writer.writerow(
            [
                _cell(r.badge_id),
                _cell(r.name),
                r.eligible,
                r.earned,
                "" if r.completion_rate is None else r.completion_rate,
                "" if r.time_to_earn.median_hours is None else r.time_to_earn.median_hours,
                r.awards_last_4_weeks,
            ]
        )
    return out.getvalue()
