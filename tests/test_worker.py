"""The worker: batches, exactly-once effects, retries with backoff, parking failed events."""

import threading
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bridge.bootstrap import open_database
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.services.processing import AwardMade
from bridge.services.queue import failed_events, retry_failed
from bridge.settings import Settings
from bridge.worker import Worker, retry_delay
from tests.conftest import make_settings
from tests.helpers import awards_of, learning_event, statuses, store


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
    """Fails for chosen event keys, succeeds (with no effects) for the rest."""

    def __init__(self, failing: set[str], error: Exception | None = None) -> None:
        self.failing, self.error, self.calls = failing, error, 0

    def __call__(self, session: Session, event: Event) -> list[AwardMade]:
        self.calls += 1
        if event.event_key in self.failing:
            raise self.error or ValueError(f"cannot process {event.event_key}")
        return []


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


def test_a_failure_rolls_back_only_that_events_effects(database: Database, settings: Settings) -> None:
    store(database, learning_event("a", learner="1"), learning_event("b", learner="2"))

    class FailsAfterItsEffects(FailingPipeline):
        def __call__(self, session: Session, event: Event) -> list[AwardMade]:
            made = real(session, event)
            return super().__call__(session, event) or made

    real = Worker(database, settings)._pipeline
    Worker(database, settings, pipeline=FailsAfterItsEffects({"b"})).run_once()
    assert awards_of(database) == [("1", "welcome")]  # learner 2's award was rolled back with the failure


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
