"""Faults under load: nothing lost, nothing stored or counted twice, and no step by hand to recover.

An LMS (``tests.e2e.faults.RetryingLms``) posts 400 uniquely keyed events, singly and in batches, over
four connections side by side to ``badge-bridge serve`` (real gunicorn, two workers, each with its
embedded worker), and resends whatever was not answered 2xx with the same event keys, as an LMS
retrying a webhook does. In the middle of the stream:

- **The whole server is SIGKILLed** (gunicorn's master, then its workers: no handler runs, requests and
  batches are cut wherever they were) and started again on the same data and port. The LMS meets
  refused connections until it is back, and no answer but 200, 202 or a 503 with Retry-After.
- **PostgreSQL crashes and restarts** (a throwaway cluster of the test's own, ``pg_ctl stop -m
  immediate``, then started again; PostgreSQL runs only). While it is down every ingest request is
  answered 503 with Retry-After, quickly: never a 500, never a hang past the request timeout;
  ``/healthz`` says 503. Once it is back the same server processes, never restarted, take events and
  process them again by themselves.

After either, every event is stored exactly once (no key missing, none twice), processed exactly once
(status done after one committed attempt: a batch cut by the fault is rolled back whole and charges no
attempt) and its effects made once: each learner's counter equals their number of events, and each
learner holds the one-event badge once.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from bridge.bootstrap import open_database
from bridge.db.engine import Database
from bridge.db.migrate import upgrade
from bridge.db.models import Event
from bridge.services.api_keys import create_key
from bridge.web.errors import RETRY_AFTER_SECONDS
from tests.conftest import free_port, make_settings, on_postgres, process_env, write_config
from tests.e2e.faults import (
    RetryingLms,
    alive,
    descendants,
    kill_server_hard,
    postgres_binaries,
    throwaway_postgres,
)
from tests.e2e.processes import BADGE_BRIDGE, http_ready, running, wait_until
from tests.helpers import START, awards_of, count_badge_template, progress_values, statuses

LEARNERS = 20
PER_LEARNER = 20
EVENTS = LEARNERS * PER_LEARNER


def lms_events() -> list[dict[str, Any]]:
    return [
        {
            "platform": "demo",
            "event_key": f"fault-{n}",
            "kind": "login",
            "learner": f"L{n % LEARNERS}",
            "occurred_at": (START + timedelta(minutes=n)).isoformat(),
        }
        for n in range(EVENTS)
    ]


def configure(database_url: str, tmp_path: Path) -> tuple[dict[str, str], Database, str]:
    """Settings for the server's processes, the database opened here, and an API key for the LMS."""
    templates = tmp_path / "templates"
    count_badge_template(templates, "welcome", "login", 1)
    count_badge_template(templates, "counter", "login", 1_000_000)  # never complete: it counts
    extra = (
        f'badge_templates_dir = "{templates.as_posix()}"\n'
        "[worker]\nidle_sleep_seconds = 0.05\n"
        "[rate_limits]\nenabled = false\n"  # the LMS's retries are the point, not its pace
    )
    config = write_config(tmp_path / "c.toml", database_url, tmp_path, extra=extra)
    database = open_database(make_settings(database_url, tmp_path, badge_templates_dir=templates))
    return process_env(config), database, create_key(database, "lms")


def serve(base: str) -> list[str]:
    return [BADGE_BRIDGE, "serve", "--bind", base.removeprefix("http://"), "--workers", "2"]


def assert_answers_were_only_2xx_or_503(lms: RetryingLms) -> None:
    assert lms.failures == []
    assert lms.delivered == EVENTS
    assert set(lms.answers) <= {200, 202, 503}, lms.unexpected[:5]  # never a 500
    assert lms.count("timeouts") == 0  # never a hang past the request timeout
    for response in lms.unavailable:
        assert response.headers.get("Retry-After") == str(RETRY_AFTER_SECONDS)
        assert response.json()["error"]["code"] == "database_unavailable"


def assert_stored_and_processed_once(database: Database) -> None:
    with database.read() as session:
        keys = Counter(session.scalars(select(Event.event_key)))
        attempts = Counter(session.scalars(select(Event.attempts)))
    expected = {f"fault-{n}" for n in range(EVENTS)}
    missing = sorted(expected - set(keys))
    twice = sorted(key for key, count in keys.items() if count > 1)
    strangers = sorted(set(keys) - expected)
    assert (missing, twice, strangers) == ([], [], [])
    assert statuses(database) == {"done": EVENTS}
    assert attempts == {1: EVENTS}  # one committed attempt each: nothing redone, nothing charged
    # Each event's effect made once: a counter short of PER_LEARNER lost one, past it counted one twice.
    assert progress_values(database, "counter") == {f"L{n}": float(PER_LEARNER) for n in range(LEARNERS)}
    assert sorted(awards_of(database)) == sorted((f"L{n}", "welcome") for n in range(LEARNERS))


def test_a_server_killed_whole_mid_stream_and_started_again_loses_no_event_and_doubles_none(
    database_url: str, tmp_path: Path
) -> None:
    env, database, key = configure(database_url, tmp_path)
    base = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with running(serve(base), env, tmp_path / "serve-killed.log") as first:
        wait_until(http_ready(f"{base}/healthz"), 60, "the server to answer")
        with RetryingLms(base, key, lms_events()) as lms:
            wait_until(lambda: lms.delivered >= EVENTS // 3, 60, "a third of the events to be delivered")
            killed = kill_server_hard(first)
            delivered_at_kill = lms.delivered
            with running(serve(base), env, tmp_path / "serve-restarted.log") as second:
                lms.wait(120)
                restarted = descendants(second.pid)
    assert not any(alive(pid) for pid in [first.pid, second.pid, *killed, *restarted])

    assert delivered_at_kill < EVENTS  # the kill fell in the middle of the stream
    assert lms.count("connection_errors") > 0  # and the LMS met the dead server
    assert_answers_were_only_2xx_or_503(lms)
    subprocess.run([BADGE_BRIDGE, "worker", "--drain"], env=env, check=True, capture_output=True, timeout=120)
    assert_stored_and_processed_once(database)
    assert time.monotonic() - started < 120
    database.dispose()


def _can_run_a_postgres_cluster() -> str | None:
    """Why a throwaway PostgreSQL cluster cannot be run here, or None."""
    if postgres_binaries() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run a PostgreSQL server as"
    return None


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL only: set BRIDGE_TEST_DATABASE_URL")
def test_a_postgres_crash_under_load_answers_503_then_recovers_by_itself(tmp_path: Path) -> None:
    reason = _can_run_a_postgres_cluster()
    if reason is not None:
        pytest.skip(reason)
    binaries = postgres_binaries()
    assert binaries is not None
    started = time.monotonic()
    with throwaway_postgres(binaries, free_port()) as postgres:
        migrated = Database(postgres.url)
        upgrade(migrated)
        migrated.dispose()
        env, database, key = configure(postgres.url, tmp_path)
        base = f"http://127.0.0.1:{free_port()}"
        try:
            with running(serve(base), env, tmp_path / "serve.log") as server:
                wait_until(http_ready(f"{base}/healthz"), 60, "the server to answer")
                workers = sorted(descendants(server.pid))
                with RetryingLms(base, key, lms_events(), request_timeout=15) as lms:
                    wait_until(
                        lambda: lms.delivered >= EVENTS // 4, 60, "a quarter of the events to be delivered"
                    )
                    postgres.crash()
                    crashed_at, delivered_at_crash = time.monotonic(), lms.delivered
                    wait_until(
                        # Past the connections the crash cut, to new ones refused.
                        lambda: len(lms.unavailable) >= 8 and time.monotonic() > crashed_at + 2,
                        30,
                        "the LMS to be answered 503 while PostgreSQL is down",
                    )
                    health = requests.get(f"{base}/healthz", timeout=15)
                    assert health.status_code == 503 and health.headers.get("Retry-After")
                    postgres.start()
                    lms.wait(120)
                wait_until(
                    lambda: statuses(database) == {"done": EVENTS},
                    90,
                    "the embedded workers to process every event",
                )
                assert requests.get(f"{base}/healthz", timeout=15).status_code == 200
                # The same processes all along: nothing restarted, by hand or by gunicorn.
                assert server.poll() is None and sorted(descendants(server.pid)) == workers

            assert delivered_at_crash < EVENTS  # the crash fell in the middle of the stream
            assert lms.count("connection_errors") == 0  # the server itself never went away
            assert_answers_were_only_2xx_or_503(lms)
            assert_stored_and_processed_once(database)
        finally:
            database.dispose()
    assert time.monotonic() - started < 150
