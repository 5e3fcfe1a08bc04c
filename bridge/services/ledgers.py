"""Reading learners for evaluation: their rows locked, their progress states, awards, history.

The statements are built once and run on the driver's cursor (see bridge.db.driver): a batch reads a
few rows per learner, and SQLAlchemy's per-row work would cost more than the reading. A learner's
progress is one document (``learner_states``), read with one statement for the whole batch:
``{"records": {badge_id: record (see to_record)}, "states": {requirement state key: state},
"since": {requirement state key: the first event that changed it, in microseconds since the epoch}}``
(see bridge.domain.evaluation). A saturated record is its criteria version alone; a retired state is
text (see bridge.domain.criteria.retired).

On PostgreSQL every statement that waits is a round trip to the server, so a batch's reads are grouped:
the new learners are created, and every learner locked and read with their states, in one round trip;
and the awards a ledger needs (when one of its badges completes) are read for all such learners of the
batch at once (``AwardsNeeded``, ``read_awards``) rather than one badge at a time. SQLite, in-process,
reads as it goes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.driver import KEY_LOOKUPS, LZ4_AVAILABLE, LZ4_WRITES, Driver, decode_json
from bridge.db.pseudonyms import new_pseudonym
from bridge.domain.aggregates import EventFacts
from bridge.domain.evaluation import AwardPolicy, AwardsLoader, AwardsOf, LearnerLedger, Loader
from bridge.domain.records import BadgeRecord, from_micros, micros, saturated_record
from bridge.services.event_rows import COLUMNS, event_row, learner_events, to_learning_event


class AwardsNeeded(Exception):
    """A ledger needs the learner's awards of a badge, which are read for the batch at once.

    Raised out of ``LearnerLedger.observe`` for a ledger of ``lock_learners(..., batch=True)`` on
    PostgreSQL: the caller restores the ledger to before the event, reads the awards (``read_awards``)
    and evaluates the event again.
    """

    def __init__(self, key: tuple[str, str]) -> None:
        super().__init__(key)
        self.key = key


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
        # PostgreSQL: the learners of a batch created and locked, with their states, in one round trip
        # (see lock_learners). Only the learners not yet known are inserted, so no id is drawn for the
        # others.
        self._create_missing = (
            "INSERT INTO learners (platform, lms_user_id, points, pseudonym, created_at) "
            "SELECT w.platform, w.lms_user_id, 0, w.pseudonym, %s "
            "FROM unnest(%s::text[], %s::text[], %s::text[]) AS w(platform, lms_user_id, pseudonym) "
            "WHERE NOT EXISTS (SELECT 1 FROM learners l "
            "WHERE l.platform = w.platform AND l.lms_user_id = w.lms_user_id) "
            "ORDER BY w.platform, w.lms_user_id "
            "ON CONFLICT DO NOTHING RETURNING platform, lms_user_id"
        )
        # Driven by the keys, each an index lookup of its own (a LATERAL subquery with FOR UPDATE is
        # never merged into a join the planner could turn around: on a table it believes small, it
        # read the whole platform's learners once per key), locked in the order of the keys.
        self._lock_learners = (
            "SELECT l.id, l.platform, l.lms_user_id, l.points, l.created_at "
            "FROM unnest(CAST(%s AS text[])) WITH ORDINALITY AS w(lms_user_id, n) "
            "CROSS JOIN LATERAL (SELECT id, platform, lms_user_id, points, created_at FROM learners "
            "WHERE platform = %s AND lms_user_id = w.lms_user_id FOR UPDATE) AS l ORDER BY w.n"
        )
        # A statement of its own, sent after the locks in the same trip: a statement sees what was committed
        # when it started, and a lock statement that waited for another worker would otherwise read that
        # worker's learners' states as they were before its commit (and its progress would be lost).
        self._states_after_locks = (
            "SELECT s.learner_id, CAST(s.states AS TEXT) FROM learner_states s JOIN learners l "
            "ON l.id = s.learner_id WHERE l.platform = %s AND l.lms_user_id = ANY(CAST(%s AS text[]))"
        )
        self._history = (
            f"SELECT {COLUMNS} FROM events WHERE {learner_events(driver)} ORDER BY occurred_at, id"
        )
        self._zone = zone
        self._policy = policy
        self._rules_lag = rules_lag
        # PostgreSQL: what each batch's transaction is set to (see _lock_in_one_trip); None: not yet
        # known whether the server has lz4.
        self._batch_settings: tuple[str, ...] | None = None

    def lock_learners(
        self,
        session: Session,
        keys: Sequence[tuple[str, str]],
        *,
        every_award: bool = False,
        create: bool = True,
        batch: bool = False,
    ) -> dict[tuple[str, str], LearnerContext]:
        """Each learner's row, locked, with their records.

        ``every_award``: read every award and request of the learners up front (settling, rebuilding).
        Otherwise a learner's awards and requests of a badge are read when the ledger first needs them:
        when a badge is completed or reaches a tier, which few events do, most records being on their
        way or long complete (saturated). ``batch`` (the worker's batch of events), on PostgreSQL: instead
        of a round trip per badge the ledger raises ``AwardsNeeded``, for ``read_awards``.

        On PostgreSQL the rest of the transaction plans its statements as lookups by key (index scans,
        nested loops: see ``driver.KEY_LOOKUPS``), as the statements of evaluation and effects are.

        The learner row serialises evaluation per learner across workers (PostgreSQL). The rows are
        locked in (platform, learner) order (on PostgreSQL, the keys as Python sorts them), so two
        workers take these locks in the same order.
        """
        driver = self._driver
        if driver.is_sqlite:
            new = self._create_learners(session, keys) if create else set()
            found = self._lock_rows(session, keys)
            states = self._read_states(session, [row[0] for row in found])
        else:
            new, found, states = self._lock_in_one_trip(session, keys, create)
        awarded: dict[int, set[tuple[str, str]]] = defaultdict(set)
        held: dict[int, set[str]] = defaultdict(set)
        requested: dict[int, set[tuple[str, str]]] = defaultdict(set)
        if found and every_award:
            self._read_every_award(session, [row[0] for row in found], awarded, held, requested)
        defer = batch and not driver.is_sqlite
        learners = {}
        for learner_id, platform, lms_user_id, points, created_at in found:
            key = (platform, lms_user_id)
            doc = states.get(learner_id) or document({}, {})
            stored = doc["records"]
            if defer:
                load_awards = _awards_needed(key)
            else:
                load_awards = lambda badge_id, learner_id=learner_id: self._load_awards(  # noqa: E731
                    session, learner_id, badge_id
                )
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
                load_awards=load_awards,
            )
            learners[key] = LearnerContext(learner_id, key, ledger, [], stored)
        return learners

    def read_awards(self, session: Session, learners: Sequence[LearnerContext]) -> None:
        """Every award and request of ``learners`` into their ledgers (after ``AwardsNeeded``), in one
        round trip for all of them: their ledgers need no more reads of awards."""
        if not learners:
            return
        awarded: dict[int, set[tuple[str, str]]] = defaultdict(set)
        held: dict[int, set[str]] = defaultdict(set)
        requested: dict[int, set[tuple[str, str]]] = defaultdict(set)
        self._read_every_award(session, [learner.id for learner in learners], awarded, held, requested)
        for learner in learners:
            ledger = learner.ledger
            # What the ledger decided in this batch stays; what is stored is added to it.
            ledger.awarded |= awarded[learner.id]
            ledger.held |= held[learner.id]
            ledger.requested |= requested[learner.id]
            ledger.awards_known = None

    def _read_every_award(
        self,
        session: Session,
        learner_ids: list[int],
        awarded: dict[int, set[tuple[str, str]]],
        held: dict[int, set[str]],
        requested: dict[int, set[tuple[str, str]]],
    ) -> None:
        driver = self._driver
        ids = (driver.values(learner_ids),)
        awards, approvals = driver.fetch_each(
            session, [(self._awards_of_all, ids), (self._approvals_of_all, ids)]
        )
        for learner_id, badge_id, tier, in_force in awards:
            awarded[learner_id].add((badge_id, tier))
            if in_force:
                held[learner_id].add(badge_id)
        for learner_id, badge_id, tier in approvals:
            requested[learner_id].add((badge_id, tier))

    def _lock_in_one_trip(
        self, session: Session, keys: Sequence[tuple[str, str]], create: bool
    ) -> tuple[set[tuple[str, str]], list[Any], dict[int, Any]]:
        """PostgreSQL: (the keys created now, the locked rows in key order, states by learner id),
        the learners created, locked and read in one round trip."""
        driver = self._driver
        reads: list[tuple[str, Sequence[Any]]] = []
        if create:
            ordered = sorted(set(keys))
            platforms, users = [p for p, _ in ordered], [u for _, u in ordered]
            pseudonyms = [new_pseudonym() for _ in ordered]
            reads.append((self._create_missing, (driver.time(utcnow()), platforms, users, pseudonyms)))
        groups = sorted(_by_platform(keys).items())
        for platform, of_platform in groups:
            # Every worker locks a platform's learners in one order (Python's, as the keys are sorted).
            reads.append((self._lock_learners, (sorted(of_platform), platform)))
        for platform, of_platform in groups:
            reads.append((self._states_after_locks, (platform, sorted(of_platform))))
        # What follows in the transaction finds rows by key: planned so (see driver.KEY_LOOKUPS); and
        # writes states compressed with lz4 where the server has it (asked with the first batch).
        settings = self._batch_settings
        if settings is None:
            reads.insert(0, (LZ4_AVAILABLE, ()))
        results = driver.fetch_each(session, reads, first=settings or KEY_LOOKUPS)
        if settings is None:
            [(lz4,)] = results.pop(0)
            self._batch_settings = (*KEY_LOOKUPS, LZ4_WRITES) if lz4 else KEY_LOOKUPS
        new = {(platform, user) for platform, user in results[0]} if create else set()
        results = results[1:] if create else results
        found = [tuple(row) for rows in results[: len(groups)] for row in rows]
        states = {learner_id: decode_json(doc) for rows in results[len(groups) :] for learner_id, doc in rows}
        return new, found, states

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


def _awards_needed(key: tuple[str, str]) -> AwardsLoader:
    def needed(_badge_id: str) -> AwardsOf:
        raise AwardsNeeded(key)

    return needed


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
