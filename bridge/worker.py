"""The worker: claims pending events in batches and commits each batch with its effects.

Exactly-once effects come from the transaction: an event is marked done in the same transaction that
writes its progress and awards, so a worker killed mid-batch leaves the whole batch pending. On
PostgreSQL several workers claim disjoint batches with ``FOR UPDATE SKIP LOCKED``; on SQLite the batch
transaction holds the single write lock.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from bridge import metrics
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.services.badges import RuleBookCache
from bridge.services.processing import AwardMade, EventProcessor
from bridge.settings import Settings, WorkerSettings

log = logging.getLogger(__name__)

Pipeline = Callable[[Session, Event], list[AwardMade]]


def retry_delay(attempts: int, settings: WorkerSettings) -> float:
    """Exponential backoff with jitter: about base * 2**(attempts-1), at most the configured maximum.

    The jitter keeps events that failed together (an outage) from all coming due at the same instant.
    """
    ceiling = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** (attempts - 1))
    return ceiling * random.uniform(0.5, 1.0)


class Worker:
    def __init__(self, database: Database, settings: Settings, pipeline: Pipeline | None = None) -> None:
        self._database = database
        self._settings = settings.worker
        self._pipeline = pipeline or EventProcessor(
            database,
            settings,
            RuleBookCache(settings.track_event_types, settings.worker.rules_refresh_seconds),
        )
        self.name = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"

    def run_once(self) -> int:
        """Claim and process one batch; returns how many events it claimed."""
        started = time.perf_counter()
        outcomes: dict[str, int] = {"done": 0, "retry": 0, "failed": 0}
        awards: list[AwardMade] = []
        with self._database.write() as session:
            batch = self._claim(session)
            # (platform, learner) order: the per-learner locks are taken in one global order, so two
            # workers on PostgreSQL cannot deadlock on them.
            batch.sort(key=lambda e: (e.platform, e.learner, e.id))
            for event in batch:
                outcome = self._process(session, event, awards)
                outcomes[outcome] += 1
        # Counted only once committed: a rolled-back batch made no awards.
        if batch:
            log.debug("batch.processed", extra={"worker": self.name, "claimed": len(batch), **outcomes})
            metrics.record_batch(outcomes, [a.badge_id for a in awards], time.perf_counter() - started)
            for award in awards:
                log.info(
                    "award.made",
                    extra={
                        "badge": award.badge_id,
                        "platform": award.platform,
                        "learner": award.learner,
                        "award_id": award.award_id,
                    },
                )
            if outcomes["failed"]:
                log.warning("events.parked", extra={"count": outcomes["failed"]})
        return len(batch)

    def _claim(self, session: Session) -> list[Event]:
        query = (
            select(Event)
            .where(Event.status == "pending", Event.next_attempt_at <= utcnow())
            .order_by(Event.id)
            .limit(self._settings.batch_size)
        )
        if not self._database.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        return list(session.scalars(query))

    def _process(self, session: Session, event: Event, awards: list[AwardMade]) -> str:
        try:
            with session.begin_nested():
                made = self._pipeline(session, event)
                event.status, event.processed_at = "done", utcnow()
                event.attempts += 1
                event.last_error = None
        except (OperationalError, DBAPIError) as error:
            if isinstance(error, OperationalError) or error.connection_invalidated:
                raise  # the database, not the event: retry the whole batch, charging no attempt
            return self._note_failure(event, error)
        except Exception as error:
            return self._note_failure(event, error)
        awards.extend(made)
        return "done"

    def _note_failure(self, event: Event, error: Exception) -> str:
        event.attempts += 1
        event.last_error = f"{type(error).__name__}: {error}"[:2000]
        log.warning(
            "event.failed",
            extra={"event_id": event.id, "attempts": event.attempts, "error": event.last_error},
        )
        if event.attempts >= self._settings.max_attempts:
            event.status = "failed"
            return "failed"
        event.next_attempt_at = utcnow() + timedelta(seconds=retry_delay(event.attempts, self._settings))
        return "retry"

    def run(self, stop: threading.Event, *, drain: bool = False) -> None:
        """Process until ``stop`` is set (or, with ``drain``, until nothing is due)."""
        log.info("worker.started", extra={"worker": self.name})
        failures = 0
        while not stop.is_set():
            try:
                claimed = self.run_once()
                failures = 0
            except Exception:
                failures += 1
                log.exception("worker.batch_error", extra={"consecutive": failures})
                stop.wait(min(30.0, 0.5 * 2**failures))
                continue
            if claimed == 0:
                if drain:
                    break
                stop.wait(self._settings.idle_sleep_seconds)
        log.info("worker.stopped", extra={"worker": self.name})


def start_in_thread(database: Database, settings: Settings) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(
        target=Worker(database, settings).run, args=(stop,), name="bridge-worker", daemon=True
    )
    thread.start()
    return thread, stop
