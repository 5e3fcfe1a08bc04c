"""From an award to its receivers, as configured: the worker's award writes the outbox rows, the sender
(as `badge-bridge worker` and `serve` run it) delivers them to a real SMTP server and a webhook receiver
that verifies the Standard Webhooks signature; a receiver that fails twice gets the notification once more."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook

from bridge.bootstrap import open_database
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models_notify import OutboxNotification
from bridge.notify.channels import make_sender
from bridge.notify.outbox import parked
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import learning_event, store
from tests.notify.receivers import Received, Reply, serve
from tests.notify.test_email import Mailbox, free_port, parts

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def test_an_award_is_emailed_with_its_image_and_sent_to_a_signed_webhook_once(
    mailbox: tuple[Mailbox, int], database_url: str, tmp_path: Path
) -> None:
    box, smtp_port = mailbox
    verifier, answers = Webhook(SECRET), [500, 500, 200]

    def receiver(request: Received) -> Reply:
        verifier.verify(request.body, request.headers)  # raises on a bad signature
        return Reply(answers.pop(0) if answers else 200)

    with serve(receiver) as hooks:
        settings = make_settings(
            database_url,
            tmp_path,
            notification_type=["in-app", "email", "webhook"],
            notifications={
                "backoff_base_seconds": 0.01,
                "email": {
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "security": "none",
                    "from_address": "b@x.org",
                },
                "webhooks": [{"name": "crm", "url": hooks.url, "secret": SECRET}],
            },
        )
        database = open_database(settings)
        learner_with_email(database, settings)
        sender = make_sender(database, settings)
        for _ in range(3):  # the webhook answers 500 twice: due again after a backoff
            sender.run_once()
            make_due(database)
        assert sender.run_once() == 0
    [message] = box.messages
    text, html, image = parts(message)
    assert message["To"] == "ada@example.edu" and "Welcome" in message["Subject"]
    assert "/ob/assertions/" in text and "cid:" in html and image is not None
    assert image.get_content().startswith(b"\x89PNG")  # the baked badge
    ids = {request.headers["webhook-id"] for request in hooks.requests}
    assert len(hooks.requests) == 3 and len(ids) == 1  # one notification, retried until delivered
    body = json.loads(hooks.requests[-1].body)
    assert body["type"] == "award.made" and body["data"]["award"]["badge_id"] == "welcome"
    assert parked(database) == []


def learner_with_email(database: Database, settings: Settings) -> None:
    from bridge.issuing.records import set_badge_profile

    store(database, learning_event("first", kind="enrolled"))  # the learner, before any badge
    Worker(database, settings).run(threading.Event(), drain=True)
    set_badge_profile(database, "demo", "42", public=False, actor="test", email="ada@example.edu")
    store(database, learning_event("login-1"))
    Worker(database, settings).run(threading.Event(), drain=True)


def make_due(database: Database) -> None:
    with database.write() as session:
        session.execute(update(OutboxNotification).values(next_attempt_at=utcnow()))
