"""Turning a batch of stored events into their effects: progress, awards, approvals, points, courses.

Runs inside the worker's transaction, so the effects commit together with the events being marked done.
A batch costs a fixed number of statements, whatever its size: the learners are locked and their records
read in one go, evaluated in memory by the domain's ledgers, and what changed is written back with one
``executemany`` per table. Every statement runs on the session's Core connection: the ORM's machinery
costs more than these plain rows need.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Text, bindparam, case, cast, insert, null, select, tuple_, update
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Approval, Award, CourseMember, Event, Learner
from bridge.db.models import Progress as ProgressRow
from bridge.db.pseudonyms import new_pseudonym
from bridge.db.upsert import insert_ignoring_conflicts, upsert
from bridge.domain.aggregates import EventFacts
from bridge.domain.criteria import Progress
from bridge.domain.evaluation import AwardPolicy, BadgeRecord, Earned, LearnerLedger
from bridge.domain.events import LearningEvent
from bridge.domain.rules import ActiveBadge, RuleBook
from bridge.services.badges import RuleBookCache
from bridge.settings import Settings

EVIDENCE_LIMIT = 100
_RECORD_QUERY = select(
    ProgressRow.learner_id,
    ProgressRow.badge_id,
    ProgressRow.criteria_version,
    # As text, decoded only for the rows wanted; a saturated row's state is not even read (see _record).
    case((ProgressRow.saturated, null()), else_=cast(ProgressRow.state, Text)).label("state"),
    ProgressRow.started_at,
    ProgressRow.value,
    ProgressRow.target,
    ProgressRow.tier,
)
EVENT_COLUMNS = (
    Event.id, Event.platform, Event.event_key, Event.kind, Event.learner, Event.course, Event.item,
    Event.score, Event.occurred_at, Event.data,
)  # fmt: skip

# Statements built once with bound parameters: building a statement costs more than running these.
_LEARNER_KEYS = tuple_(Learner.platform, Learner.lms_user_id)
_KNOWN_LEARNERS = select(Learner.platform, Learner.lms_user_id).where(
    _LEARNER_KEYS.in_(bindparam("keys", expanding=True))
)
_LEARNERS = (
    select(Learner.id, Learner.platform, Learner.lms_user_id, Learner.points, Learner.created_at)
    .where(_LEARNER_KEYS.in_(bindparam("keys", expanding=True)))
    .order_by(Learner.platform, Learner.lms_user_id)
)
_LEARNERS_LOCKED = _LEARNERS.with_for_update()
_AWARDS_OF = select(Award.learner_id, Award.badge_id, Award.tier, Award.revoked_at).where(
    Award.learner_id.in_(bindparam("ids", expanding=True))
)
_APPROVALS_OF = select(Approval.learner_id, Approval.badge_id, Approval.tier).where(
    Approval.learner_id.in_(bindparam("ids", expanding=True))
)
_RECORDS_OF = _RECORD_QUERY.where(
    ProgressRow.learner_id.in_(bindparam("ids", expanding=True)),
    ProgressRow.badge_id.in_(bindparam("badges", expanding=True)),
)
_LEARNER_EVENTS = (
    Event.platform == bindparam("platform"),
    Event.learner == bindparam("learner"),
    Event.kind.in_(bindparam("kinds", expanding=True)),
    Event.status == "done",
)
_HISTORY = select(*EVENT_COLUMNS).where(*_LEARNER_EVENTS).order_by(Event.occurred_at, Event.id)
_EVIDENCE_ORDER = (Event.occurred_at.desc(), Event.id.desc())
_EVIDENCE = (
    select(*EVENT_COLUMNS)
    .where(*_LEARNER_EVENTS, Event.occurred_at <= bindparam("until"))
    .order_by(*_EVIDENCE_ORDER)
    .limit(bindparam("limit"))
)
_EVIDENCE_IDS = (
    select(Event.id, Event.kind, Event.occurred_at)
    .where(*_LEARNER_EVENTS, Event.occurred_at <= bindparam("until"))
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
        # Every worker reloads its rule book within rules_refresh_seconds; the rest is clock skew.
        self._rules_lag = timedelta(seconds=2 * settings.worker.rules_refresh_seconds + 60)

    def process(self, session: Session, rows: Sequence[Any]) -> BatchResult:
        """Evaluate ``rows`` (event rows, in the order given) and write their effects to the session."""
        rules = self._rules.current(session)
        facts = [(row.id, EventFacts(to_learning_event(row), self._zone)) for row in rows]
        keys = sorted({(f.event.platform, f.event.learner) for _, f in facts})
        kinds: dict[tuple[str, str], set[str]] = defaultdict(set)
        for _, f in facts:
            kinds[f.event.platform, f.event.learner].add(f.event.kind)
        learners = self.lock_learners(session, keys, rules, kinds)
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
        rows = (
            session.connection()
            .execute(
                select(Learner.platform, Learner.lms_user_id)
                .where(Learner.id.in_(learner_ids))
                .order_by(Learner.platform, Learner.lms_user_id)
            )
            .all()
        )
        learners = self.lock_learners(session, [tuple(r) for r in rows], rules, None, create=False)
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
        kinds: Mapping[tuple[str, str], set[str]] | None,
        *,
        create: bool = True,
    ) -> dict[tuple[str, str], LearnerContext]:
        """Each learner's row, locked, with the records the batch will touch.

        ``kinds``: the event kinds each learner has in the batch; None to read every record (settling).

        The learner row serialises evaluation per learner across workers (PostgreSQL). The rows are
        locked in (platform, learner) order, so two workers take these locks in the same order.
        """
        new: set[tuple[str, str]] = set()
        if create and keys:
            known = session.connection().execute(_KNOWN_LEARNERS, {"keys": list(keys)})
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
        query = _LEARNERS if self._dialect == "sqlite" else _LEARNERS_LOCKED
        found = session.connection().execute(query, {"keys": list(keys)}).all() if keys else []
        ids = [row.id for row in found]
        wanted = {
            row.id: self._wanted(rules, None if kinds is None else kinds[row.platform, row.lms_user_id])
            for row in found
        }
        records = self._read_records(session, rules, found, wanted)
        awarded: dict[int, set[tuple[str, str]]] = defaultdict(set)
        held: dict[int, set[str]] = defaultdict(set)
        for award in session.connection().execute(_AWARDS_OF, {"ids": ids}):
            awarded[award.learner_id].add((award.badge_id, award.tier))
            if award.revoked_at is None:
                held[award.learner_id].add(award.badge_id)
        requested: dict[int, set[tuple[str, str]]] = defaultdict(set)
        for approval in session.connection().execute(_APPROVALS_OF, {"ids": ids}):
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
                first_seen=None if (row.platform, row.lms_user_id) in new else row.created_at,
                rules_lag=self._rules_lag,
                load=lambda badge_id, learner=row: (
                    None
                    if badge_id in wanted[learner.id]
                    else self._load_record(session, rules, learner, badge_id)
                ),
            )
            learners[(row.platform, row.lms_user_id)] = LearnerContext(
                row.id, (row.platform, row.lms_user_id), ledger, []
            )
        return learners

    @staticmethod
    def _wanted(rules: RuleBook, kinds: set[str] | None) -> set[str]:
        """The records a learner's events will touch: their kinds' badges, dependants, points badges.

        Rows not found among these do not exist; any other record is read when first needed.
        """
        if kinds is None:
            return set(rules.by_id)
        wanted = {b.id for kind in kinds for b in rules.for_kind(kind)} | {b.id for b in rules.on_points}
        return wanted | {d.id for badge_id in list(wanted) for d in rules.dependants(badge_id)}

    def _read_records(
        self, session: Session, rules: RuleBook, learners: Sequence[Any], wanted: Mapping[int, set[str]]
    ) -> dict[int, dict[str, BadgeRecord]]:
        records: dict[int, dict[str, BadgeRecord]] = defaultdict(dict)
        if not learners:
            return records
        # One query per set of badges wanted (learners with the same event kinds want the same), by
        # learner and badge separately, each on the primary key.
        alike: dict[frozenset[str], list[int]] = defaultdict(list)
        for learner_id, badges in wanted.items():
            alike[frozenset(badges)].append(learner_id)
        for badges, learner_ids in alike.items():
            rows = session.connection().execute(_RECORDS_OF, {"ids": learner_ids, "badges": sorted(badges)})
            for row in rows:
                record = _record(rules, row)
                if record is not None:
                    records[row.learner_id][row.badge_id] = record
        return records

    @staticmethod
    def _load_record(session: Session, rules: RuleBook, learner: Any, badge_id: str) -> BadgeRecord | None:
        row = (
            session.connection()
            .execute(_RECORDS_OF, {"ids": [learner.id], "badges": [badge_id]})
            .one_or_none()
        )
        return None if row is None else _record(rules, row)

    def _history(self, session: Session, learner: LearnerContext, badge: ActiveBadge) -> list[EventFacts]:
        """The learner's events before the current one that ``badge`` listens to, oldest first."""
        platform, lms_user_id = learner.key
        stored = session.connection().execute(
            _HISTORY, {"platform": platform, "learner": lms_user_id, "kinds": sorted(badge.criteria.kinds)}
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


def _record(rules: RuleBook, row: Any) -> BadgeRecord | None:
    """A stored progress row as the ledger sees it, or None for a badge no longer active.

    Progress is derived from the state (by the ledger, when needed), never trusted from the row, so it
    always matches the criteria of the state's version (the ledger replays when the version has moved
    on) — except for a saturated row of the current version, whose state is not even read: nothing can
    change it.
    """
    badge = rules.by_id.get(row.badge_id)
    if badge is None:
        return None
    if row.state is None and row.criteria_version == badge.criteria_version:
        tiers = badge.criteria.tiers
        progress = Progress(row.value, row.target, True, (), tier=row.tier, reached=tiers, saturated=True)
        return BadgeRecord(row.criteria_version, {}, progress, row.started_at, saturated=True)
    state = {} if row.state is None else json.loads(row.state)
    return BadgeRecord(row.criteria_version, state, None, row.started_at)


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
