"""Alerts for the people who run the bridge: a badge waiting for approval and a failed sync each write an
alert in the transaction that records them, delivered by email to ``notifications.email.admin_address``
and to each webhook that subscribed to the kind; learners' channels (in-app, xAPI) never get them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from aiosmtpd.controller import Controller
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from bridge.bootstrap import open_database
from bridge.db.engine import Database
from bridge.db.models_notify import OutboxNotification
from bridge.notify.channels import make_sender
from bridge.notify.outbox import routes
from bridge.services.sync import SyncService
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import PLATFORMS, make_settings
from tests.connectors.support import CANVAS_URL
from tests.helpers import learning_event, store
from tests.notify.receivers import Received, Reply, serve
from tests.notify.test_email import Mailbox, free_port, parts

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CANVAS = {"id": "canvas1", "kind": "canvas", "base_url": CANVAS_URL, "token": "t", "courses": ["565"]}
FAST_SYNC = {"attempts": 1, "backoff_base_seconds": 0.001, "backoff_max_seconds": 0.002, "timeout_seconds": 2}
APPROVED_BY_HAND = """\
id = "mentor"
name = "Mentor"
description = "Helped others."
image = "mentor.svg"
requires_approval = true

[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login"]
target = 1
"""


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def alerting(database_url: str, tmp_path: Path, smtp_port: int, hook_url: str, **changes: Any) -> Settings:
    templates = tmp_path / "badges"
    templates.mkdir()
    (templates / "mentor.toml").write_text(APPROVED_BY_HAND)
    (templates / "mentor.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    return make_settings(
        database_url,
        tmp_path,
        badge_templates_dir=str(templates),
        platforms=[*PLATFORMS, CANVAS],
        sync=FAST_SYNC,
        notification_type=["in-app", "webhook", "xapi"],
        notifications={
            "backoff_base_seconds": 0.01,
            "email": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "none",
                "from_address": "bridge@example.edu",
                "admin_address": "badges-admin@example.edu",
            },
            "webhooks": [
                {
                    "name": "ops",
                    "url": hook_url,
                    "secret": SECRET,
                    "events": ["approval.requested", "sync.failed"],
                }
            ],
            "xapi": {"endpoint": "http://127.0.0.1:9/xapi", "username": "lrs", "password": "secret"},
        },
        **changes,
    )


def alerts(database: Database) -> list[tuple[str, str, str | None]]:
    with database.read() as session:
        rows = session.scalars(select(OutboxNotification).order_by(OutboxNotification.id)).all()
        return [(row.kind, row.channel, row.target) for row in rows]


def test_alerts_go_to_the_admin_address_and_subscribed_webhooks_never_to_learners_channels(
    database_url: str, tmp_path: Path
) -> None:
    settings = alerting(database_url, tmp_path, 25, "http://127.0.0.1:9/hook")
    for kind in ("approval.requested", "sync.failed"):
        assert routes(settings, kind) == [("webhook", "ops"), ("email", None)]
    assert routes(settings, "award.made") == [
        ("in-app", None),
        ("xapi", None),
    ]  # the ops hook wants no awards
    assert routes(settings, "award.revoked") == [("in-app", None)]  # xAPI records earning only
    without_admin = make_settings(database_url, tmp_path, notification_type=["in-app"])
    assert routes(without_admin, "approval.requested") == []


def test_a_badge_waiting_for_approval_is_emailed_to_the_admin_and_posted_to_the_webhook(
    mailbox: tuple[Mailbox, int], database_url: str, tmp_path: Path
) -> None:
    box, smtp_port = mailbox
    verifier = Webhook(SECRET)

    def receiver(request: Received) -> Reply:
        verifier.verify(request.body, request.headers)
        return Reply(200)

    with serve(receiver) as hook:
        settings = alerting(database_url, tmp_path, smtp_port, hook.url)
        database = open_database(settings)
        store(database, learning_event("login-1"))  # completes "mentor", which waits for approval
        Worker(database, settings).run(threading.Event(), drain=True)
        written = [row for row in alerts(database) if row[0] == "approval.requested"]
        assert written == [("approval.requested", "webhook", "ops"), ("approval.requested", "email", None)]
        make_sender(database, settings).run_once()
    [message] = box.messages
    text, _, _ = parts(message)
    assert message["To"] == "badges-admin@example.edu"
    assert message["Subject"] == "Approval needed: Mentor for 42"
    assert "badge-bridge approvals approve" in text
    [posted] = hook.requests
    body = json.loads(posted.body)
    assert body["type"] == "approval.requested"
    assert body["data"]["approval"]["badge_name"] == "Mentor"
    assert body["data"]["learner"] == {"platform": "demo", "lms_user_id": "42", "name": None}


@responses.activate
def test_a_failed_sync_is_alerted_once_with_its_error(
    mailbox: tuple[Mailbox, int], database_url: str, tmp_path: Path
) -> None:
    box, smtp_port = mailbox
    responses.get(
        f"{CANVAS_URL}/api/v1/courses/565/enrollments",
        status=401,
        json={"errors": [{"message": "Invalid access token."}]},
        headers={"WWW-Authenticate": 'Bearer realm="canvas-lms"'},  # a revoked token stops the platform
    )
    responses.add_passthru("http://127.0.0.1")
    with serve(lambda request: Reply(200)) as hook:
        settings = alerting(database_url, tmp_path, smtp_port, hook.url)
        database = open_database(settings)
        run = SyncService(database, settings).run("canvas1")
        assert run.status == "failed"
        assert alerts(database) == [("sync.failed", "webhook", "ops"), ("sync.failed", "email", None)]
        make_sender(database, settings).run_once()
    [message] = box.messages
    assert message["Subject"] == "Sync failed: canvas1"
    assert "Canvas refused the access token" in parts(message)[0]
    [posted] = hook.requests
    data = json.loads(posted.body)["data"]
    assert (data["platform"], data["run_id"]) == ("canvas1", run.id)
    assert data["error"].startswith("Canvas refused the access token")
