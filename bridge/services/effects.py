"""Writing what a batch's ledgers decided: progress, awards with their evidence, approvals, points,
course memberships — one ``executemany`` per table, on the session's Core connection."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from bridge.db.models import Approval, Award, CourseMember, Event, Learner
from bridge.db.models import Progress as ProgressRow
from bridge.db.upsert import insert_ignoring_conflicts, upsert
from bridge.domain.aggregates import EventFacts
from bridge.domain.evaluation import Earned
from bridge.services.ledgers import EVENT_COLUMNS, LEARNER_EVENTS, LearnerContext, to_learning_event

EVIDENCE_LIMIT = 100
_EVIDENCE_ORDER = (Event.occurred_at.desc(), Event.id.desc())
_EVIDENCE = (
    select(*EVENT_COLUMNS)
    .where(*LEARNER_EVENTS, Event.occurred_at <= bindparam("until"))
    .order_by(*_EVIDENCE_ORDER)
    .limit(bindparam("limit"))
)
_EVIDENCE_IDS = (
    select(Event.id, Event.kind, Event.occurred_at)
    .where(*LEARNER_EVENTS, Event.occurred_at <= bindparam("until"))
    .order_by(*_EVIDENCE_ORDER)
    .limit(bindparam("limit"))
)


@dataclass(frozen=True, slots=True)
class AwardMade:
    award_id: int
    badge_id: str
    tier: str
    platform: str
    learner: str


class EffectWriter:
    def __init__(self, dialect: str, zone: tzinfo) -> None:
        self._dialect = dialect
        self._zone = zone

    def write_effects(
        self, session: Session, learners: Collection[LearnerContext], now: datetime
    ) -> tuple[list[AwardMade], int]:
        progress_rows, point_rows, award_rows, approval_rows, made_for = [], [], [], [], []
        for learner in learners:
            ledger = learner.ledger
            for badge_id in sorted(ledger.dirty):
                record = ledger.records[badge_id]
                progress = record.progress
                assert progress is not None  # a changed record was worked out by the ledger
                progress_rows.append(
                    {
                        "learner_id": learner.id,
                        "badge_id": badge_id,
                        "criteria_version": record.criteria_version,
                        "state": record.state,
                        "value": progress.value,
                        "target": progress.target,
                        "complete": progress.complete,
                        "saturated": progress.saturated,
                        "tier": progress.tier,
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
                    ProgressRow.__table__,
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
        requirements = [r for group in earned.badge.criteria.groups for r in group if r.kinds]
        filtered = any(r.filter is not None for r in requirements)
        limit = EVIDENCE_LIMIT * (5 if filtered else 1)
        in_batch = [(i, f) for i, f in learner.seen if f.event.occurred_at <= earned.earned_at]
        if earned.event is not None and all(f.event is not earned.event for _, f in in_batch):
            in_batch += [(i, f) for i, f in learner.seen if f.event is earned.event]
        if learner.ledger.first_seen is None:
            stored: Any = ()  # first seen in this batch: every event of theirs is in memory
        else:
            stored = self._stored_evidence(session, learner, kinds, earned.earned_at, filtered, limit)
        candidates: list[tuple[datetime, int, Any]] = [(f.event.occurred_at, i, f) for i, f in in_batch]
        for row in stored:
            facts = EventFacts(to_learning_event(row), self._zone) if filtered else row
            candidates.append((row.occurred_at, row.id, facts))
        candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)
        chosen: list[int] = []
        for _, event_id, facts in candidates:
            kind = facts.event.kind if isinstance(facts, EventFacts) else facts.kind
            if event_id in chosen or kind not in kinds:
                continue
            if filtered and not any(r.accepts(facts) for r in requirements):
                continue
            chosen.append(event_id)
            if len(chosen) == EVIDENCE_LIMIT:
                break
        return chosen

    @staticmethod
    def _stored_evidence(
        session: Session,
        learner: LearnerContext,
        kinds: frozenset[str],
        until: datetime,
        full: bool,
        limit: int,
    ) -> Any:
        platform, lms_user_id = learner.key
        parameters = {"platform": platform, "learner": lms_user_id, "kinds": sorted(kinds), "until": until}
        return session.connection().execute(
            _EVIDENCE if full else _EVIDENCE_IDS, parameters | {"limit": limit}
        )

    def write_course_members(
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
