"""Turning a batch of stored events into their effects: progress, awards, approvals, points, courses.

Runs inside the worker's transaction, so the effects commit together with the events being marked done.
A batch costs a fixed number of statements, whatever its size: the learners are locked and their records
read in one go, evaluated in memory by the domain's ledgers, and what changed is written back with one
``executemany`` per table (on the session's Core connection: the ORM's bulk paths add work and rules
these plain rows do not need).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, tuple_, update
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Approval, Award, CourseMember, Event, Learner, Progress
from bridge.db.pseudonyms import new_pseudonym
from bridge.db.upsert import insert_ignoring_conflicts, upsert
from bridge.domain.aggregates import EventFacts
from bridge.domain.evaluation import AwardPolicy, BadgeRecord, Earned, LearnerLedger
from bridge.domain.events import LearningEvent
from bridge.domain.rules import ActiveBadge, RuleBook
from bridge.services.badges import RuleBookCache
from bridge.settings import Settings

EVIDENCE_LIMIT = 100
EVENT_COLUMNS = (
    Event.id, Event.platform, Event.event_key, Event.kind, Event.learner, Event.course, Event.item,
    Event.score, Event.occurred_at, Event.data,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AwardMade:
    award_id: int
    badge_id: str
    tier: str
    platform: str
    learner: str


@dataclass
class BatchResult:
    failures: dict[int, Exception]  # event id -> why it could not be evaluated
    awards: list[AwardMade]
    approvals: int = 0


def to_learning_event(row: Any) -> LearningEvent:
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


def event_rows(session: Session, ids: Sequence[int]) -> list[Row[Any]]:
    return list(session.execute(select(*EVENT_COLUMNS).where(Event.id.in_(ids)).order_by(Event.id)))


@dataclass
class LearnerContext:
    id: int
    key: tuple[str, str]
    ledger: LearnerLedger
    seen: list[tuple[int, EventFacts]]  # this batch's events of the learner evaluated so far, with ids


class EventProcessor:
    """The processing pipeline the worker runs for each claimed batch."""

    def __init__(self, database: Database, settings: Settings, rules: RuleBookCache) -> None:
        self._dialect = database.engine.dialect.name
        self._settings = settings
        self._zone = settings.zone
        self._rules = rules
        self._policy = AwardPolicy(settings.enable_achievements, settings.points_per_badge)

    def process(self, session: Session, rows: Sequence[Any]) -> BatchResult:
        """Evaluate ``rows`` (event rows, in the order given) and write their effects to the session."""
        rules = self._rules.current(session)
        facts = [(row.id, EventFacts(to_learning_event(row), self._zone)) for row in rows]
        keys = sorted({(f.event.platform, f.event.learner) for _, f in facts})
        learners = self.lock_learners(session, keys, rules, {f.event.kind for _, f in facts})
        failures: dict[int, Exception] = {}
        now = utcnow()
        for event_id, event_facts in facts:
            learner = learners[(event_facts.event.platform, event_facts.event.learner)]
            snapshot = learner.ledger.snapshot()
            try:
                learner.ledger.observe(event_facts, rules, partial(self._history, session, learner))
            except Exception as error:  # this event's evaluation only; its effects are dropped
                learner.ledger.restore(snapshot)
                failures[event_id] = error
                continue
            learner.seen.append((event_id, event_facts))
        self._write_course_members(session, learners, [f for i, f in facts if i not in failures], now)
        awards, approvals = self.write_effects(session, learners.values(), now)
        return BatchResult(failures, awards, approvals)

    def settle(self, session: Session, learner_ids: Sequence[int]) -> BatchResult:
        """Award what the learners completed but were not awarded (achievements were off, say)."""
        rules = self._rules.current(session)
        rows = session.execute(
            select(Learner.platform, Learner.lms_user_id)
            .where(Learner.id.in_(learner_ids))
            .order_by(Learner.platform, Learner.lms_user_id)
        ).all()
        learners = self.lock_learners(session, [tuple(r) for r in rows], rules, set(), create=False)
        now = utcnow()
        for learner in learners.values():
            learner.ledger.settle(rules, now)
        awards, approvals = self.write_effects(session, learners.values(), now)
        return BatchResult({}, awards, approvals)

    # --- reading ---------------------------------------------------------------------------------

    def lock_learners(
        self,
        session: Session,
        keys: Sequence[tuple[str, str]],
        rules: RuleBook,
        kinds: set[str],
        *,
        create: bool = True,
    ) -> dict[tuple[str, str], LearnerContext]:
        """Each learner's row, locked, with the records the batch will touch.

        The learner row serialises evaluation per learner across workers (PostgreSQL). The rows are
        locked in (platform, learner) order, so two workers take these locks in the same order.
        """
        new: set[tuple[str, str]] = set()
        if create and keys:
            known = session.execute(
                select(Learner.platform, Learner.lms_user_id).where(
                    tuple_(Learner.platform, Learner.lms_user_id).in_(keys)
                )
            )
            new = set(keys) - {(row.platform, row.lms_user_id) for row in known}
        if new:
            session.connection().execute(
                insert_ignoring_conflicts(self._dialect, Learner.__table__),
                [
                    {
                        "platform": p,
                        "lms_user_id": u,
                        "points": 0,
                        "pseudonym": new_pseudonym(),
                        "created_at": utcnow(),
                    }
                    for p, u in sorted(new)
                ],
            )
        query = (
            select(Learner.id, Learner.platform, Learner.lms_user_id, Learner.points)
            .where(tuple_(Learner.platform, Learner.lms_user_id).in_(keys))
            .order_by(Learner.platform, Learner.lms_user_id)
        )
        if self._dialect != "sqlite":
            query = query.with_for_update()
        found = session.execute(query).all() if keys else []
        ids = [row.id for row in found]
        badge_ids = {b.id for kind in kinds for b in rules.for_kind(kind)} | {b.id for b in rules.on_points}
        if not kinds:  # settling: every badge
            badge_ids = set(rules.by_id)
        points = {row.id: row.points for row in found}
        records: dict[int, dict[str, BadgeRecord]] = defaultdict(dict)
        for progress in session.execute(
            select(
                Progress.learner_id,
                Progress.badge_id,
                Progress.criteria_version,
                Progress.state,
                Progress.started_at,
            ).where(Progress.learner_id.in_(ids), Progress.badge_id.in_(badge_ids))
        ):
            record = _record(rules, progress, points[progress.learner_id])
            if record is not None:
                records[progress.learner_id][progress.badge_id] = record
        awarded: dict[int, set[tuple[str, str]]] = defaultdict(set)
        held: dict[int, set[str]] = defaultdict(set)
        for award in session.execute(
            select(Award.learner_id, Award.badge_id, Award.tier, Award.revoked_at).where(
                Award.learner_id.in_(ids)
            )
        ):
            awarded[award.learner_id].add((award.badge_id, award.tier))
            if award.revoked_at is None:
                held[award.learner_id].add(award.badge_id)
        requested: dict[int, set[tuple[str, str]]] = defaultdict(set)
        for approval in session.execute(
            select(Approval.learner_id, Approval.badge_id, Approval.tier).where(Approval.learner_id.in_(ids))
        ):
            requested[approval.learner_id].add((approval.badge_id, approval.tier))
        learners = {}
        for row in found:
            ledger = LearnerLedger(
                points=row.points,
                records=records[row.id],
                awarded=awarded[row.id],
                held=held[row.id],
                requested=requested[row.id],
                policy=self._policy,
                has_history=(row.platform, row.lms_user_id) not in new,
                load=lambda badge_id, learner=row: self._load_record(session, rules, learner, badge_id),
            )
            learners[(row.platform, row.lms_user_id)] = LearnerContext(
                row.id, (row.platform, row.lms_user_id), ledger, []
            )
        return learners

    @staticmethod
    def _load_record(session: Session, rules: RuleBook, learner: Any, badge_id: str) -> BadgeRecord | None:
        row = session.execute(
            select(Progress.badge_id, Progress.criteria_version, Progress.state, Progress.started_at).where(
                Progress.learner_id == learner.id, Progress.badge_id == badge_id
            )
        ).one_or_none()
        return None if row is None else _record(rules, row, learner.points)

    def _history(self, session: Session, learner: LearnerContext, badge: ActiveBadge) -> list[EventFacts]:
        """The learner's events before the current one that ``badge`` listens to, oldest first."""
        platform, lms_user_id = learner.key
        stored = session.execute(
            select(*EVENT_COLUMNS)
            .where(
                Event.platform == platform,
                Event.learner == lms_user_id,
                Event.kind.in_(badge.criteria.kinds),
                Event.status == "done",
            )
            .order_by(Event.occurred_at, Event.id)
        )
        past = [EventFacts(to_learning_event(row), self._zone) for row in stored]
        past += [f for _, f in learner.seen if f.event.kind in badge.criteria.kinds]
        return past

    # --- writing ---------------------------------------------------------------------------------

    def write_effects(
        self, session: Session, learners: Collection[LearnerContext], now: datetime
    ) -> tuple[list[AwardMade], int]:
        progress_rows, point_rows, award_rows, approval_rows, made_for = [], [], [], [], []
        for learner in learners:
            ledger = learner.ledger
            for badge_id in sorted(ledger.dirty):
                record = ledger.records[badge_id]
                progress_rows.append(
                    {
                        "learner_id": learner.id,
                        "badge_id": badge_id,
                        "criteria_version": record.criteria_version,
                        "state": record.state,
                        "value": record.progress.value,
                        "target": record.progress.target,
                        "complete": record.progress.complete,
                        "tier": record.progress.tier,
                        "started_at": record.started_at,
                        "updated_at": now,
                    }
                )
            for earned in ledger.earned:
                row = _earned_row(learner, earned)
                if earned.needs_approval:
                    del row["granted_by"], row["reason"]
                    approval_rows.append(row | {"status": "pending", "requested_at": now})
                    continue
                award_rows.append(
                    row
                    | {
                        "points": earned.points,
                        "awarded_at": now,
                        "expires_at": earned.badge.expires_at(now, self._zone),
                        "event_ids": self._evidence(session, learner, earned),
                    }
                )
                made_for.append((earned, learner))
            if ledger.earned:
                point_rows.append({"learner": learner.id, "new_points": ledger.points})
        if progress_rows:
            session.connection().execute(
                upsert(
                    self._dialect,
                    Progress.__table__,
                    ["learner_id", "badge_id"],
                    exclude={"learner_id", "badge_id"},
                ),
                progress_rows,
            )
        made: list[AwardMade] = []
        if award_rows:
            ids = (
                session.connection()
                .execute(insert(Award).returning(Award.id, sort_by_parameter_order=True), award_rows)
                .scalars()
            )
            for award_id, (earned, learner) in zip(ids, made_for, strict=True):
                made.append(AwardMade(award_id, earned.badge.id, earned.tier.name, *learner.key))
        if approval_rows:
            session.connection().execute(insert(Approval), approval_rows)
        if point_rows:
            session.connection().execute(
                update(Learner.__table__)
                .where(Learner.__table__.c.id == bindparam("learner"))
                .values(points=bindparam("new_points")),
                point_rows,
            )
        for learner in learners:
            learner.ledger.dirty.clear()
            learner.ledger.earned.clear()
        return made, len(approval_rows)

    def _evidence(self, session: Session, learner: LearnerContext, earned: Earned) -> list[int]:
        """The events that earned it, latest first: those its requirements accept, until it was earned."""
        kinds = earned.badge.criteria.kinds
        if not kinds:
            return []
        platform, lms_user_id = learner.key
        requirements = [r for group in earned.badge.criteria.groups for r in group if r.kinds]
        stored = session.execute(
            select(*EVENT_COLUMNS)
            .where(
                Event.platform == platform,
                Event.learner == lms_user_id,
                Event.kind.in_(kinds),
                Event.status == "done",
                Event.occurred_at <= earned.earned_at,
            )
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(EVIDENCE_LIMIT * 5)
        )
        candidates = [(row.id, EventFacts(to_learning_event(row), self._zone)) for row in stored]
        candidates += [(i, f) for i, f in learner.seen if f.event.occurred_at <= earned.earned_at]
        candidates.sort(key=lambda c: (c[1].event.occurred_at, c[0]), reverse=True)
        chosen = []
        for event_id, facts in candidates:
            if event_id not in chosen and any(r.accepts(facts) for r in requirements):
                chosen.append(event_id)
                if len(chosen) == EVIDENCE_LIMIT:
                    break
        return chosen

    def _write_course_members(
        self,
        session: Session,
        learners: dict[tuple[str, str], LearnerContext],
        facts: list[EventFacts],
        now: datetime,
    ) -> None:
        """Every course a learner has an event in; the section where an event names one (enrolments do)."""
        members: dict[tuple[int, str], str | None] = {}
        for f in facts:
            if f.event.course is None:
                continue
            key = (learners[(f.event.platform, f.event.learner)].id, f.event.course)
            section = f.event.data.get("section")
            if isinstance(section, str | int) and not isinstance(section, bool):
                members[key] = str(section)
            else:
                members.setdefault(key, None)
        if not members:
            return
        session.connection().execute(
            insert_ignoring_conflicts(self._dialect, CourseMember.__table__),
            [
                {"learner_id": lid, "course": course, "section": section, "first_seen_at": now}
                for (lid, course), section in members.items()
            ],
        )
        sections = [
            {"lid": lid, "c": course, "s": section}
            for (lid, course), section in members.items()
            if section is not None
        ]
        if sections:
            session.connection().execute(
                update(CourseMember.__table__)
                .where(
                    CourseMember.__table__.c.learner_id == bindparam("lid"),
                    CourseMember.__table__.c.course == bindparam("c"),
                )
                .values(section=bindparam("s")),
                sections,
            )


def _record(rules: RuleBook, row: Any, points: int) -> BadgeRecord | None:
    """A stored progress row as the ledger sees it, or None for a badge no longer active.

    Progress is derived from the state, never trusted from the row, so it always matches the criteria
    of the state's version (the ledger replays when the version has moved on).
    """
    badge = rules.by_id.get(row.badge_id)
    if badge is None:
        return None
    return BadgeRecord(
        row.criteria_version, row.state, badge.criteria.progress(row.state, points), row.started_at
    )


def _earned_row(learner: LearnerContext, earned: Earned) -> dict[str, Any]:
    event_id = None
    if earned.event is not None:
        event_id = next(i for i, f in learner.seen if f.event is earned.event)
    return {
        "learner_id": learner.id,
        "badge_id": earned.badge.id,
        "tier": earned.tier.name,
        "criteria_version": earned.badge.criteria_version,
        "event_id": event_id,
        "course": earned.event.course if earned.event is not None else None,
        "earned_at": earned.earned_at,
        "granted_by": earned.granted_by,
        "reason": earned.reason,
    }
