"""Reading learners for evaluation: their rows locked, their progress records, their history.

Every statement is built once with bound parameters and runs on the session's Core connection: building a
statement, or the ORM's machinery, costs more than these plain rows need.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import Any

from sqlalchemy import Text, bindparam, case, cast, null, select, tuple_
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.models import Approval, Award, Event, Learner
from bridge.db.models import Progress as ProgressRow
from bridge.db.pseudonyms import new_pseudonym
from bridge.db.upsert import insert_ignoring_conflicts
from bridge.domain.aggregates import EventFacts
from bridge.domain.criteria import Progress
from bridge.domain.evaluation import AwardPolicy, BadgeRecord, LearnerLedger
from bridge.domain.events import LearningEvent
from bridge.domain.rules import ActiveBadge, RuleBook

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
LEARNER_EVENTS = (
    Event.platform == bindparam("platform"),
    Event.learner == bindparam("learner"),
    Event.kind.in_(bindparam("kinds", expanding=True)),
    Event.status == "done",
)
_HISTORY = select(*EVENT_COLUMNS).where(*LEARNER_EVENTS).order_by(Event.occurred_at, Event.id)


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


class LedgerReader:
    """Loads each learner of a batch into a ledger, with the learner's row locked."""

    def __init__(self, dialect: str, zone: tzinfo, policy: AwardPolicy, rules_lag: timedelta) -> None:
        self._dialect = dialect
        self._zone = zone
        self._policy = policy
        self._rules_lag = rules_lag

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

    def history(self, session: Session, learner: LearnerContext, badge: ActiveBadge) -> list[EventFacts]:
        """The learner's events before the current one that ``badge`` listens to, oldest first."""
        platform, lms_user_id = learner.key
        stored = session.connection().execute(
            _HISTORY, {"platform": platform, "learner": lms_user_id, "kinds": sorted(badge.criteria.kinds)}
        )
        past = [EventFacts(to_learning_event(row), self._zone) for row in stored]
        past += [f for _, f in learner.seen if f.event.kind in badge.criteria.kinds]
        return past

    # --- writing ---------------------------------------------------------------------------------


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
