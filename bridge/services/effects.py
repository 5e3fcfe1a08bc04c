"""Writing what a batch's ledgers decided: progress states and reports, awards with their evidence,
approvals, points, course memberships — one ``executemany`` per table, in the session's transaction (the
rows there are many, on the driver's cursor: see bridge.db.driver).

On PostgreSQL the writes go out in a pipeline (``EffectWriter.pipeline``), and the award evidence of the
whole batch is read at once: the effects of a batch cost about three round trips (the evidence, the new
awards' ids, the rest), whatever their number."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy.orm import Session

from bridge.db.driver import Driver
from bridge.domain.aggregates import EventFacts
from bridge.domain.evaluation import Earned
from bridge.notify.outbox import OutboxWriter, Route
from bridge.services.event_rows import COLUMNS, event_row, learner_events, to_learning_event
from bridge.services.ledgers import LearnerContext, document, to_stored

EVIDENCE_LIMIT = 100
# Each column's PostgreSQL type, for the statements over many rows (see bridge.db.driver.Rows).
_TYPES = {
    "learner_id": "bigint", "badge_id": "text", "tier": "text", "criteria_version": "integer",
    "event_id": "bigint", "course": "text", "earned_at": "timestamptz", "granted_by": "text",
    "reason": "text", "points": "integer", "awarded_at": "timestamptz", "expires_at": "timestamptz",
    "event_ids": "jsonb", "status": "text", "requested_at": "timestamptz", "complete": "boolean",
    "started_at": "timestamptz", "updated_at": "timestamptz", "states": "jsonb", "section": "text",
    "first_seen_at": "timestamptz", "id": "bigint",
}  # fmt: skip
# In the order of the rows write_effects makes.
_APPROVAL_COLUMNS = (
    "learner_id", "badge_id", "tier", "criteria_version", "event_id", "course", "earned_at", "status",
    "requested_at",
)  # fmt: skip
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
    def __init__(
        self,
        dialect: str,
        zone: tzinfo,
        award_routes: Callable[[tuple[str, ...] | None], Sequence[Route]] = lambda channels: (),
        approval_routes: Sequence[Route] = (),
    ) -> None:
        self._zone = zone
        self._driver = driver = Driver(dialect)
        # Each award's notifications and each approval request's alerts, in its own transaction (see
        # bridge.notify.outbox).
        self._outbox = OutboxWriter(driver, award_routes, approval_routes)
        # The rows of these run on the driver's cursor (see bridge.db.driver): a row of states per
        # learner in the batch, and a report per record that completes or changes tier.
        self._upsert_states = driver.insert_rows(
            "learner_states",
            _typed("learner_id", "states", "updated_at"),
            "ON CONFLICT (learner_id) "
            "DO UPDATE SET states = excluded.states, updated_at = excluded.updated_at",
        )
        updated = ", ".join(f"{c} = excluded.{c}" for c in _REPORT_COLUMNS[2:])
        self._upsert_report = driver.insert_rows(
            "progress",
            _typed(*_REPORT_COLUMNS),
            f"ON CONFLICT (learner_id, badge_id) DO UPDATE SET {updated}",
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
        unique = ("learner_id", "badge_id", "tier")
        self._insert_award = driver.insert_rows("awards", _typed(*_AWARD_COLUMNS), key=unique)
        self._insert_approval = driver.insert_rows("approvals", _typed(*_APPROVAL_COLUMNS), key=unique)
        self._update_points = driver.update_rows("learners", _typed("points"), _typed("id"))
        self._add_member = driver.insert_rows(
            "course_members",
            _typed("learner_id", "course", "section", "first_seen_at"),
            "ON CONFLICT DO NOTHING",
        )
        self._set_section = driver.update_rows(
            "course_members", _typed("section"), _typed("learner_id", "course")
        )

    def pipeline(self, session: Session) -> AbstractContextManager[None]:
        """The writes of the block sent without waiting for each, on PostgreSQL (see Driver.pipeline)."""
        return self._driver.pipeline(session)

    def write_effects(
        self, session: Session, learners: Collection[LearnerContext], now: datetime
    ) -> tuple[list[AwardMade], int]:
        state_rows, report_rows, point_rows, approval_rows, made_for = [], [], [], [], []
        award_rows: list[list[Any]] = []
        driver = self._driver
        dumps, at = driver.json, driver.time(now)
        # Most records start at the time of an event of the batch: each time is encoded once.
        times: dict[datetime | None, Any] = {}

        def time(value: datetime | None) -> Any:
            encoded = times.get(value)
            if encoded is None:
                encoded = times[value] = driver.time(value)
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
                    row |= {"earned_at": time(row["earned_at"]), "status": "pending", "requested_at": at}
                    approval_rows.append(tuple(row[column] for column in _APPROVAL_COLUMNS))
                    continue
                row |= {
                    "earned_at": time(row["earned_at"]),
                    "points": earned.points,
                    "awarded_at": at,
                    "expires_at": time(earned.badge.expires_at(now, self._zone)),
                    "event_ids": None,  # the evidence, below
                }
                award_rows.append([row[column] for column in _AWARD_COLUMNS])
                made_for.append((earned, learner))
            if ledger.earned:
                point_rows.append((ledger.points, learner.id))
        with driver.pipeline(session):
            # Every award's evidence, read at once (one round trip with what was sent before it).
            evidence = self._evidence(session, made_for)
            for award_row, event_ids in zip(award_rows, evidence, strict=True):
                award_row[-1] = dumps(event_ids)
            driver.write_rows(session, self._upsert_states, state_rows)
            driver.write_rows(session, self._upsert_report, report_rows)
            ids = driver.insert_returning_ids(session, self._insert_award, award_rows)
            made = [
                AwardMade(award_id, earned.badge.id, earned.tier.name, *learner.key)
                for award_id, (earned, learner) in zip(ids, made_for, strict=True)
            ]
            made_by = [
                (award_id, learner.id, earned.badge.notification_type)
                for award_id, (earned, learner) in zip(ids, made_for, strict=True)
            ]
            self._outbox.awards_made(session, made_by, now)
            if approval_rows:
                approval_ids = driver.insert_returning_ids(session, self._insert_approval, approval_rows)
                requested = [
                    (approval_id, row[0])
                    for approval_id, row in zip(approval_ids, approval_rows, strict=True)
                ]
                self._outbox.approvals_requested(session, requested, now)
            driver.write_rows(session, self._update_points, point_rows)
        for learner in learners:
            learner.ledger.dirty.clear()
            learner.ledger.states_changed = False
            learner.ledger.reported.clear()
            learner.ledger.earned.clear()
        return made, len(approval_rows)

    def _evidence(self, session: Session, made: Sequence[tuple[Earned, LearnerContext]]) -> list[list[int]]:
        """Each award's evidence (see ``_chosen``): the stored candidates of all read at once."""
        reads: list[tuple[str, Sequence[Any]]] = []
        wanted: list[tuple[Earned, LearnerContext, bool] | None] = []
        for earned, learner in made:
            kinds = earned.badge.criteria.kinds
            if not kinds:
                wanted.append(None)
                continue
            requirements = (r for group in earned.badge.criteria.groups for r in group if r.kinds)
            filtered = any(r.filter is not None for r in requirements)
            wanted.append((earned, learner, filtered))
            if learner.ledger.first_seen is not None:  # else first seen in this batch: all in memory
                limit = EVIDENCE_LIMIT * (5 if filtered else 1)
                reads.append(self._stored_evidence(learner, kinds, earned.earned_at, filtered, limit))
        stored = iter(self._driver.fetch_each(session, reads))
        chosen = []
        for each in wanted:
            if each is None:
                chosen.append([])
                continue
            earned, learner, filtered = each
            rows = next(stored) if learner.ledger.first_seen is not None else ()
            chosen.append(self._chosen(learner, earned, filtered, rows))
        return chosen

    def _chosen(
        self, learner: LearnerContext, earned: Earned, filtered: bool, stored: Sequence[Any]
    ) -> list[int]:
        """The events that earned it, latest first: those its requirements accept, until it was earned."""
        kinds = earned.badge.criteria.kinds
        requirements = [r for group in earned.badge.criteria.groups for r in group if r.kinds]
        in_batch = [(i, f) for i, f in learner.seen if f.event.occurred_at <= earned.earned_at]
        if earned.event is not None and all(f.event is not earned.event for _, f in in_batch):
            in_batch += [(i, f) for i, f in learner.seen if f.event is earned.event]
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
        self, learner: LearnerContext, kinds: frozenset[str], until: datetime, full: bool, limit: int
    ) -> tuple[str, Sequence[Any]]:
        """The read of an award's stored candidates: (statement, parameters)."""
        driver = self._driver
        platform, lms_user_id = learner.key
        of_learner = (platform, lms_user_id, driver.values(sorted(kinds)), driver.time(until))
        if full:
            return self._evidence_rows, (*of_learner, limit)
        return self._evidence_ids, (*of_learner, platform, lms_user_id, limit)

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
        self._driver.write_rows(
            session,
            self._add_member,
            [(lid, course, section, at) for (lid, course), section in members.items()],
        )
        self._driver.write_rows(
            session,
            self._set_section,
            [(section, lid, course) for (lid, course), section in members.items() if section is not None],
        )


def _typed(*columns: str) -> list[tuple[str, str]]:
    return [(column, _TYPES[column]) for column in columns]


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
