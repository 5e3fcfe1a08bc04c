"""PostgreSQL: a worker that waits for another's lock on a learner reads the states that worker committed.
Read in the same statement as the lock, they would be the states from before its commit, and the other
worker's progress would be lost (found by the fault tests: counters one or two short)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import make_url

from bridge.db.engine import Database
from bridge.domain.evaluation import AwardPolicy
from bridge.services.ledgers import LedgerReader
from tests.conftest import on_postgres


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL row locks (SQLite has one writer at a time)")
def test_a_learner_locked_after_waiting_is_read_with_the_states_just_committed(
    database: Database, database_url: str
) -> None:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    now = datetime.now(UTC)
    with psycopg.connect(dsn, autocommit=True) as setup:
        row = setup.execute(
            "INSERT INTO learners (platform, lms_user_id, points, pseudonym, created_at) "
            "VALUES ('demo', 'L0', 0, 'p-L0', %s) RETURNING id",
            (now,),
        ).fetchone()
        assert row is not None
        setup.execute(
            "INSERT INTO learner_states (learner_id, states, updated_at) VALUES (%s, '{\"n\": 1}', %s)",
            (row[0], now),
        )
    reader = LedgerReader("postgresql", UTC, AwardPolicy(True, 0), timedelta(0))
    with psycopg.connect(dsn) as first, psycopg.connect(dsn) as second:
        first.execute(reader._lock_learners, (["L0"], "demo")).fetchall()  # worker A locks the learner
        first.execute("UPDATE learner_states SET states = '{\"n\": 2}' WHERE learner_id = %s", (row[0],))
        seen: list[object] = []

        def worker_b() -> None:  # its lock waits for A; its read comes after, as in one trip
            second.execute(reader._lock_learners, (["L0"], "demo")).fetchall()
            seen.extend(second.execute(reader._states_after_locks, ("demo", ["L0"])).fetchall())

        waiting = threading.Thread(target=worker_b)
        waiting.start()
        waiting.join(1.0)
        assert waiting.is_alive()  # blocked on A's row lock
        first.commit()
        waiting.join(10)
        second.rollback()
    assert seen == [(row[0], '{"n": 2}')]
