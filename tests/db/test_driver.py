"""Values as the worker's driver-level statements write and read them."""

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import select

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
