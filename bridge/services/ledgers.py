"""Reading learners for evaluation: their rows locked, their progress states, awards, history.

The statements are built once and run on the driver's cursor (see bridge.db.driver): a batch reads a
few rows per learner, and SQLAlchemy's per-row work would cost more than the reading. A learner's
progress is one document (``learner_states``), read with one statement for the whole batch:
``{"records": {badge_id: record (see to_record)}, "states": {requirement state key: state},
"since": {requirement state key: the first event that changed it, in microseconds since the epoch}}``
(see bridge.domain.evaluation). A saturated record is its criteria version alone; a retired state is
text (see bridge.domain.criteria.retired).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.driver import Driver, decode_json
from bridge.db.pseudonyms import new_pseudonym
from bridge.domain.aggregates import EventFacts
from bridge.domain.evaluation import AwardPolicy, AwardsOf, LearnerLedger, Loader
from bridge.domain.records import BadgeRecord, from_micros, micros, saturated_record
from bridge.services.event_rows import COLUMNS, event_row, learner_events, to_learning_event


@dataclass
class LearnerContext:
    id: int
    key: tuple[str, str]
    ledger: LearnerLedger
    seen: list[tuple[int, EventFacts]]  # this batch's events of the learner evaluated so far, with ids
    # The learner's stored records by badge id, as stored (see to_record); what changed is written back.
    stored: dict[str, Any]


def to_record(stored: list[Any] | int) -> BadgeRecord:
    """A record as stored in ``learner_states``: a list, shorter than a mapping in every document.

    ``[criteria_version, started_at as microseconds since the epoch or null, complete, tier,
    saturated]``; integers keep times exact, and read faster than text. A saturated record is its
    criteria version alone (see ``saturated_record``): most of a long-standing learner's records are.
    """
    if isinstance(stored, int):
        return saturated_record(stored)
    version, started, complete, tier, saturated = stored
    started_at = None if started is None else from_micros(started)
    return BadgeRecord(version, started_at, complete, tier, saturated)


def to_stored(record: BadgeRecord) -> list[Any] | int:
    if record.saturated:
        return record.criteria_version
    started = None if record.started_at is None else micros(record.started_at)
    return [record.criteria_version, started, record.complete, record.tier, record.saturated]


def document(
    records: dict[str, Any], states: dict[str, Any], since: dict[str, int] | None = None
) -> dict[str, Any]:
    """A learner's ``learner_states`` document (see the module)."""
    return {"records": records, "states": states, "since": {} if since is None else since}


def reading_ledger(
    doc: dict[str, Any] | None, points: int, first_seen: datetime, rules_lag: timedelta
) -> LearnerLedger:
    """A learner's ledger from their stored document, to read their progress from (no awards)."""
    doc = doc or document({}, {})
    return LearnerLedger(
        points,
        {badge_id: to_record(record) for badge_id, record in doc["records"].items()},
        set(),
        set(),
        set(),
        AwardPolicy(),
        states=doc["states"],
        since=doc.get("since", {}),
        first_seen=first_seen,
        rules_lag=rules_lag,
    )


class LedgerReader:
    """Loads each learner of a batch into a ledger, with the learner's row locked."""

    def __init__(self, dialect: str, zone: tzinfo, policy: AwardPolicy, rules_lag: timedelta) -> None:
        self._driver = driver = Driver(dialect)
        self._states_of = (
            "SELECT learner_id, CAST(states AS TEXT) FROM learner_states "
            f"WHERE {driver.in_list('learner_id')}"
        )
        learners_in = f"platform = {driver.mark} AND {driver.in_list('lms_user_id')}"
        self._known = f"SELECT lms_user_id FROM learners WHERE {learners_in}"
        self._lock = (
            f"SELECT id, platform, lms_user_id, points, created_at FROM learners WHERE {learners_in} "
            "ORDER BY lms_user_id" + ("" if driver.is_sqlite else " FOR UPDATE")
        )
        of_learners = driver.in_list("learner_id")
        self._awards_of_all = (
            f"SELECT learner_id, badge_id, tier, revoked_at IS NULL FROM awards WHERE {of_learners}"
        )
        self._approvals_of_all = f"SELECT learner_id, badge_id, tier FROM approvals WHERE {of_learners}"
        one = f"learner_id = {driver.mark} AND badge_id = {driver.mark}"
        self._awards_of_badge = (
            f"SELECT 'award', tier, revoked_at IS NULL FROM awards WHERE {one} "
            f"UNION ALL SELECT 'request', tier, false FROM approvals WHERE {one}"
        )
        self._history = (
            f"SELECT {COLUMNS} FROM events WHERE {learner_events(driver)} ORDER BY occurred_at, id"
        )
        self._zone = zone
        self._policy = policy
        self._rules_lag = rules_lag

    def lock_learners(
        self,
        session: Session,
        keys: Sequence[tuple[str, str]],
        *,
        every_award: bool = False,
        create: bool = True,
    ) -> dict[tuple[str, str], LearnerContext]:
        """Each learner's row, locked, with their records.

        ``every_award``: read every award and request of the learners up front (settling, rebuilding).
        Otherwise a learner's awards and requests of a badge are read when the ledger first needs them:
        when a badge is completed or reaches a tier, which few events do, most records being on their
        way or long complete (saturated).

        The learner row serialises evaluation per learner across workers (PostgreSQL). The rows are
        locked in (platform, learner) order, so two workers take these locks in the same order.
        """
        driver = self._driver
        new = self._create_learners(session, keys) if create else set()
        found = self._lock_rows(session, keys)
        states = self._read_states(session, [row[0] for row in found])
        awarded: dict[int, set[tuple[str, str]]] = defaultdict(set)
        held: dict[int, set[str]] = defaultdict(set)
        requested: dict[int, set[tuple[str, str]]] = defaultdict(set)
        if found and every_award:
            ids = (driver.values([row[0] for row in found]),)
            for learner_id, badge_id, tier, in_force in driver.fetch_all(session, self._awards_of_all, ids):
                awarded[learner_id].add((badge_id, tier))
                if in_force:
                    held[learner_id].add(badge_id)
            for learner_id, badge_id, tier in driver.fetch_all(session, self._approvals_of_all, ids):
                requested[learner_id].add((badge_id, tier))
        learners = {}
        for learner_id, platform, lms_user_id, points, created_at in found:
            key = (platform, lms_user_id)
            doc = states.get(learner_id) or document({}, {})
            stored = doc["records"]
            ledger = LearnerLedger(
                points=points,
                records={},
                awarded=awarded[learner_id],
                held=held[learner_id],
                requested=requested[learner_id],
                policy=self._policy,
                states=doc["states"],
                since=doc.get("since", {}),
                first_seen=None if key in new else driver.read_time(created_at),
                seen_now=driver.read_time(created_at) if key in new else None,
                rules_lag=self._rules_lag,
                load=_loader(stored),
                # A learner created now has none.
                awards_known=None if every_award or key in new else set(),
                load_awards=lambda badge_id, learner_id=learner_id: self._load_awards(
                    session, learner_id, badge_id
                ),
            )
            learners[key] = LearnerContext(learner_id, key, ledger, [], stored)
        return learners

    def _create_learners(self, session: Session, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Rows for the learners seen for the first time; returns their keys."""
        driver = self._driver
        known: set[tuple[str, str]] = set()
        for platform, users in _by_platform(keys).items():
            rows = driver.fetch_all(session, self._known, (platform, driver.values(users)))
            known.update((platform, user) for (user,) in rows)
        unknown = sorted(set(keys) - known)
        if not unknown:
            return set()
        created_at = driver.time(utcnow())
        created: set[tuple[str, str]] = set()
        # A statement per 1,000 learners: built for the count (executemany cannot return rows), and
        # well within both databases' limits on bound parameters.
        for start in range(0, len(unknown), 1000):
            chunk = unknown[start : start + 1000]
            values = ", ".join([f"({driver.marks(5)})"] * len(chunk))
            rows = driver.fetch_all(
                session,
                # Only the rows it inserted come back: a learner another worker has just created is
                # not counted as new.
                "INSERT INTO learners (platform, lms_user_id, points, pseudonym, created_at) "
                f"VALUES {values} ON CONFLICT DO NOTHING RETURNING platform, lms_user_id",
                [v for p, u in chunk for v in (p, u, 0, new_pseudonym(), created_at)],
            )
            created.update((platform, user) for platform, user in rows)
        return created

    def _lock_rows(self, session: Session, keys: Sequence[tuple[str, str]]) -> list[Any]:
        """(id, platform, lms_user_id, points, created_at) of each learner, locked, in key order."""
        found: list[Any] = []
        for platform, users in sorted(_by_platform(keys).items()):
            found += self._driver.fetch_all(session, self._lock, (platform, self._driver.values(users)))
        return found

    def _load_awards(self, session: Session, learner_id: int, badge_id: str) -> AwardsOf:
        rows = self._driver.fetch_all(
            session, self._awards_of_badge, (learner_id, badge_id, learner_id, badge_id)
        )
        return AwardsOf(
            tuple(tier for what, tier, _ in rows if what == "award"),
            tuple(tier for what, tier, _ in rows if what == "request"),
            any(what == "award" and in_force for what, _, in_force in rows),
        )

    def _read_states(self, session: Session, learner_ids: list[int]) -> dict[int, dict[str, list[Any]]]:
        if not learner_ids:
            return {}
        driver = self._driver
        rows = driver.fetch_all(session, self._states_of, (driver.values(learner_ids),))
        return {learner_id: decode_json(states) for learner_id, states in rows}

    def history(self, session: Session, learner: LearnerContext, kinds: frozenset[str]) -> list[EventFacts]:
        """The learner's events of ``kinds`` before the current one, oldest first."""
        platform, lms_user_id = learner.key
        driver = self._driver
        stored = driver.fetch_all(
            session, self._history, (platform, lms_user_id, driver.values(sorted(kinds)))
        )
        past = [EventFacts(to_learning_event(event_row(driver, row)), self._zone) for row in stored]
        past += [f for _, f in learner.seen if f.event.kind in kinds]
        return past


def _loader(stored: dict[str, Any]) -> Loader | None:
    """Records are decoded when first looked at: most of a learner's are not, in a batch."""
    if not stored:
        return None
    return lambda badge_id: None if badge_id not in stored else to_record(stored[badge_id])


def _by_platform(keys: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    users: dict[str, list[str]] = defaultdict(list)
    for platform, user in keys:
        users[platform].append(user)
    return users
