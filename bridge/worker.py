"""The worker: claims pending events in batches and commits each batch with its effects.

Exactly-once effects come from the transaction: an event is marked done in the same transaction that
writes its progress and awards, so a worker killed mid-batch leaves the whole batch pending. On
PostgreSQL several workers claim disjoint batches with ``FOR UPDATE SKIP LOCKED``; on SQLite the batch
transaction holds the single write lock.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import bindparam, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from bridge import metrics
from bridge.clock import utcnow
from bridge.db.driver import Driver
from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.services.badges import RuleBookCache
from bridge.services.effects import AwardMade
from bridge.services.event_rows import COLUMNS, EventRow, event_row
from bridge.services.processing import BatchResult, EventProcessor
from bridge.settings import Settings, WorkerSettings

log = logging.getLogger(__name__)
EVENTS = Event.__table__
# Errors that say the database is unavailable (down, unreachable, locked, no connection to be had), not
# that an event is bad: the batch is retried whole, charging no attempt. Every other error is traced to
# the event that raised it, which alone is charged, retried and in the end parked: one bad event (a
# value a statement refuses, a rule that fails on it, a stored row that no longer reads back) must never
# stop the queue behind it.
_OUTAGES = (OperationalError, InterfaceError, PoolTimeout)

Pipeline = Callable[[Session, Sequence[Any]], BatchResult]

# The evaluator makes many small objects per event (states, records, rows) that die with the batch and
# form no cycles. At Python's default (a young collection every 700 allocations) the collector runs
# every few events and costs 15-20 % of a batch (benchmarks/evaluator.py); every 20,000 it is noise.
GC_THRESHOLDS = (20_000, 20, 20)


@functools.cache  # once per process
def tune_garbage_collection() -> None:
    """For a process that runs a worker: collections less often, and none walk what start-up made.

    Process-wide: under gunicorn with the embedded worker the web threads share it, to their gain.
    """
    gc.freeze()  # modules, settings, templates: here for the life of the process
    gc.set_threshold(*GC_THRESHOLDS)


class ClaimedEvent(NamedTuple):
    event: EventRow
    attempts: int
    next_attempt_at: datetime


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
        self._pipeline = (
            pipeline
            or EventProcessor(
                database,
                settings,
                RuleBookCache(settings.track_event_types, settings.worker.rules_refresh_seconds),
            ).process
        )
        self.name = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._driver = Driver(database.engine.dialect.name)
        mark = self._driver.mark
        self._claim_due = (
            f"SELECT {COLUMNS}, attempts, next_attempt_at FROM events "
            f"WHERE status = 'pending' AND next_attempt_at <= {mark} ORDER BY id LIMIT {mark}"
            + ("" if database.is_sqlite else " FOR UPDATE SKIP LOCKED")
        )
        self._mark_done = self._driver.update_rows(
            "events",
            [("attempts", "integer"), ("processed_at", "timestamptz")],
            [("id", "bigint")],
            "status = 'done', last_error = NULL",
        )

    def run_once(self) -> int:
        """Claim and process one batch; returns how many events it claimed."""
        started = time.perf_counter()
        try:
            claimed, outcomes, awards = self._run_batch(isolated=False)
        except _OUTAGES:
            raise
        except Exception as error:
            # One of the events fails the batch (a value a statement refuses, say). Find it: run the
            # batch again one event at a time, each in its own savepoint.
            message = f"{type(error).__name__}: {error}"[:500]
            log.warning("batch.isolating", extra={"worker": self.name, "error": message})
            claimed, outcomes, awards = self._run_batch(isolated=True)
        # Counted only once committed: a rolled-back batch made no awards.
        if claimed:
            log.debug("batch.processed", extra={"worker": self.name, "claimed": claimed, **outcomes})
            metrics.record_batch(outcomes, [a.badge_id for a in awards], time.perf_counter() - started)
            for award in awards:
                log.info(
                    "award.made",
                    extra={
                        "badge": award.badge_id,
                        "tier": award.tier,
                        "platform": award.platform,
                        "learner": award.learner,
                        "award_id": award.award_id,
                    },
                )
            if outcomes["failed"]:
                log.warning("events.parked", extra={"count": outcomes["failed"]})
        return claimed

    def _run_batch(self, *, isolated: bool) -> tuple[int, dict[str, int], list[AwardMade]]:
        outcomes = {"done": 0, "retry": 0, "failed": 0}
        awards: list[AwardMade] = []
        with self._database.write() as session:
            batch = self._claim(session)
            # (platform, learner, time) order: each learner's events are evaluated in the order they
            # happened, and the per-learner locks are taken in one global order.
            batch.sort(key=lambda c: (c.event.platform, c.event.learner, c.event.occurred_at, c.event.id))
            failures: dict[int, Exception] = {}
            if not isolated:
                result = self._pipeline(session, [claimed.event for claimed in batch])
                failures, awards = result.failures, result.awards
            else:
                for claimed in batch:
                    try:
                        with session.begin_nested():
                            result = self._pipeline(session, [claimed.event])
                    except _OUTAGES:
                        raise
                    except Exception as error:
                        failures[claimed.event.id] = error
                        continue
                    failures.update(result.failures)
                    awards.extend(result.awards)
            done: list[tuple[int, Any, int]] = []
            retry = []
            now = utcnow()
            processed_at = self._driver.time(now)
            for claimed in batch:
                error = failures.get(claimed.event.id)
                if error is None:
                    done.append((claimed.attempts + 1, processed_at, claimed.event.id))
                    continue
                outcome, values = self._failure(claimed, error, now)
                outcomes[outcome] += 1
                retry.append(values)
            outcomes["done"] = len(done)
            self._driver.write_rows(session, self._mark_done, done)  # see db.driver.Rows
            if retry:
                session.connection().execute(
                    update(EVENTS)
                    .where(EVENTS.c.id == bindparam("event"))
                    .values(
                        status=bindparam("new_status"),
                        attempts=bindparam("n"),
                        last_error=bindparam("error"),
                        next_attempt_at=bindparam("due"),
                    ),
                    retry,
                )
        return len(batch), outcomes, awards

    def _claim(self, session: Session) -> list[ClaimedEvent]:
        driver = self._driver
        rows = driver.fetch_all(session, self._claim_due, (driver.time(utcnow()), self._settings.batch_size))
        return [ClaimedEvent(event_row(driver, row), row[10], driver.read_time(row[11])) for row in rows]

    def _failure(self, claimed: ClaimedEvent, error: Exception, now: datetime) -> tuple[str, dict[str, Any]]:
        attempts = claimed.attempts + 1
        message = f"{type(error).__name__}: {error}"[:2000]
        log.warning(
            "event.failed", extra={"event_id": claimed.event.id, "attempts": attempts, "error": message}
        )
        parked = attempts >= self._settings.max_attempts
        due = (
            claimed.next_attempt_at
            if parked
            else now + timedelta(seconds=retry_delay(attempts, self._settings))
        )
        values = {
            "event": claimed.event.id,
            "new_status": "failed" if parked else "pending",
            "n": attempts,
            "error": message,
            "due": due,
        }
        return ("failed" if parked else "retry"), values

    def run(self, stop: threading.Event, *, drain: bool = False) -> None:
        """Process until ``stop`` is set (or, with ``drain``, until nothing is due)."""
        tune_garbage_collection()
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
