"""Leaderboards: learners ranked by the points or badges of a period, per platform or per course.

One statement per leaderboard: the population (a platform's learners, or a course's members) is outer-
joined to its awards of the period and grouped by learner, ranked with window functions, and cut to the
top ``limit`` plus the asking learner. Ties share a rank ("1, 2, 2, 4"); within a tie the order is by the
name everyone else sees (the pseudonym of a hidden learner), then by id, so it is the same for every asker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import Enum
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal, or_, select, true, update
from sqlalchemy.sql.elements import ColumnElement

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Award, CourseMember, Learner
from bridge.services.audit import record_audit
from bridge.settings import Settings

Period = Literal["all", "week", "month"]
Metric = Literal["points", "badges"]
PERIODS: tuple[Period, ...] = ("all", "week", "month")
METRICS: tuple[Metric, ...] = ("points", "badges")


class UnknownLearner(LookupError):
    """The asking learner is not known on the platform."""


@dataclass(frozen=True)
class Standing:
    rank: int
    name: str
    score: int
    you: bool
    learner: str | None  # the LMS user id, only for a learner shown by name


@dataclass(frozen=True)
class Leaderboard:
    platform: str
    course: str | None
    section: str | None
    period: Period
    metric: Metric
    since: datetime | None  # the start of the period (None: all time)
    size: int
    total: int  # learners ranked
    entries: list[Standing]  # the top ``size``
    you: Standing | None  # the asking learner's standing, wherever it is (None: not asked, or not ranked)

    def as_dict(self) -> dict[str, Any]:
        def standing(s: Standing) -> dict[str, Any]:
            return {"rank": s.rank, "name": s.name, "score": s.score, "you": s.you, "learner": s.learner}

        return {
            "platform": self.platform,
            "course": self.course,
            "section": self.section,
            "period": self.period,
            "metric": self.metric,
            "since": self.since.isoformat() if self.since else None,
            "size": self.size,
            "total": self.total,
            "entries": [standing(s) for s in self.entries],
            "you": standing(self.you) if self.you else None,
        }


def period_start(period: Period, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The start of this calendar week (Monday 00:00) or month in ``zone``, as an aware datetime."""
    if period == "all":
        return None
    today = now.astimezone(zone).date()
    first = today - timedelta(days=today.weekday()) if period == "week" else today.replace(day=1)
    return datetime.combine(first, time(0), tzinfo=zone)


def leaderboard(
    database: Database,
    settings: Settings,
    platform: str,
    *,
    course: str | None = None,
    section: str | None = None,
    period: Period = "all",
    metric: Metric = "points",
    limit: int | None = None,
    learner: str | None = None,
    now: datetime | None = None,
) -> Leaderboard:
    """The leaderboard of ``platform`` (or of one ``course`` of it, optionally one ``section``).

    ``learner`` is the asking learner's LMS user id: they always see themselves by name, flagged ``you``,
    and get their standing even outside the top ``limit``. Raises :class:`UnknownLearner` when the
    platform has no such learner.
    """
    size = limit if limit is not None else settings.leaderboard.size
    now = now or utcnow()
    since = period_start(period, settings.zone, now)

    counted = [Award.learner_id == Learner.id, Award.revoked_at.is_(None)]
    if since is not None:
        counted += [Award.awarded_at >= since, Award.awarded_at <= now]
    if course is not None:
        counted.append(Award.course == course)  # a course's board counts that course's awards only
    total_of = func.sum(Award.points) if metric == "points" else func.count(Award.id)
    score = func.coalesce(total_of, 0)

    named = func.coalesce(Learner.display_name, literal("Learner ") + Learner.lms_user_id)
    hidden: ColumnElement[bool] = (
        true() if settings.leaderboard.anonymise else Learner.leaderboard_opt_out.expression
    )
    label = case((hidden, Learner.pseudonym), else_=named)
    order_label: ColumnElement[str] = func.lower(label)
    if not database.is_sqlite:
        order_label = order_label.collate("C")  # byte order, as SQLite compares: the same order on both

    ranked = select(
        Learner.id.label("id"),
        Learner.lms_user_id.label("lms_user_id"),
        named.label("named"),
        label.label("label"),
        hidden.label("hidden"),
        score.label("score"),
        func.rank().over(order_by=score.desc()).label("rank"),
        func.row_number().over(order_by=(score.desc(), order_label, Learner.id)).label("position"),
        func.count().over().label("total"),
    ).select_from(Learner)
    if course is not None:
        ranked = ranked.join(CourseMember, CourseMember.learner_id == Learner.id).where(
            CourseMember.course == course
        )
        if section is not None:
            ranked = ranked.where(CourseMember.section == section)
    ranked = ranked.where(Learner.platform == platform).outerjoin(Award, and_(*counted))
    ranked_rows = ranked.group_by(
        Learner.id, Learner.lms_user_id, Learner.display_name, Learner.pseudonym, Learner.leaderboard_opt_out
    ).subquery()

    wanted = ranked_rows.c.position <= size
    if learner is not None:
        wanted = or_(wanted, ranked_rows.c.lms_user_id == learner)
    query = select(ranked_rows).where(wanted).order_by(ranked_rows.c.position)

    with database.read() as session:
        rows = session.execute(query).all()
        if learner is not None and not any(r.lms_user_id == learner for r in rows):
            known = session.scalar(
                select(Learner.id).where(Learner.platform == platform, Learner.lms_user_id == learner)
            )
            if known is None:
                raise UnknownLearner(f"no learner {learner!r} on platform {platform!r}")

    entries: list[Standing] = []
    you: Standing | None = None
    for row in rows:
        is_you = learner is not None and row.lms_user_id == learner
        shown_by_name = is_you or not row.hidden
        standing = Standing(
            rank=int(row.rank),
            name=row.named if is_you else row.label,
            score=int(row.score),
            you=is_you,
            learner=row.lms_user_id if shown_by_name else None,
        )
        if row.position <= size:
            entries.append(standing)
        if is_you:
            you = standing
    total = int(rows[0].total) if rows else 0
    return Leaderboard(platform, course, section, period, metric, since, size, total, entries, you)


class _Keep(Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP


def set_leaderboard_preference(
    database: Database,
    platform: str,
    lms_user_id: str,
    opt_out: bool,
    *,
    actor: str,
    display_name: str | _Keep | None = KEEP,
) -> bool:
    """Opt a learner out of (or back into) being named on leaderboards; optionally set (or clear, with
    None) the name they are shown under. False when the platform has no such learner. The change is in
    the audit log under ``actor``."""
    values: dict[str, Any] = {"leaderboard_opt_out": opt_out}
    if display_name is not KEEP:
        values["display_name"] = display_name
    with database.write() as session:
        learner_id = session.scalar(
            update(Learner)
            .where(Learner.platform == platform, Learner.lms_user_id == lms_user_id)
            .values(**values)
            .returning(Learner.id)
        )
        if learner_id is None:
            return False
        details = {"leaderboard_opt_out": opt_out, "display_name_changed": display_name is not KEEP}
        record_audit(session, actor, "leaderboard_preference", learner_id=learner_id, details=details)
        return True


@dataclass(frozen=True)
class LeaderboardPreference:
    platform: str
    learner: str
    leaderboard_opt_out: bool
    display_name: str | None


def leaderboard_preference(
    database: Database, platform: str, lms_user_id: str
) -> LeaderboardPreference | None:
    with database.read() as session:
        row = session.execute(
            select(Learner.leaderboard_opt_out, Learner.display_name).where(
                Learner.platform == platform, Learner.lms_user_id == lms_user_id
            )
        ).one_or_none()
    if row is None:
        return None
    return LeaderboardPreference(platform, lms_user_id, bool(row.leaderboard_opt_out), row.display_name)
