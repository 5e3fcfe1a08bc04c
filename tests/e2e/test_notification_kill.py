"""A worker killed after an award is committed but before its notification is delivered: the next worker
delivers it, once. The receiver holds the first delivery open, the worker is SIGKILLed while it waits, and
the restarted worker sends the same notification (the same ``webhook-id``) when the dead one's lease on it
ends; the receiver accepts it, and nothing is sent after that."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import select

from bridge.bootstrap import open_database
from bridge.db.models_notify import OutboxNotification
from bridge.services.ingest import Inbox
from tests.conftest import make_settings, process_env, write_config
from tests.e2e.processes import BADGE_BRIDGE, kill_hard, running, wait_until
from tests.helpers import awards_of, count_badge_template, learning_event
from tests.notify.receivers import Received, Reply, serve

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LEASE_SECONDS = 8  # more than three times the webhook's timeout, as the settings require
TIMEOUT_SECONDS = 2.5


def test_a_worker_killed_before_delivering_is_followed_by_one_delivery_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    held = threading.Event()

    def receiver(request: Received) -> Reply:
        if not held.is_set():  # the first delivery: kept waiting until the worker is dead
            held.set()
            return Reply(200, delay=TIMEOUT_SECONDS * 0.8)
        return Reply(200)

    templates = tmp_path / "templates"
    count_badge_template(templates, "welcome", "login", 1)
    with serve(receiver) as hook:
        extra = (
            f'badge_templates_dir = "{templates.as_posix()}"\nnotification_type = ["webhook"]\n'
            f"[notifications]\nlease_seconds = {LEASE_SECONDS}\nbackoff_base_seconds = 0.1\n"
            f'[[notifications.webhooks]]\nname = "crm"\nurl = "{hook.url}"\nsecret = "{SECRET}"\n'
            f"timeout_seconds = {TIMEOUT_SECONDS}\n"
        )
        env = process_env(write_config(tmp_path / "c.toml", database_url, tmp_path, extra=extra))
        database = open_database(make_settings(database_url, tmp_path, badge_templates_dir=templates))
        Inbox(database).store([learning_event("login-1")])
        with running([BADGE_BRIDGE, "worker"], env, tmp_path / "killed.log") as victim:
            wait_until(held.is_set, 60, "the first delivery to reach the receiver")
            kill_hard(victim)  # the award is committed; its delivery never answered
        assert [badge for _, badge in awards_of(database)] == ["welcome"]
        killed_at = time.monotonic()

        with running([BADGE_BRIDGE, "worker"], env, tmp_path / "restarted.log"):
            wait_until(lambda: len(hook.requests) == 2, 60, "the restarted worker to deliver")
            waited = time.monotonic() - killed_at
            time.sleep(2)  # nothing more comes
        assert len(hook.requests) == 2
    assert waited >= LEASE_SECONDS - TIMEOUT_SECONDS  # the dead worker's lease held it until then
    first, second = hook.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # the same notification, again
    with database.read() as session:
        [row] = session.scalars(select(OutboxNotification)).all()
        # One attempt on record, the one that was answered: the killed worker's never finished.
        assert (row.status, row.attempts) == ("sent", 1)
    assert [badge for _, badge in awards_of(database)] == ["welcome"]
