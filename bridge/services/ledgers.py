"""Reading learners for evaluation: their rows locked, their progress records, awards, history.

The statements are built once and run on the driver's cursor (see bridge.db.driver): a batch reads a
few rows per learner per badge in play, and SQLAlchemy's per-row work would cost more than the reading.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import Any

from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.driver import Driver, decode_json
from bridge.db.pseudonyms import new_pseudonym
from bridge.domain.aggregates import EventFacts
from bridge.domain.criteria import Progress
from bridge.domain.evaluation import AwardPolicy, AwardsOf, BadgeRecord, LearnerLedger
from bridge.domain.rules import ActiveBadge, RuleBook
from bridge.services.event_rows import COLUMNS, event_row, learner_events, to_learning_event


@dataclass
class LearnerContext:
    id: int
    key: tuple[str, str]
    ledger: LearnerLedger
    seen: list[tuple[int, EventFacts]]  # this batch's events of the learner evaluated so far, with ids


class LedgerReader:
    """Loads each learner of a batch into a ledger, with the learner's row locked."""

    def __init__(self, dialect: str, zone: tzinfo, policy: AwardPolicy, rules_lag: timedelta) -> None:
        self._driver = driver = Driver(dialect)
        # On the driver's cursor (see bridge.db.driver): a learner may have a record per badge.
        self._records_of = (
            "SELECT learner_id, badge_id, criteria_version, started_at, value, target, tier, "
            # As text, decoded only when needed; a saturated row's state is not even read (see _record).
            "CASE WHEN saturated THEN NULL ELSE CAST(state AS TEXT) END "
            f"FROM progress WHERE {driver.in_list('learner_id')} AND {driver.in_list('badge_id')}"
        )
        learners_in = f"platform = {driver.mark} AND {driver.in_list('lms_user_id')}"
        self._known = f"SELECT lms_user_id FROM learners WHERE {learners_in}"
        self._lock = (
            f"SELECT id, platform, lms_user_id, points, created_at FROM learners WHERE {learners_in} "
            "ORDER BY lms_user_id" + ("" if driver.is_sqlite else " FOR UPDATE")
        )
        awards = "SELECT learner_id, badge_id, tier, revoked_at IS NULL FROM awards"
        approvals = "SELECT learner_id, badge_id, tier FROM approvals"
        of_learners, of_badges = driver.in_list("learner_id"), driver.in_list("badge_id")
        self._awards_of_all = f"{awards} WHERE {of_learners}"
        self._awards_of = f"{awards} WHERE {of_learners} AND {of_badges}"
        self._approvals_of_all = f"{approvals} WHERE {of_learners}"
        self._approvals_of = f"{approvals} WHERE {of_learners} AND {of_badges}"
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
        driver = self._driver
        new = self._create_learners(session, keys) if create else set()
        found = self._lock_rows(session, keys)
        wanted = {
            row[0]: self._wanted(rules, None if kinds is None else kinds[row[1], row[2]]) for row in found
        }
        records = self._read_records(session, rules, found, wanted)
        # Awards and requests of the badges in play, and of their prerequisites; others when needed.
        in_play: set[str] | None = None
        if kinds is not None:
            in_play = set().union(*wanted.values())
            in_play |= {needed for badge_id in in_play for needed in rules.by_id[badge_id].prerequisites}
        awarded: dict[int, set[tuple[str, str]]] = defaultdict(set)
        held: dict[int, set[str]] = defaultdict(set)
        requested: dict[int, set[tuple[str, str]]] = defaultdict(set)
        if found:
            ids = driver.values([row[0] for row in found])
            everything = in_play is None
            parameters = (ids,) if everything else (ids, driver.values(sorted(in_play or ())))
            awards = self._awards_of_all if everything else self._awards_of
            for learner_id, badge_id, tier, in_force in driver.fetch_all(session, awards, parameters):
                awarded[learner_id].add((badge_id, tier))
                if in_force:
                    held[learner_id].add(badge_id)
            approvals = self._approvals_of_all if everything else self._approvals_of
            for learner_id, badge_id, tier in driver.fetch_all(session, approvals, parameters):
                requested[learner_id].add((badge_id, tier))
        learners = {}
        for learner_id, platform, lms_user_id, points, created_at in found:
            ledger = LearnerLedger(
                points=points,
                records=records[learner_id],
                awarded=awarded[learner_id],
                held=held[learner_id],
                requested=requested[learner_id],
                policy=self._policy,
                first_seen=None if (platform, lms_user_id) in new else driver.read_time(created_at),
                rules_lag=self._rules_lag,
                load=lambda badge_id, learner_id=learner_id: (
                    None
                    if badge_id in wanted[learner_id]
                    else self._load_record(session, rules, learner_id, badge_id)
                ),
                awards_known=None if in_play is None else set(in_play),
                load_awards=lambda badge_id, learner_id=learner_id: self._load_awards(
                    session, learner_id, badge_id
                ),
            )
            key = (platform, lms_user_id)
            learners[key] = LearnerContext(learner_id, key, ledger, [])
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
        driver = self._driver
        awards = driver.fetch_all(
            session, self._awards_of, (driver.values([learner_id]), driver.values([badge_id]))
        )
        requests = driver.fetch_all(
            session, self._approvals_of, (driver.values([learner_id]), driver.values([badge_id]))
        )
        return AwardsOf(
            tuple(tier for _, _, tier, _ in awards),
            tuple(tier for _, _, tier in requests),
            any(in_force for *_, in_force in awards),
        )

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
            for row in self._fetch_records(session, learner_ids, sorted(badges)):
                record = self._record(rules, row)
                if record is not None:
                    records[row[0]][row[1]] = record
        return records

    def _load_record(
        self, session: Session, rules: RuleBook, learner_id: int, badge_id: str
    ) -> BadgeRecord | None:
        rows = self._fetch_records(session, [learner_id], [badge_id])
        return self._record(rules, rows[0]) if rows else None

    def _fetch_records(self, session: Session, learner_ids: list[int], badges: list[str]) -> list[Any]:
        driver = self._driver
        return driver.fetch_all(
            session, self._records_of, (driver.values(learner_ids), driver.values(badges))
        )

    def _record(self, rules: RuleBook, row: Any) -> BadgeRecord | None:
        """A stored progress row as the ledger sees it, or None for a badge no longer active.

        Progress is derived from the state (by the ledger, when needed), never trusted from the row, so
        it always matches the criteria of the state's version (the ledger replays when the version has
        moved on) — except for a saturated row of the current version, whose state is not even read:
        nothing can change it.
        """
        _, badge_id, version, started_at, value, target, tier, state = row
        badge = rules.by_id.get(badge_id)
        if badge is None:
            return None
        if state is None and version == badge.criteria_version:
            tiers = badge.criteria.tiers
            progress = Progress(value, target, True, (), tier=tier, reached=tiers, saturated=True)
            # Without its start: a saturated record is never changed, so never written back.
            return BadgeRecord(version, {}, progress, None, saturated=True)
        state = {} if state is None else decode_json(state)
        return BadgeRecord(version, state, None, self._driver.read_time(started_at))

    def history(self, session: Session, learner: LearnerContext, badge: ActiveBadge) -> list[EventFacts]:
        """The learner's events before the current one that ``badge`` listens to, oldest first."""
        platform, lms_user_id = learner.key
        driver = self._driver
        stored = driver.fetch_all(
            session, self._history, (platform, lms_user_id, driver.values(sorted(badge.criteria.kinds)))
        )
        past = [EventFacts(to_learning_event(event_row(driver, row)), self._zone) for row in stored]
        past += [f for _, f in learner.seen if f.event.kind in badge.criteria.kinds]
        return past


def _by_platform(keys: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    users: dict[str, list[str]] = defaultdict(list)
    for platform, user in keys:
        users[platform].append(user)
    return users
