"""A learner can stop award emails: each email carries a one-click unsubscribe link (RFC 8058) and a page
that turns them off or on again; the learner's page in the LMS has the same switch. A learner who said no
gets no email, and the outbox row says why."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.app import create_app
from bridge.bootstrap import open_database
from bridge.db.engine import Database
from bridge.db.models_notify import OutboxNotification
from bridge.notify.channels import make_sender
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import learning_event, store
from tests.notify.test_email import Mailbox, free_port, parts


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def emailing(database_url: str, tmp_path: Path, smtp_port: int) -> Settings:
    email = {"host": "127.0.0.1", "port": smtp_port, "security": "none", "from_address": "b@example.edu"}
    return make_settings(
        database_url,
        tmp_path,
        public_base_url="https://badges.example.edu",
        notification_type=["email"],
        notifications={"email": email},
    )


def earn(database: Database, settings: Settings, key: str, kind: str = "login", **facts: Any) -> None:
    store(database, replace(learning_event(key, kind=kind), **facts))
    Worker(database, settings).run(threading.Event(), drain=True)
    make_sender(database, settings).run_once()


def first_award_email(database: Database, settings: Settings, box: Mailbox) -> str:
    """The learner (demo/42, with an email) earns the welcome badge; the link of its email, as a path."""
    from bridge.issuing.records import set_badge_profile

    earn(database, settings, "enrolled-1", "enrolled")
    set_badge_profile(database, "demo", "42", public=False, actor="test", email="ada@example.edu")
    earn(database, settings, "login-1")
    [message] = box.messages
    link = message["List-Unsubscribe"].strip("<>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link.startswith("https://badges.example.edu/notifications/unsubscribe/")
    text, html, _ = parts(message)
    assert f"No more emails about your badges: {link}" in text and link in html
    return link.removeprefix("https://badges.example.edu")


def statuses(database: Database) -> list[tuple[str, str | None]]:
    with database.read() as session:
        rows = session.scalars(select(OutboxNotification).order_by(OutboxNotification.id)).all()
        return [(row.status, row.last_error) for row in rows]


def test_one_click_from_the_mail_client_stops_the_next_award_email(
    mailbox: tuple[Mailbox, int], database_url: str, tmp_path: Path
) -> None:
    box, port = mailbox
    settings = emailing(database_url, tmp_path, port)
    database = open_database(settings)
    link = first_award_email(database, settings, box)
    client = create_app(settings, database).test_client()
    answer = client.post(link, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200 and "no more emails" in answer.get_data(as_text=True)
    earn(database, settings, "quiz-1", "quiz_graded", course="7", score=1.0)  # Quiz Ace, High Flyer
    assert len(box.messages) == 1  # the first award only
    assert statuses(database)[0] == ("sent", None)
    assert len(statuses(database)) > 1  # later awards were made, and their emails not sent
    assert all(
        row == ("skipped", "nobody to send it to (no address, or the learner wants no emails)")
        for row in statuses(database)[1:]
    )


def test_the_link_opens_a_page_that_changes_nothing_until_its_button_is_pressed(
    mailbox: tuple[Mailbox, int], database_url: str, tmp_path: Path
) -> None:
    box, port = mailbox
    settings = emailing(database_url, tmp_path, port)
    database = open_database(settings)
    link = first_award_email(database, settings, box)
    client: FlaskClient = create_app(settings, database).test_client()
    for _ in range(2):  # a mail scanner fetching the link twice
        page = client.get(link)
        assert page.status_code == 200 and "You get an email when you earn a badge." in page.get_data(
            as_text=True
        )
        assert (
            page.headers["Referrer-Policy"] == "no-referrer" and "no-store" in page.headers["Cache-Control"]
        )
    off = client.post(link, data={"emails": "off"}).get_data(as_text=True)
    assert "Done: you will get no more emails about your badges." in off
    on = client.post(link, data={"emails": "on"}).get_data(as_text=True)
    assert "Done: you will get an email again when you earn a badge." in on


def test_a_link_this_server_did_not_sign_is_a_404(database_url: str, tmp_path: Path) -> None:
    settings = emailing(database_url, tmp_path, 25)
    client = create_app(settings, open_database(settings)).test_client()
    for token in ("WzFd.forged", "42", "x" * 300):
        answer = client.post(f"/notifications/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 404 and "not valid" in answer.get_json()["error"]["message"]
