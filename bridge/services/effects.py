"""Writing what a batch's ledgers decided: progress states and reports, awards with their evidence,
approvals, points, course memberships — one ``executemany`` per table, in the session's transaction (the
rows there are many, on the driver's cursor: see bridge.db.driver)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from bridge.db.driver import Driver
from bridge.db.models import Approval
from bridge.domain.aggregates import EventFacts
from bridge.domain.evaluation import Earned
from bridge.notify.outbox import OutboxWriter, Route
from bridge.services.event_rows import COLUMNS, event_row, learner_events, to_learning_event
from bridge.services.ledgers import LearnerContext, document, to_stored

EVIDENCE_LIMIT = 100
# In the order of the rows write_effects makes.
_AWARD_COLUMNS = (
    "learner_id", "badge_id", "tier", "criteria_version", "event_id", "course", "earned_at", "granted_by",
    "reason", "points", "awarded_at", "expires_at", "event_ids",
)  # fmt: skip
_REPORT_COLUMNS = (
    "learner_id", "badge_id", "criteria_version", "complete", "tier", "started_at", "updated_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AwardMade:
    award_id: int
    badge_id: str
    tier: str
    platform: str
    learner: str


class EffectWriter:
    def __init__(self, dialect: str, zone: tzinfo, award_routes: Sequence[Route] = ()) -> None:
        self._zone = zone
        self._driver = driver = Driver(dialect)
        # Each award's notifications, in its own transaction (see bridge.notify.outbox).
        self._outbox = OutboxWriter(driver, award_routes)
        # The rows of these run on the driver's cursor (see bridge.db.driver): a row of states per
        # learner in the batch, and a report per record that completes or changes tier.
        self._upsert_states = (
            f"INSERT INTO learner_states (learner_id, states, updated_at) "
            f"VALUES ({driver.mark}, {driver.json_mark}, {driver.mark}) ON CONFLICT (learner_id) "
            "DO UPDATE SET states = excluded.states, updated_at = excluded.updated_at"
        )
        updated = ", ".join(f"{c} = excluded.{c}" for c in _REPORT_COLUMNS[2:])
        self._upsert_report = (
            f"INSERT INTO progress ({', '.join(_REPORT_COLUMNS)}) "
            f"VALUES ({driver.marks(len(_REPORT_COLUMNS))}) "
            f"ON CONFLICT (learner_id, badge_id) DO UPDATE SET {updated}"
        )
        # Latest first, up to the time of the award: what earned it (see _evidence).
        mark = driver.mark
        order = f"ORDER BY occurred_at DESC, id DESC LIMIT {mark}"
        self._evidence_rows = (
            f"SELECT {COLUMNS} FROM events WHERE {learner_events(driver)} AND occurred_at <= {mark} {order}"
        )
        # From the learner history index alone (kind and time are in it, the id is the row's): rather
        # than each row's status, the learner's few open events, from their own index, are left out.
        self._evidence_ids = (
            f"SELECT id, kind, occurred_at FROM events WHERE platform = {mark} AND learner = {mark} "
            f"AND {driver.in_list('kind')} AND occurred_at <= {mark} AND id NOT IN (SELECT id FROM "
            f"events WHERE platform = {mark} AND learner = {mark} AND status != 'done') {order}"
        )
        self._insert_award = (
            f"INSERT INTO awards ({', '.join(_AWARD_COLUMNS)}) VALUES ("
            + ", ".join(driver.json_mark if c == "event_ids" else driver.mark for c in _AWARD_COLUMNS)
            + ")"
        )
        self._update_points = f"UPDATE learners SET points = {driver.mark} WHERE id = {driver.mark}"
        self._add_member = (
            f"INSERT INTO course_members (learner_id, course, section, first_seen_at) "
            f"VALUES ({driver.marks(4)}) ON CONFLICT DO NOTHING"
        )
        self._set_section = (
            f"UPDATE course_members SET section = {driver.mark} "
            f"WHERE learner_id = {driver.mark} AND course = {driver.mark}"
        )

    def write_effects(
        self, session: Session, learners: Collection[LearnerContext], now: datetime
    ) -> tuple[list[AwardMade], int]:
        state_rows, report_rows, point_rows, award_rows, approval_rows, made_for = [], [], [], [], [], []
        dumps, at = self._driver.json, self._driver.time(now)
        # Most records start at the time of an event of the batch: each time is encoded once.
        times: dict[datetime | None, Any] = {}

        def time(value: datetime | None) -> Any:
            encoded = times.get(value)
            if encoded is None:
                encoded = times[value] = self._driver.time(value)
            return encoded

        for learner in learners:
            ledger = learner.ledger
            if ledger.dirty or ledger.states_changed:
                for badge_id in ledger.dirty:
                    learner.stored[badge_id] = to_stored(ledger.records[badge_id])
                doc = document(learner.stored, ledger.states, ledger.since)
                state_rows.append((learner.id, dumps(doc), at))
            for badge_id in sorted(ledger.reported):
                record = ledger.records[badge_id]
                report_rows.append(
                    (
                        learner.id, badge_id, record.criteria_version, record.complete, record.tier,
                        time(record.started_at), at,
                    )
                )  # fmt: skip
            for earned in ledger.earned:
                row = _earned_row(learner, earned)
                if earned.needs_approval:
                    del row["granted_by"], row["reason"]
                    approval_rows.append(row | {"status": "pending", "requested_at": now})
                    continue
                row |= {
                    "earned_at": time(row["earned_at"]),
                    "points": earned.points,
                    "awarded_at": at,
                    "expires_at": time(earned.badge.expires_at(now, self._zone)),
                    "event_ids": dumps(self._evidence(session, learner, earned)),
                }
                award_rows.append(tuple(row[column] for column in _AWARD_COLUMNS))
                made_for.append((earned, learner))
            if ledger.earned:
                point_rows.append((ledger.points, learner.id))
        self._driver.execute_many(session, self._upsert_states, state_rows)
        self._driver.execute_many(session, self._upsert_report, report_rows)
        ids = self._driver.insert_returning_ids(session, self._insert_award, award_rows)
        made = [
            AwardMade(award_id, earned.badge.id, earned.tier.name, *learner.key)
            for award_id, (earned, learner) in zip(ids, made_for, strict=True)
        ]
        made_by = [(award_id, learner.id) for award_id, (_, learner) in zip(ids, made_for, strict=True)]
        self._outbox.awards_made(session, made_by, now)
        if approval_rows:
            session.connection().execute(insert(Approval), approval_rows)
        self._driver.execute_many(session, self._update_points, point_rows)
        for learner in learners:
            learner.ledger.dirty.clear()
            learner.ledger.states_changed = False
            learner.ledger.reported.clear()
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
        chosen: dict[int, None] = {}  # in order, and quick to look up
        for event_id, facts in self._latest_first(in_batch, stored, filtered):
            kind = facts.event.kind if isinstance(facts, EventFacts) else facts
            if event_id in chosen or kind not in kinds:
                continue
            if filtered and not any(r.accepts(facts) for r in requirements):
                continue
            chosen[event_id] = None
            if len(chosen) == EVIDENCE_LIMIT:
                break
        return list(chosen)

    def _latest_first(
        self, in_batch: list[tuple[int, EventFacts]], stored: Sequence[Any], filtered: bool
    ) -> Iterator[tuple[int, EventFacts | str]]:
        """(id, facts, or the kind alone) of this batch's and the stored candidates, latest first.

        The stored rows come latest first; they are read (their time, or in full when a filter needs
        them) only as far as they are looked at: an award looks at up to ``EVIDENCE_LIMIT`` of them.
        """
        batch = sorted(((f.event.occurred_at, i, f) for i, f in in_batch), key=_time_and_id, reverse=True)
        rows = iter(stored)
        head: tuple[datetime, int, EventFacts | str] | None = None
        for at, event_id, facts in batch:
            while True:
                if head is None:
                    row = next(rows, None)
                    if row is None:
                        break
                    head = self._stored_candidate(row, filtered)
                if _time_and_id(head) <= (at, event_id):
                    break
                yield head[1], head[2]
                head = None
            yield event_id, facts
        if head is not None:
            yield head[1], head[2]
        for row in rows:  # later than none of this batch's: no time to read
            yield (row[0], self._stored_candidate(row, True)[2]) if filtered else (row[0], row[1])

    def _stored_candidate(self, row: Any, filtered: bool) -> tuple[datetime, int, EventFacts | str]:
        if filtered:  # the whole event, for the filter
            facts = EventFacts(to_learning_event(event_row(self._driver, row)), self._zone)
            return facts.event.occurred_at, row[0], facts
        return self._driver.read_time(row[2]), row[0], row[1]  # id, kind, occurred_at

    def _stored_evidence(
        self,
        session: Session,
        learner: LearnerContext,
        kinds: frozenset[str],
        until: datetime,
        full: bool,
        limit: int,
    ) -> list[Any]:
        driver = self._driver
        platform, lms_user_id = learner.key
        of_learner = (platform, lms_user_id, driver.values(sorted(kinds)), driver.time(until))
        if full:
            return driver.fetch_all(session, self._evidence_rows, (*of_learner, limit))
        return driver.fetch_all(session, self._evidence_ids, (*of_learner, platform, lms_user_id, limit))

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
        at = self._driver.time(now)
        self._driver.execute_many(
            session,
            self._add_member,
            [(lid, course, section, at) for (lid, course), section in members.items()],
        )
        self._driver.execute_many(
            session,
            self._set_section,
            [(section, lid, course) for (lid, course), section in members.items() if section is not None],
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


def _time_and_id(candidate: tuple[datetime, int, Any]) -> tuple[datetime, int]:
    return candidate[0], candidate[1]
