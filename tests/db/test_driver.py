"""Values as the worker's driver-level statements write and read them."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bridge.db.driver import Driver, decode_json, encode_json, sqlite_time
from bridge.db.engine import Database
from bridge.db.models import Learner


def test_json_round_trips_what_orjson_refuses_through_the_standard_library() -> None:
    state = {"r": [2**70, "a", 1.5], "b": {"7": 2}}
    assert decode_json(encode_json(state)) == state


def test_sqlite_times_are_utc_in_sqlalchemys_storage_format() -> None:
    berlin = timezone(timedelta(hours=1))
    assert sqlite_time(datetime(2026, 11, 22, 10, 15, tzinfo=berlin)) == "2026-11-22 09:15:00.000000"
    assert sqlite_time(datetime(2026, 11, 22, 9, 15, 0, 7, tzinfo=UTC)) == "2026-11-22 09:15:00.000007"


def test_times_read_back_are_aware_utc_on_both_drivers() -> None:
    sqlite, postgres = Driver("sqlite"), Driver("postgresql")
    stored = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
    assert sqlite.read_time(sqlite.time(stored)) == stored
    assert postgres.read_time(stored.astimezone(timezone(timedelta(hours=-5)))) == stored
    assert sqlite.read_time(None) is None


def test_inserted_rows_ids_come_back_in_the_order_of_the_rows(database: Database) -> None:
    driver = Driver(database.engine.dialect.name)
    insert = (
        "INSERT INTO learners (platform, lms_user_id, points, pseudonym, created_at) "
        f"VALUES ({driver.marks(5)})"
    )
    at = driver.time(datetime(2026, 11, 22, 9, tzinfo=UTC))
    users = ["zoe", "adam", "mia"]
    with database.write() as session:
        ids = driver.insert_returning_ids(session, insert, [("demo", u, 0, f"p-{u}", at) for u in users])
        assert driver.insert_returning_ids(session, insert, []) == []
    with database.read() as session:
        found = dict(session.execute(select(Learner.id, Learner.lms_user_id)).all())
    assert [found[i] for i in ids] == users


def _learner_rows(driver: Driver, users: list[str]) -> list[tuple[object, ...]]:
    at = driver.time(datetime(2026, 11, 22, 9, tzinfo=UTC))
    return [("demo", u, 0, f"p-{u}", at) for u in users]


_LEARNER_COLUMNS = [
    ("platform", "text"), ("lms_user_id", "text"), ("points", "integer"), ("pseudonym", "text"),
    ("created_at", "timestamptz"),
]  # fmt: skip


def test_rows_statements_insert_update_and_return_ids_by_key(database: Database) -> None:
    """One statement for all rows on PostgreSQL, a row at a time on SQLite: the same rows either way."""
    driver = Driver(database.engine.dialect.name)
    insert = driver.insert_rows("learners", _LEARNER_COLUMNS, key=("platform", "lms_user_id"))
    points = driver.update_rows("learners", [("points", "integer")], [("id", "bigint")])
    users = ["zoe", "adam", "mia"]
    with database.write() as session, driver.pipeline(session):
        ids = driver.insert_returning_ids(session, insert, _learner_rows(driver, users))
        driver.write_rows(session, points, [(7, ids[0]), (9, ids[2])])
        driver.write_rows(session, points, [])
    with database.read() as session:
        found = {
            i: (u, p) for i, u, p in session.execute(select(Learner.id, Learner.lms_user_id, Learner.points))
        }
    assert [found[i] for i in ids] == [("zoe", 7), ("adam", 0), ("mia", 9)]


def test_plain_inserts_run_as_one_statement_with_json_and_wide_integers(database: Database) -> None:
    driver = Driver(database.engine.dialect.name)
    with database.write() as session:
        [learner] = driver.insert_returning_ids(
            session,
            driver.insert_rows("learners", _LEARNER_COLUMNS, key=("platform", "lms_user_id")),
            _learner_rows(driver, ["zoe"]),
        )
        insert = (
            "INSERT INTO learner_states (learner_id, states, updated_at) "
            f"VALUES ({driver.mark}, {driver.json_mark}, {driver.mark})"
        )
        at = driver.time(datetime(2026, 11, 22, 9, tzinfo=UTC))
        [other] = driver.insert_returning_ids(
            session,
            driver.insert_rows("learners", _LEARNER_COLUMNS, key=("platform", "lms_user_id")),
            _learner_rows(driver, ["adam"]),
        )
        driver.execute_many(
            session,
            insert,
            [(learner, encode_json({"n": 2**70, "s": 'a"b'}), at), (other, encode_json({}), at)],
        )
        rows = driver.fetch_all(
            session, "SELECT learner_id, CAST(states AS TEXT) FROM learner_states ORDER BY learner_id", ()
        )
    assert {i: decode_json(doc) for i, doc in rows} == {learner: {"n": 2**70, "s": 'a"b'}, other: {}}


def test_a_statement_failing_in_a_pipeline_raises_sqlalchemys_class(database: Database) -> None:
    """The worker tells a bad value from an outage by SQLAlchemy's classes, pipeline or not."""
    driver = Driver(database.engine.dialect.name)
    insert = driver.insert_rows("learners", _LEARNER_COLUMNS)
    with pytest.raises(IntegrityError), database.write() as session, driver.pipeline(session):
        driver.write_rows(session, insert, _learner_rows(driver, ["zoe"]) * 2)  # the same learner twice
        driver.fetch_each(session, [("SELECT 1", ()), ("SELECT 2", ())])


def test_reads_sent_together_come_back_each_with_its_rows(database: Database) -> None:
    driver = Driver(database.engine.dialect.name)
    with database.read() as session:
        assert driver.fetch_each(session, [("SELECT 1", ()), ("SELECT 2 UNION ALL SELECT 3", ())]) == [
            [(1,)],
            [(2,), (3,)],
        ]
        assert driver.fetch_each(session, []) == []


def test_json_text_in_rows_statements_is_stored_as_json_wide_integers_too(database: Database) -> None:
    driver = Driver(database.engine.dialect.name)
    at = driver.time(datetime(2026, 11, 22, 9, tzinfo=UTC))
    states = driver.insert_rows(
        "learner_states", [("learner_id", "bigint"), ("states", "jsonb"), ("updated_at", "timestamptz")]
    )
    with database.write() as session:
        ids = driver.insert_returning_ids(
            session,
            driver.insert_rows("learners", _LEARNER_COLUMNS, key=("platform", "lms_user_id")),
            _learner_rows(driver, ["zoe", "adam"]),
        )
        driver.write_rows(session, states, [(ids[0], encode_json({"n": 2**70, "s": "é\\n"}), at)])
        driver.write_rows(session, states, [(ids[1], encode_json({"records": {}}), at)])
        rows = driver.fetch_all(session, "SELECT learner_id, CAST(states AS TEXT) FROM learner_states", ())
    assert {i: decode_json(doc) for i, doc in rows} == {
        ids[0]: {"n": 2**70, "s": "é\\n"},
        ids[1]: {"records": {}},
    }
