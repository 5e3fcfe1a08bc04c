"""The learner's page inside the LMS, reached through a real LTI launch (in process): earned badges with
their links, progress, the leaderboard, the learner's choices, and new-badge toasts."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.app import create_app
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.domain.events import LearningEvent
from bridge.lti.registry import register
from bridge.settings import EmailSettings, Settings
from bridge.web import pages_learner
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.grammar import page_problems
from tests.helpers import store
from tests.lti.platform import FakePlatform, registration_of

BASE = "http://localhost"
LAUNCH = f"{BASE}/lti/launch"


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with FakePlatform("moodle", redirect_uris=(LAUNCH,), target_link_uri=LAUNCH) as running:
        yield running


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    platforms = [{"id": "moodle1", "kind": "moodle", "base_url": "https://moodle.example.edu"}]
    return make_settings(database_url, tmp_path, public_base_url=BASE, platforms=platforms)


@pytest.fixture
def app(settings: Settings, database: Database, platform: FakePlatform) -> Flask:
    register(database, registration_of(platform, "moodle1"), actor="test", known_platforms={"moodle1"})
    return create_app(settings, database)


def open_page(app: Flask, platform: FakePlatform, sub: str = "105") -> tuple[FlaskClient, str, str]:
    """A launch as the LMS makes it; the browser, the page's HTML and its launch token."""
    browser = app.test_client()
    params = platform.login_params({"sub": sub}, target_link_uri=LAUNCH)
    started = browser.get(f"/lti/login?{urlencode(params)}")
    action, fields = platform.authorize(started.headers["Location"])
    launched = browser.post(urlsplit(action).path, data=fields)
    assert launched.status_code == 303, launched.get_data(as_text=True)
    location = urlsplit(launched.headers["Location"])
    page = browser.get(f"{location.path}?{location.query}")
    assert page.status_code == 200
    assert page_problems(page.get_data(as_text=True)) == []  # every sentence on it reads correctly
    token = re.search(r'name="lt" value="([^"]+)"', page.get_data(as_text=True))
    assert token
    return browser, page.get_data(as_text=True), token.group(1)


def earn_welcome(database: Database, settings: Settings, learner: str = "105") -> None:
    """A sign-in in the course, now: the welcome badge (5 points)."""
    store(database, LearningEvent("moodle1", f"login-{learner}", "login", learner, utcnow(), course="2"))
    Worker(database, settings).run(threading.Event(), drain=True)


def test_the_page_shows_earned_badges_with_their_links_and_progress_on_the_rest(
    app: Flask, platform: FakePlatform, database: Database, settings: Settings
) -> None:
    open_page(app, platform)  # the learner exists from the first launch
    earn_welcome(database, settings)
    _, html, _ = open_page(app, platform)
    assert "Ada Lovelace&#39;s badges" in html
    earned = html[html.index('id="earned"') : html.index('id="progress"')]
    assert 'alt="Welcome badge"' in earned and "Earned on" in earned
    for link in ("/badge.png", "/credential.jwt", "linkedin.com/profile/add", "/ob/assertions/"):
        assert link in earned
    progress = html[html.index('id="progress"') :]
    assert "<progress" in progress and "Welcome" not in progress.split('id="board"')[0]


def test_the_page_is_framed_only_by_the_launching_platform_and_says_which_tokens_it_holds(
    app: Flask, platform: FakePlatform
) -> None:
    browser, _, token = open_page(app, platform)
    page = browser.get(f"/lti/courses/2?lt={token}")
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' http://127.0.0.1" in policy and "https://moodle.example.edu" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_the_leaderboard_shows_the_learner_and_their_rank(
    app: Flask, platform: FakePlatform, database: Database, settings: Settings
) -> None:
    open_page(app, platform)
    earn_welcome(database, settings)
    _, html, _ = open_page(app, platform)
    board = html[html.index('id="board"') :]
    assert 'class="you"' in board and "You are number 1 of 1." in board
    assert "5 points" in board  # the welcome badge's points, with the plural


def test_choices_change_with_the_pages_csrf_token_only(
    app: Flask, platform: FakePlatform, database: Database
) -> None:
    browser, _, token = open_page(app, platform)
    forged = browser.post("/lti/me/leaderboard", data={"lt": token, "opt_out": "1"})
    assert forged.status_code == 403
    _, html, token = open_page(app, platform)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf
    done = browser.post("/lti/me/leaderboard", data={"lt": token, "csrf": csrf.group(1), "opt_out": "1"})
    assert done.status_code == 303
    after = browser.get(done.headers["Location"]).get_data(as_text=True)
    assert "Your name is hidden on leaderboards" in after
    made_public = browser.post("/lti/me/profile", data={"lt": token, "csrf": csrf.group(1), "public": "1"})
    assert "/ob/profiles/" in browser.get(made_public.headers["Location"]).get_data(as_text=True)


def test_the_email_switch_is_shown_where_badges_are_emailed_and_stops_them(
    app: Flask, platform: FakePlatform, database: Database, settings: Settings
) -> None:
    _, html, _ = open_page(app, platform)
    assert "emailing me" not in html and "Email me" not in html  # no email channel: no switch
    email = {"host": "127.0.0.1", "port": 25, "security": "none", "from_address": "b@example.edu"}
    emailing = settings.model_copy(
        update={
            "notification_type": ["in-app", "email"],
            "notifications": settings.notifications.model_copy(update={"email": EmailSettings(**email)}),
        }
    )
    with_email = create_app(emailing, database)
    browser, html, token = open_page(with_email, platform)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf and "Stop emailing me about new badges" in html
    done = browser.post("/lti/me/emails", data={"lt": token, "csrf": csrf.group(1), "emails": "off"})
    after = browser.get(done.headers["Location"]).get_data(as_text=True)
    assert "You get no emails about your badges." in after and "Email me about new badges" in after
    forged = browser.post("/lti/me/emails", data={"lt": token, "emails": "on"})
    assert forged.status_code == 403


def test_a_badge_earned_since_the_last_visit_is_a_toast_once(
    app: Flask, platform: FakePlatform, database: Database, settings: Settings
) -> None:
    browser, _, token = open_page(app, platform)
    earn_welcome(database, settings)
    [toast] = browser.get(f"/lti/notifications?lt={token}").get_json()["notifications"]
    assert toast["message"] == "You earned Welcome!"
    _, html, token = open_page(app, platform)
    csrf = re.search(r'data-csrf="([^"]+)"', html)
    assert csrf
    seen = browser.post(
        f"/lti/notifications/seen?lt={token}",
        json={"ids": [toast["id"]]},
        headers={"X-CSRF-Token": csrf.group(1)},
    )
    assert seen.get_json() == {"marked": 1}
    assert browser.get(f"/lti/notifications?lt={token}").get_json()["notifications"] == []


def test_the_stream_sends_a_badge_earned_while_the_page_is_open(
    app: Flask,
    platform: FakePlatform,
    database: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pages_learner, "STREAM_SECONDS", 1.0)
    browser, _, token = open_page(app, platform)
    earn_welcome(database, settings)
    stream = browser.get(f"/lti/notifications/stream?lt={token}")
    assert stream.mimetype == "text/event-stream"
    events = [block for block in stream.get_data(as_text=True).split("\n\n") if block.startswith("id:")]
    assert len(events) == 1
    assert json.loads(events[0].split("data: ", 1)[1])["message"] == "You earned Welcome!"
    again = browser.get(
        f"/lti/notifications/stream?lt={token}", headers={"Last-Event-ID": events[0][4:].split()[0]}
    )
    assert "data:" not in again.get_data(as_text=True)


def test_pages_need_a_valid_token(app: Flask) -> None:
    page = app.test_client().get("/lti/me?lt=forged")
    assert page.status_code == 401 and "expired" in page.get_data(as_text=True)
