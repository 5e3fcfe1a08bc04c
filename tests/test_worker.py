"""The worker: batches, exactly-once effects, retries with backoff, parking failed events."""

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from bridge.bootstrap import open_database
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.domain.aggregates import Count
from bridge.domain.criteria import Criteria, Requirement
from bridge.domain.expressions import EventFilter
from bridge.domain.rules import RuleBook
from bridge.services.badges import RuleBookCache
from bridge.services.processing import BatchResult, EventProcessor
from bridge.services.queue import failed_events, retry_failed
from bridge.settings import Settings
from bridge.worker import Worker, retry_delay
from tests.conftest import make_settings, on_postgres
from tests.helpers import awards_of, learning_event, progress_values, statuses, store


def drain(worker: Worker) -> None:
    worker.run(threading.Event(), drain=True)


def make_due(database: Database) -> None:
    """Skip the backoff wait: make every pending event due now."""
    with database.write() as session:
        session.execute(update(Event).where(Event.status == "pending").values(next_attempt_at=utcnow()))


def test_processing_marks_events_done_and_awards_once(database: Database, settings: Settings) -> None:
    store(database, *(learning_event(f"login-{i}") for i in range(3)))
    worker = Worker(database, settings)
    assert worker.run_once() == 3
    assert worker.run_once() == 0
    assert statuses(database) == {"done": 3}
    assert awards_of(database) == [("42", "welcome")]


def test_batches_are_bounded_by_the_batch_size(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, worker={"batch_size": 2})
    database = open_database(settings)
    store(database, *(learning_event(f"e{i}", learner=str(i)) for i in range(5)))
    worker = Worker(database, settings)
    assert [worker.run_once() for _ in range(4)] == [2, 2, 1, 0]


def test_an_event_stored_again_after_processing_changes_nothing(
    database: Database, settings: Settings
) -> None:
    store(database, learning_event("login-1"))
    drain(Worker(database, settings))
    store(database, learning_event("login-1"))
    assert Worker(database, settings).run_once() == 0
    assert awards_of(database) == [("42", "welcome")]


class FailingPipeline:
    """Fails for chosen event keys, succeeds (with no effects) for the rest.

    A database error is raised, as a failing statement would, and so is any error with ``raises``;
    otherwise the error is reported per event, as the processor reports an event it could not evaluate.
    """

    def __init__(self, failing: set[str], error: Exception | None = None, *, raises: bool = False) -> None:
        self.failing, self.error, self.calls = failing, error, 0
        self.raises = raises or isinstance(error, DBAPIError)
        self.batch_sizes: list[int] = []

    def __call__(self, session: Session, events: Sequence[Any]) -> BatchResult:
        self.calls += 1
        self.batch_sizes.append(len(events))
        failures: dict[int, Exception] = {}
        for event in events:
            if event.event_key in self.failing:
                if self.raises and self.error is not None:
                    raise self.error
                failures[event.id] = self.error or ValueError(f"cannot process {event.event_key}")
        return BatchResult(failures, [])


def test_a_failing_event_is_retried_with_backoff_then_parked(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, worker={"max_attempts": 3, "backoff_base_seconds": 60})
    database = open_database(settings)
    store(database, learning_event("good"), learning_event("bad"))
    worker = Worker(database, settings, pipeline=FailingPipeline({"bad"}))

    assert worker.run_once() == 2
    with database.read() as session:
        bad = session.scalars(select(Event).where(Event.event_key == "bad")).one()
        assert (bad.status, bad.attempts) == ("pending", 1)
        assert bad.last_error == "ValueError: cannot process bad"
        assert 30 <= (bad.next_attempt_at - utcnow()).total_seconds() <= 60
    assert worker.run_once() == 0  # not due yet: backing off

    for _ in range(2):
        make_due(database)
        assert worker.run_once() == 1
    assert statuses(database) == {"done": 1, "failed": 1}
    [parked] = failed_events(database)
    assert (parked.event_key, parked.attempts) == ("bad", 3)


class _BuggyFilter(EventFilter):
    """A filter with a bug that shows only for learner 2."""

    def matches(self, context: Mapping[str, Any]) -> bool:
        if context["learner"] == "2":
            raise RuntimeError("a rule with a bug")
        return True


class WelcomeWithABug(RuleBookCache):
    """The shipped rules, but the welcome badge's requirement carries the buggy filter."""

    def current(self, session: Session) -> RuleBook:
        shipped = super().current(session)
        welcome = shipped.by_id["welcome"]
        requirement = Requirement(
            "g0r0", frozenset({"login"}), Count(1), 1.0, filter=_BuggyFilter("kind != ''")
        )
        buggy = replace(welcome, criteria=Criteria(((requirement,),)))
        return RuleBook([buggy if badge.id == "welcome" else badge for badge in shipped.badges])


def test_a_failure_drops_only_that_events_effects(database: Database, settings: Settings) -> None:
    """Learner 2's first event fails; learner 1 is awarded, learner 2's later event still counts."""
    store(
        database,
        learning_event("a", learner="1"),
        learning_event("b", learner="2", minutes=1),
    )
    processor = EventProcessor(database, settings, WelcomeWithABug(settings.track_event_types, 60))
    Worker(database, settings, pipeline=processor.process).run_once()
    assert awards_of(database) == [("1", "welcome")]
    assert statuses(database) == {"done": 1, "pending": 1}
    assert progress_values(database, "welcome") == {"1": 1.0}  # learner 2's effects were dropped
    with database.read() as session:
        failed = session.scalars(select(Event).where(Event.event_key == "b")).one()
    assert failed.last_error == "RuntimeError: a rule with a bug"


def test_an_event_that_makes_a_statement_fail_is_found_and_the_rest_commit(
    database: Database, settings: Settings
) -> None:
    store(database, *(learning_event(f"e{i}") for i in range(4)))
    constraint = IntegrityError("INSERT ...", {}, Exception("value too long"))
    pipeline = FailingPipeline({"e2"}, error=constraint)
    assert Worker(database, settings, pipeline=pipeline).run_once() == 4
    assert pipeline.batch_sizes == [4, 1, 1, 1, 1]  # the batch, then each event alone
    assert statuses(database) == {"done": 3, "pending": 1}


def test_an_event_that_makes_the_batch_raise_anything_fails_alone_and_is_parked(
    database_url: str, tmp_path: Path
) -> None:
    """Regression: an error raised by the batch (a KeyError for a learner, say) was retried forever,
    uncharged, so nothing behind the event was ever processed."""
    settings = make_settings(database_url, tmp_path, worker={"max_attempts": 2})
    database = open_database(settings)
    store(database, *(learning_event(f"e{i}", learner=str(i)) for i in range(3)))
    pipeline = FailingPipeline({"e1"}, error=KeyError(("demo", "1")), raises=True)
    worker = Worker(database, settings, pipeline=pipeline)
    assert worker.run_once() == 3
    assert statuses(database) == {"done": 2, "pending": 1}
    make_due(database)
    assert worker.run_once() == 1
    [parked] = failed_events(database)
    assert (parked.event_key, parked.attempts) == ("e1", 2)
    assert parked.last_error == "KeyError: ('demo', '1')"


@pytest.mark.skipif(on_postgres(), reason="PostgreSQL cannot store a NUL at all (the inbox test covers it)")
def test_a_stored_event_that_no_longer_reads_back_does_not_stop_the_queue(
    database_url: str, tmp_path: Path
) -> None:
    """Regression: a learner "\x00" stored before the inbox refused it read back from SQLite as "",
    failing every batch with a KeyError. Now it alone is charged and parked; the rest are processed."""
    settings = make_settings(database_url, tmp_path, worker={"max_attempts": 2})
    database = open_database(settings)
    store(database, learning_event("before", learner="1"))
    with database.write() as session:
        session.execute(insert(Event).values(**_row("nul", "\x00")))
    store(database, learning_event("after", learner="2", minutes=1))
    worker = Worker(database, settings)
    assert worker.run_once() == 3
    make_due(database)
    drain(worker)
    assert statuses(database) == {"done": 2, "failed": 1}
    [parked] = failed_events(database)
    assert parked.event_key == "nul"
    assert parked.last_error == "TextRefused: learner contains a NUL character"
    assert awards_of(database) == [("1", "welcome"), ("2", "welcome")]


def _row(key: str, learner: str) -> dict[str, Any]:
    """An events row written as the inbox wrote it before it refused such values."""
    now = utcnow()
    return {
        "platform": "demo", "event_key": key, "kind": "login", "learner": learner, "occurred_at": now,
        "received_at": now, "data": {}, "status": "pending", "attempts": 0, "next_attempt_at": now,
    }  # fmt: skip


def test_parked_events_can_be_retried(database: Database, settings: Settings) -> None:
    store(database, learning_event("x"))
    failing = Worker(
        database,
        make_settings(settings.effective_database_url, settings.data_dir, worker={"max_attempts": 1}),
        pipeline=FailingPipeline({"x"}),
    )
    failing.run_once()
    assert statuses(database) == {"failed": 1}
    assert retry_failed(database) == 1
    drain(Worker(database, settings))
    assert statuses(database) == {"done": 1}
    assert awards_of(database) == [("42", "welcome")]


def test_database_errors_fail_the_batch_without_charging_attempts(
    database: Database, settings: Settings
) -> None:
    store(database, learning_event("x"))
    outage = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    with pytest.raises(OperationalError):
        Worker(database, settings, pipeline=FailingPipeline({"x"}, error=outage)).run_once()
    with database.read() as session:
        event = session.scalars(select(Event)).one()
        assert (event.status, event.attempts) == ("pending", 0)


def test_the_run_loop_survives_a_failing_batch_and_stops_when_asked(
    database: Database, settings: Settings
) -> None:
    store(database, learning_event("x"))
    outage = OperationalError("SELECT 1", {}, Exception("down"))
    pipeline = FailingPipeline({"x"}, error=outage)
    stop = threading.Event()
    thread = threading.Thread(target=Worker(database, settings, pipeline=pipeline).run, args=(stop,))
    thread.start()
    stop.wait(1.2)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert pipeline.calls >= 2  # it went on trying after the first failure


def test_retry_delay_grows_exponentially_with_jitter_up_to_the_maximum(settings: Settings) -> None:
    worker_settings = settings.worker.model_copy(
        update={"backoff_base_seconds": 2, "backoff_max_seconds": 100}
    )
    for attempts, ceiling in [(1, 2), (2, 4), (3, 8), (10, 100)]:
        delays = [retry_delay(attempts, worker_settings) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
