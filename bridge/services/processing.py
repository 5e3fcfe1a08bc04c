"""Turning a batch of stored events into their effects: progress, awards, approvals, points, courses.

Runs inside the worker's transaction, so the effects commit together with the events being marked done.
A batch costs a fixed number of statements, whatever its size: the learners are locked and their records
read in one go (``ledgers``), evaluated in memory by the domain's ledgers, and what changed is written
back with one ``executemany`` per table (``effects``). On PostgreSQL, where each statement that waits
is a round trip, the reads are grouped and the writes sent in a pipeline: a batch is a handful of round
trips, whatever its size and however many awards it makes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Learner
from bridge.domain.aggregates import EventFacts
from bridge.domain.evaluation import AwardPolicy
from bridge.notify.outbox import routes
from bridge.services.badges import RuleBookCache
from bridge.services.effects import AwardMade, EffectWriter
from bridge.services.event_rows import to_learning_event
from bridge.services.ledgers import AwardsNeeded, LearnerContext, LedgerReader
from bridge.settings import Settings


def rules_lag(settings: Settings) -> timedelta:
    """How long after a criteria change some worker may still evaluate with the old rule book."""
    # Every worker reloads its rule book within rules_refresh_seconds; the rest is clock skew.
    return timedelta(seconds=2 * settings.worker.rules_refresh_seconds + 60)


@dataclass
class BatchResult:
    failures: dict[int, Exception]  # event id -> why it could not be evaluated
    awards: list[AwardMade]
    approvals: int = 0


class EventProcessor:
    """The processing pipeline the worker runs for each claimed batch."""

    def __init__(self, database: Database, settings: Settings, rules: RuleBookCache) -> None:
        dialect = database.engine.dialect.name
        self._zone = settings.zone
        self.rules = rules
        policy = AwardPolicy(settings.enable_achievements, settings.points_per_badge)
        self.rules_lag = rules_lag(settings)
        self.ledgers = LedgerReader(dialect, self._zone, policy, self.rules_lag)
        # A badge's routes are the same for every award: worked out once per set of channels.
        award_routes = functools.cache(lambda channels: routes(settings, "award.made", channels))
        self.effects = EffectWriter(dialect, self._zone, award_routes, routes(settings, "approval.requested"))

    def process(self, session: Session, rows: Sequence[Any]) -> BatchResult:
        """Evaluate ``rows`` (event rows, in the order given) and write their effects to the session."""
        rules = self.rules.current(session)
        facts = [(row.id, EventFacts(to_learning_event(row), self._zone)) for row in rows]
        keys = sorted({(f.event.platform, f.event.learner) for _, f in facts})
        learners = self.ledgers.lock_learners(session, keys, batch=True)
        failures: dict[int, Exception] = {}
        now = utcnow()
        todo = facts
        while todo:
            # A learner whose ledger needs their awards (see ledgers.AwardsNeeded) waits, from that
            # event on, while the others go on; then the awards of all who wait are read at once, and
            # they go on. Their ledgers then know every award: a second pass is the last.
            waiting: list[tuple[int, EventFacts]] = []
            needing: dict[tuple[str, str], LearnerContext] = {}
            for event_id, event_facts in todo:
                learner = learners[(event_facts.event.platform, event_facts.event.learner)]
                if learner.key in needing:
                    waiting.append((event_id, event_facts))  # after the one it waits at: in order
                    continue
                snapshot = learner.ledger.snapshot()
                history = partial(self.ledgers.history, session, learner)
                try:
                    learner.ledger.observe(event_facts, rules, history)
                except AwardsNeeded:
                    learner.ledger.restore(snapshot)
                    needing[learner.key] = learner
                    waiting.append((event_id, event_facts))
                    continue
                except Exception as error:  # this event's evaluation only; its effects are dropped
                    learner.ledger.restore(snapshot)
                    failures[event_id] = error
                    continue
                learner.seen.append((event_id, event_facts))
            self.ledgers.read_awards(session, list(needing.values()))
            todo = waiting
        evaluated = [f for i, f in facts if i not in failures]
        with self.effects.pipeline(session):  # only the effects' own statements: see Driver.pipeline
            self.effects.write_course_members(session, learners, evaluated, now)
            awards, approvals = self.effects.write_effects(session, learners.values(), now)
        return BatchResult(failures, awards, approvals)

    def settle(self, session: Session, learner_ids: Sequence[int]) -> BatchResult:
        """Award what the learners completed but were not awarded (achievements were off, say)."""
        rules = self.rules.current(session)
        learners = self._lock_known(session, learner_ids)
        now = utcnow()
        for learner in learners.values():
            learner.ledger.settle(rules, now)
        awards, approvals = self.effects.write_effects(session, learners.values(), now)
        return BatchResult({}, awards, approvals)

    def rebuild(self, session: Session, badge_id: str, learner_ids: Sequence[int]) -> BatchResult:
        """Rebuild the learners' records of ``badge_id`` from their history, and award what is complete."""
        rules = self.rules.current(session)
        badge = rules.by_id.get(badge_id)
        if badge is None or not learner_ids:
            return BatchResult({}, [])
        learners = self._lock_known(session, learner_ids)
        now = utcnow()
        for learner in learners.values():
            history = partial(self.ledgers.history, session, learner)
            learner.ledger.rebuild(badge, rules, history, now)
        awards, approvals = self.effects.write_effects(session, learners.values(), now)
        return BatchResult({}, awards, approvals)

    def _lock_known(
        self, session: Session, learner_ids: Sequence[int]
    ) -> dict[tuple[str, str], LearnerContext]:
        """Learners by id, locked, with every record, award and request known."""
        rows = (
            session.connection()
            .execute(
                select(Learner.platform, Learner.lms_user_id)
                .where(Learner.id.in_(learner_ids))
                .order_by(Learner.platform, Learner.lms_user_id)
            )
            .all()
        )
        return self.ledgers.lock_learners(session, [tuple(r) for r in rows], every_award=True, create=False)
