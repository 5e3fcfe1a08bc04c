"""The inbox: each (platform, event_key) stored once, values stored as the models read them back."""

import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.domain.events import LearningEvent
from bridge.services.ingest import Inbox
from tests.helpers import learning_event


def count(database: Database) -> int:
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


def test_every_field_reads_back_through_the_models(database: Database) -> None:
    occurred = datetime(2026, 11, 1, 10, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    event = LearningEvent(
        platform="demo",
        event_key="k",
        kind="assignment_graded",
        learner="42",
        occurred_at=occurred,
        course="DL101",
        item="essay-2",
        score=0.875,
        data={"points": 35, "possible": 40, "nested": {"ok": True}},
    )
    [stored] = Inbox(database).store([event])
    with database.read() as session:
        row = session.get(Event, stored.id)
        assert row is not None
        assert (row.platform, row.event_key, row.kind, row.learner, row.course, row.item, row.score) == (
            "demo",
            "k",
            "assignment_graded",
            "42",
            "DL101",
            "essay-2",
            0.875,
        )
        assert row.occurred_at == occurred and row.occurred_at.tzinfo == UTC
        assert row.data == {"points": 35, "possible": 40, "nested": {"ok": True}}
        assert (row.status, row.attempts, row.processed_at) == ("pending", 0, None)
        assert row.next_attempt_at == row.received_at


def test_a_duplicate_answers_the_first_id(database: Database) -> None:
    inbox = Inbox(database)
    [first] = inbox.store([learning_event("a")])
    [again] = inbox.store([learning_event("a", learner="someone-else")])
    assert (first.created, again.created, again.id) == (True, False, first.id)
    assert count(database) == 1


def test_concurrent_callers_each_get_their_own_answers(database: Database) -> None:
    inbox = Inbox(database)
    answers: dict[tuple[int, int], tuple[int, bool]] = {}
    start = threading.Barrier(8)

    def post(thread: int) -> None:
        start.wait()
        for n in range(40):
            # Keys overlap across threads: each key is posted by two threads.
            [stored] = inbox.store([learning_event(f"key-{(thread // 2) * 40 + n}")])
            answers[thread, n] = (stored.id, stored.created)

    threads = [threading.Thread(target=post, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert count(database) == 160
    for pair in range(4):
        for n in range(40):
            first, second = answers[pair * 2, n], answers[pair * 2 + 1, n]
            assert first[0] == second[0]  # the same key, the same id
            assert {first[1], second[1]} == {True, False}  # created once, a duplicate once
    assert Counter(created for _, created in answers.values()) == {True: 160, False: 160}


def test_a_failing_request_fails_only_its_caller(database: Database) -> None:
    inbox = Inbox(database)
    unstorable = LearningEvent("demo", "bad", "login", "1", datetime.now(UTC), data={"x": object()})
    outcomes: dict[str, object] = {}
    start = threading.Barrier(6)

    def post(name: str, event: LearningEvent) -> None:
        start.wait()
        try:
            outcomes[name] = inbox.store([event])[0].created
        except TypeError as error:
            outcomes[name] = error

    threads = [
        threading.Thread(target=post, args=(f"good-{n}", learning_event(f"good-{n}"))) for n in range(5)
    ]
    threads.append(threading.Thread(target=post, args=("bad", unstorable)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert isinstance(outcomes.pop("bad"), TypeError)
    assert outcomes == {f"good-{n}": True for n in range(5)}
    assert count(database) == 5
    [later] = inbox.store([learning_event("after")])  # the inbox goes on working
    assert later.created


def test_a_batch_is_all_or_nothing(database: Database) -> None:
    unstorable = LearningEvent("demo", "bad", "login", "1", datetime.now(UTC), data={"x": object()})
    with pytest.raises(TypeError):
        Inbox(database).store([learning_event("a"), unstorable])
    assert count(database) == 0


def test_a_batch_answers_each_event_in_order_new_or_stored_before(database: Database) -> None:
    inbox = Inbox(database)
    [before] = inbox.store([learning_event("b")])
    answers = inbox.store([learning_event("a"), learning_event("b"), learning_event("c")])
    assert [a.created for a in answers] == [True, False, True]
    assert answers[1].id == before.id
    assert len({a.id for a in answers}) == 3
    assert count(database) == 3


def test_a_key_repeated_in_a_batch_is_stored_once_from_its_first_event(database: Database) -> None:
    inbox = Inbox(database)
    first, again = inbox.store([learning_event("a", learner="first"), learning_event("a", learner="second")])
    assert (first.created, again.created, again.id) == (True, False, first.id)
    with database.read() as session:
        assert session.scalars(select(Event.learner)).all() == ["first"]


def test_a_large_batch_is_stored_whole_and_in_order(database: Database) -> None:
    # On SQLite three statements in one transaction; on PostgreSQL one.
    inbox = Inbox(database)
    inbox.store([learning_event(f"key-{n}") for n in range(0, 1200, 7)])  # some stored before
    answers = inbox.store([learning_event(f"key-{n}") for n in range(1200)])
    assert [a.created for a in answers] == [n % 7 != 0 for n in range(1200)]
    assert count(database) == 1200
    with database.read() as session:
        keys_by_id = {row.id: row.event_key for row in session.execute(select(Event.id, Event.event_key))}
    assert [keys_by_id[a.id] for a in answers] == [f"key-{n}" for n in range(1200)]
    new_ids = [a.id for a in answers if a.created]
    assert new_ids == sorted(new_ids)  # arrival order is id order: the worker claims by id


def test_concurrent_batches_of_the_same_new_keys_in_any_order_are_each_answered_in_full(
    database: Database,
) -> None:
    # On PostgreSQL each thread inserts on its own connection: two batches holding the same new keys in
    # opposite orders wait on each other's rows (a deadlock the server breaks by failing one of them).
    inbox = Inbox(database)
    threads_count, rounds, keys_count = 8, 6, 200
    in_step = threading.Barrier(threads_count)
    answers: list[tuple[str, int, bool]] = []
    failures: list[BaseException] = []

    def post(thread: int) -> None:
        for round_ in range(rounds):
            keys = [f"key-{round_}-{n}" for n in range(keys_count)]
            random.Random(thread * 100 + round_).shuffle(keys)
            in_step.wait()
            try:
                stored = inbox.store([learning_event(key) for key in keys])
            except Exception as error:
                failures.append(error)
                continue
            answers.extend((key, s.id, s.created) for key, s in zip(keys, stored, strict=True))

    threads = [threading.Thread(target=post, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    all_keys = {f"key-{r}-{n}" for r in range(rounds) for n in range(keys_count)}
    assert count(database) == len(all_keys)
    assert Counter(key for key, _, created in answers if created) == dict.fromkeys(all_keys, 1)
    assert len({(key, id_) for key, id_, _ in answers}) == len(all_keys)  # one id for each key
