"""The outbox: a row per award and channel in the award's transaction, in-app notifications a learner
reads and marks seen, and a sender that retries with backoff, parks what keeps failing and delivers a
row left behind by a sender that died."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from bridge.app import create_app
from bridge.bootstrap import open_database
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models_notify import OutboxNotification
from bridge.notify.messages import DeliveryError, Notification
from bridge.notify.outbox import parked, retry_parked, routes
from bridge.notify.sender import Sender
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import learning_event, store

HOOK = {"name": "crm", "url": "https://crm.example.org/hooks", "secret": "whsec_" + "A" * 32}


class FlakyChannel:
    """A receiver that refuses the first ``failures`` deliveries, then accepts; records what arrived."""

    name = "webhook"

    def __init__(self, failures: int = 0, *, permanent: bool = False) -> None:
        self.failures, self.permanent = failures, permanent
        self.delivered: list[Notification] = []
        self.tries = 0

    def deliver(self, notification: Notification) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise DeliveryError("503 from the receiver", permanent=self.permanent)
        self.delivered.append(notification)


def render(row: OutboxNotification) -> Notification:
    return Notification(
        row.id, row.kind, row.channel, row.created_at, {"award": {"id": row.award_id}}, row.target
    )  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_path,
        notification_type=["in-app", "webhook"],
        notifications={"webhooks": [HOOK], "max_attempts": 3, "backoff_base_seconds": 0.01},
    )


def award_welcome(database: Database, settings: Settings, learner: str = "42") -> None:
    store(database, learning_event(f"login-{learner}", learner=learner))
    Worker(database, settings).run(threading.Event(), drain=True)


def outbox(database: Database) -> list[tuple[str, str, str | None, str]]:
    with database.read() as session:
        rows = session.scalars(select(OutboxNotification).order_by(OutboxNotification.id))
        return [(r.kind, r.channel, r.target, r.status) for r in rows]


def make_due(database: Database) -> None:
    with database.write() as session:
        session.execute(update(OutboxNotification).values(next_attempt_at=utcnow()))


def test_an_award_writes_a_row_per_channel_in_its_own_transaction(
    database: Database, settings: Settings
) -> None:
    assert routes(settings, "award.made") == [("in-app", None), ("webhook", "crm")]
    award_welcome(database, settings)
    assert outbox(database) == [
        ("award.made", "in-app", None, "sent"),  # delivered by being written
        ("award.made", "webhook", "crm", "pending"),
    ]


def test_in_app_notifications_are_listed_for_the_learner_and_marked_seen(
    database: Database, settings: Settings
) -> None:
    award_welcome(database, settings)
    client: FlaskClient = create_app(settings, database).test_client()
    from bridge.services.api_keys import create_key

    auth = {"Authorization": f"Bearer {create_key(database, 'pages')}"}
    url = "/api/v1/learners/demo/42/notifications"
    [unseen] = client.get(f"{url}?unseen=true", headers=auth).get_json()["notifications"]
    assert (unseen["kind"], unseen["badge_id"], unseen["badge_name"], unseen["seen"]) == (
        "award.made", "welcome", "Welcome", False,
    )  # fmt: skip
    assert client.post(f"{url}/seen", json={"ids": [unseen["id"]]}, headers=auth).get_json() == {"marked": 1}
    assert client.get(f"{url}?unseen=true", headers=auth).get_json()["notifications"] == []
    assert client.get(url, headers=auth).get_json()["notifications"][0]["seen"] is True
    assert client.get("/api/v1/learners/demo/nobody/notifications", headers=auth).status_code == 404


def test_a_failing_delivery_is_retried_with_backoff_then_sent_once(
    database: Database, settings: Settings
) -> None:
    award_welcome(database, settings)
    channel = FlakyChannel(failures=2)
    sender = Sender(database, settings, {"webhook": channel}, render)
    for _ in range(3):
        make_due(database)
        assert sender.run_once() == 1
    assert [n.kind for n in channel.delivered] == ["award.made"]
    assert outbox(database)[-1] == ("award.made", "webhook", "crm", "sent")
    make_due(database)
    assert sender.run_once() == 0


def test_a_delivery_that_keeps_failing_or_is_refused_for_good_is_parked_and_can_be_retried(
    database: Database, settings: Settings
) -> None:
    award_welcome(database, settings)
    sender = Sender(database, settings, {"webhook": FlakyChannel(failures=99)}, render)
    for _ in range(3):  # max_attempts
        make_due(database)
        sender.run_once()
    [failed] = parked(database)
    assert (failed.channel, failed.attempts, failed.last_error) == ("webhook", 3, "503 from the receiver")
    assert retry_parked(database) == 1
    Sender(database, settings, {"webhook": FlakyChannel()}, render).run_once()
    assert parked(database) == [] and outbox(database)[-1][3] == "sent"

    award_welcome(database, settings, learner="43")
    Sender(database, settings, {"webhook": FlakyChannel(failures=1, permanent=True)}, render).run_once()
    assert [p.attempts for p in parked(database)] == [1]  # no retry can help a permanent refusal


def test_a_row_claimed_by_a_sender_that_died_is_delivered_once_by_another(
    database: Database, settings: Settings
) -> None:
    award_welcome(database, settings)
    dead = Sender(database, settings, {"webhook": FlakyChannel()}, render)
    [claimed] = dead._claim()  # claimed, then the process was killed before delivering
    survivor = FlakyChannel()
    other = Sender(database, settings, {"webhook": survivor}, render)
    assert other.run_once() == 0  # the lease holds while the first sender may still deliver
    with database.write() as session:  # the lease runs out
        session.execute(update(OutboxNotification).values(leased_until=utcnow()))
    assert other.run_once() == 1 and other.run_once() == 0
    assert [n.id for n in survivor.delivered] == [claimed.id]


def test_notification_type_takes_one_channel_or_several(database_url: str, tmp_path: Path) -> None:
    one: Any = make_settings(database_url, tmp_path, notification_type="in-app")
    assert one.notification_type == ["in-app"]
    none = make_settings(database_url, tmp_path, notification_type=[])
    award_database = open_database(none)
    award_welcome(award_database, none)
    assert outbox(award_database) == []


def test_a_revocation_is_told_on_the_channels_that_want_it(database: Database, settings: Settings) -> None:
    from bridge.services.manual_awards import ManualAwards

    award_welcome(database, settings)
    with database.read() as session:
        award_id = session.scalar(select(OutboxNotification.award_id))
    ManualAwards(database, settings).revoke(award_id=award_id, actor="teacher", reason="copied the quiz")
    assert outbox(database)[2:] == [("award.revoked", "in-app", None, "sent")]  # the webhook wants award.made


def test_the_cli_lists_parked_notifications_and_queues_them_again(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from bridge.cli import main
    from tests.conftest import process_env, write_config

    award_welcome(database, settings)
    Sender(database, settings, {"webhook": FlakyChannel(failures=1, permanent=True)}, render).run_once()
    config = write_config(tmp_path / "c.toml", settings.effective_database_url, tmp_path)
    env = process_env(config)
    listed = CliRunner().invoke(main, ["notifications", "failed"], env=env)
    assert listed.exit_code == 0 and "webhook crm\tattempts=1\t503 from the receiver" in listed.stdout
    assert CliRunner().invoke(main, ["notifications", "retry"], env=env).exit_code != 0
    again = CliRunner().invoke(main, ["notifications", "retry", "--all"], env=env)
    assert again.stdout.strip() == "1 notification(s) queued again"
