"""The administrator's pages inside the LMS, reached through a real LTI launch (in process): platforms,
registrations and deployments (approving a pending one lets its launches in), the badge editor (the
messages of ``badges check``, the image upload), failed events and their retry; only for administrators,
and every change with the page's CSRF token."""

from __future__ import annotations

import io
import re
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from bridge.app import create_app
from bridge.cli import main
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.db.models_webhooks import WebhookFollowUp
from bridge.domain.events import LearningEvent
from bridge.lti.registry import list_registrations, register
from bridge.services.audit import audit_log
from bridge.services.badge_admin import get_badge
from bridge.services.badges import load_template_files, shipped_templates_dir
from bridge.settings import Settings
from bridge.web.badge_editor import MAX_IMAGE_BYTES, toml_text
from tests.conftest import make_settings, write_config
from tests.grammar import page_problems
from tests.helpers import store
from tests.lti.platform import FakePlatform, registration_of

BASE = "http://localhost"
LAUNCH = f"{BASE}/lti/launch"
ADMIN_SUB = "2"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></svg>'
GOOD = """\
id = "admin-made"
name = "Admin Made"
description = "Made in the badge editor."
image = "admin-made.svg"
points = 3

[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login"]
target = 2
"""


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with FakePlatform("moodle", redirect_uris=(LAUNCH,), target_link_uri=LAUNCH) as running:
        yield running


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(shipped_templates_dir(), folder)
    return folder


@pytest.fixture
def settings(database_url: str, tmp_path: Path, templates: Path) -> Settings:
    platforms = [
        {
            "id": "moodle1",
            "kind": "moodle",
            "name": "Campus Moodle",
            "base_url": "https://moodle.example.edu",
            "token": "moodle-token-s3cret",
            "webhook_secret": "hook-s3cret",
        },
        {"id": "canvas1", "kind": "canvas", "base_url": "https://canvas.example.edu"},
    ]
    return make_settings(
        database_url,
        tmp_path,
        public_base_url=BASE,
        platforms=platforms,
        badge_templates_dir=templates,
    )


@pytest.fixture
def app(settings: Settings, database: Database, platform: FakePlatform) -> Flask:
    register(database, registration_of(platform, "moodle1"), actor="test", known_platforms={"moodle1"})
    return create_app(settings, database)


def launch(app: Flask, platform: FakePlatform, roles: str = "administrator", **claims: Any) -> TestResponse:
    browser = app.test_client()
    params = platform.login_params({"sub": ADMIN_SUB, **claims}, target_link_uri=LAUNCH, roles=roles)
    started = browser.get(f"/lti/login?{urlencode(params)}")
    action, fields = platform.authorize(started.headers["Location"])
    return browser.post(urlsplit(action).path, data=fields)


def token_of(app: Flask, platform: FakePlatform, roles: str = "administrator") -> str:
    launched = launch(app, platform, roles)
    assert launched.status_code == 303, launched.get_data(as_text=True)
    found = re.search(r"[?&]lt=([^&]+)", launched.headers["Location"])
    assert found
    return found.group(1)


def open_admin(
    app: Flask, platform: FakePlatform, path: str = "/lti/admin"
) -> tuple[FlaskClient, str, str, str]:
    """An administrator's launch, then an admin page: the browser, the token, the CSRF token, the HTML."""
    token = token_of(app, platform)
    browser = app.test_client()
    page = browser.get(f"{path}?lt={token}")
    assert page.status_code == 200, page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    assert page_problems(html) == []  # every sentence of every page the tests open reads correctly
    csrf = re.search(r'name="csrf" value="([^"]+)"', html) or re.search(r'data-csrf="([^"]+)"', html)
    assert csrf
    return browser, token, csrf.group(1), html


def follow(browser: FlaskClient, answer: TestResponse) -> str:
    assert answer.status_code == 303, answer.get_data(as_text=True)
    location = urlsplit(answer.headers["Location"])
    html = browser.get(f"{location.path}?{location.query}").get_data(as_text=True)
    assert page_problems(html) == []
    return html


def badges_check_lines(tmp_path: Path, templates: Path, name: str, document: str) -> list[str]:
    """What ``badge-bridge badges check`` prints for ``document`` as the file ``name`` among ``templates``."""
    folder = tmp_path / "check"
    shutil.copytree(templates, folder)
    (folder / name).write_text(document, encoding="utf-8")
    config = write_config(tmp_path / "check.toml", f"sqlite:///{tmp_path / 'unused.sqlite3'}", tmp_path)
    result = CliRunner().invoke(main, ["--config", str(config), "badges", "check", str(folder)])
    return [line for line in result.stderr.splitlines() if line.startswith(f"{name}: ")]


# --- who may open the pages ------------------------------------------------------------------------------


@pytest.mark.parametrize("roles", ["learner", "instructor"])
@pytest.mark.parametrize(
    "method, path", [("GET", ""), ("GET", "/badges"), ("GET", "/badges/new"), ("GET", "/failed")]
)
def test_a_learner_or_instructor_launch_gets_a_403_page(
    app: Flask, platform: FakePlatform, roles: str, method: str, path: str
) -> None:
    token = token_of(app, platform, roles)
    page = app.test_client().open(f"/lti/admin{path}?lt={token}", method=method)
    assert page.status_code == 403
    assert "Only an administrator of the platform" in page.get_data(as_text=True)


def test_changes_by_a_learner_are_refused_even_with_their_csrf_token(
    app: Flask, platform: FakePlatform, database: Database
) -> None:
    token = token_of(app, platform, "learner")
    csrf = app.extensions["bridge"].lti.tokens
    launch_id = csrf.launch_id(token)
    answer = app.test_client().post(
        "/lti/admin/failed/retry", data={"lt": token, "csrf": csrf.csrf(launch_id)}
    )
    assert answer.status_code == 403


def test_pages_need_a_valid_token(app: Flask) -> None:
    assert app.test_client().get("/lti/admin?lt=forged").status_code == 401


# --- platforms, registrations and deployments -------------------------------------------------------------


def test_the_platforms_page_shows_platforms_registrations_and_deployments_but_no_secret(
    app: Flask, platform: FakePlatform
) -> None:
    _, _, _, html = open_admin(app, platform)
    for shown in ("Campus Moodle", "moodle1", "https://moodle.example.edu", "canvas1", "Canvas"):
        assert shown in html
    assert "s3cret" not in html
    assert platform.issuer in html and platform.client_id in html
    assert f"Deployment {platform.deployment_id}" in html and "Approved" in html
    assert "You opened this page through this deployment." in html


def test_a_pending_deployment_comes_first_and_approving_it_lets_its_launches_in(
    app: Flask, platform: FakePlatform, database: Database
) -> None:
    refused = launch(app, platform, "learner", deployment_id="99")
    assert refused.status_code == 403 and "deployment_pending" in refused.get_data(as_text=True)

    browser, token, csrf, html = open_admin(app, platform)
    waiting = html.index("Deployment 99")
    assert waiting < html.index(f"Deployment {platform.deployment_id}")  # pending first
    assert "Waiting for approval" in html[waiting : waiting + 300] and "card--pending" in html
    [registration] = list_registrations(database)
    path = f"/lti/admin/registrations/{registration.id}"
    approve = {"lt": token, "status": "active", "deployment": "99"}

    assert browser.post(path, data=approve).status_code == 403  # no CSRF token
    assert browser.post(path, data={**approve, "csrf": "forged"}).status_code == 403
    assert launch(app, platform, "learner", deployment_id="99").status_code == 403

    after = follow(browser, browser.post(path, data={**approve, "csrf": csrf}))
    assert "Approved: launches from it are let in now." in after
    assert launch(app, platform, "learner", deployment_id="99").status_code == 303
    [entry] = [e for e in audit_log(database) if e.action == "lti.approve"]
    assert entry.actor == f"administrator moodle1/{ADMIN_SUB} (LTI)"
    assert entry.details == {"registration": registration.id, "deployment": "99"}

    disabled = browser.post(path, data={**approve, "csrf": csrf, "status": "disabled"})
    assert "Disabled: launches from it are refused now." in follow(browser, disabled)
    assert "deployment_disabled" in launch(app, platform, "learner", deployment_id="99").get_data(
        as_text=True
    )


def test_an_unknown_registration_or_choice_is_a_readable_refusal(app: Flask, platform: FakePlatform) -> None:
    browser, token, csrf, _ = open_admin(app, platform)
    missing = browser.post(
        "/lti/admin/registrations/999", data={"lt": token, "csrf": csrf, "status": "active"}
    )
    assert missing.status_code == 404 and "No LTI registration 999." in missing.get_data(as_text=True)
    bad = browser.post("/lti/admin/registrations/1", data={"lt": token, "csrf": csrf, "status": "maybe"})
    assert bad.status_code == 422


# --- the badge editor ------------------------------------------------------------------------------------


def test_the_badge_list_and_editor_show_the_stored_template(app: Flask, platform: FakePlatform) -> None:
    browser, token, _, html = open_admin(app, platform, "/lti/admin/badges")
    assert "Welcome" in html and 'alt="Welcome badge"' in html and "Create a badge" in html
    editor = browser.get(f"/lti/admin/badges/edit/rising-star?lt={token}").get_data(as_text=True)
    assert "id = &#34;rising-star&#34;" in editor
    assert "tiers = &#34;badge_level_threshold&#34;" in editor  # as written, not its resolved tiers
    assert "/lti/scripts/admin.js" in editor and '<label for="template">' in editor
    assert browser.get(f"/lti/admin/badges/edit/nope?lt={token}").status_code == 404


def test_every_shipped_template_reads_back_from_its_toml_text(templates: Path, settings: Settings) -> None:
    loaded = load_template_files(templates, settings.track_event_types, settings.badge_level_threshold)
    assert loaded.templates and not loaded.errors
    for template in loaded.templates:
        assert tomllib.loads(toml_text(template.document)) == template.document
    awkward = {"id": "x", "name": 'Quote " and \\ and \x7f', "tags": [], "criteria": {"groups": []}}
    assert tomllib.loads(toml_text(awkward)) == awkward


BAD_TEMPLATES = [
    GOOD.replace("target = 2", "target = 0"),
    GOOD.replace('"login"', '"teleport"'),
    GOOD.replace("points = 3", "points = 3\ncolour = 'red'"),
    GOOD.replace("points = 3", 'points = 3\nprerequisites = ["nope"]'),
    GOOD.replace('image = "admin-made.svg"', 'image = "missing.svg"'),
    GOOD.replace("target = 2", "target = = 2"),
]


@pytest.mark.parametrize("document", BAD_TEMPLATES)
def test_a_bad_template_is_refused_with_the_message_of_badges_check(
    app: Flask, platform: FakePlatform, templates: Path, tmp_path: Path, document: str
) -> None:
    (templates / "admin-made.svg").write_bytes(SVG)
    expected = badges_check_lines(tmp_path, templates, "admin-made.toml", document)
    assert len(expected) == 1
    browser, token, csrf, _ = open_admin(app, platform, "/lti/admin/badges/new")

    saved = browser.post("/lti/admin/badges/new", data={"lt": token, "csrf": csrf, "template": document})
    assert saved.status_code == 422
    assert f"<li>{escape(expected[0])}</li>" in saved.get_data(as_text=True)
    checked = browser.post(
        f"/lti/admin/badges/validate?lt={token}", json={"template": document}, headers={"X-CSRF-Token": csrf}
    )
    assert checked.status_code == 200
    assert [m["message"] for m in checked.get_json()["messages"]] == expected
    assert checked.get_json()["valid"] is False


def test_live_validation_needs_the_csrf_header_and_says_when_the_template_is_valid(
    app: Flask, platform: FakePlatform, templates: Path
) -> None:
    browser, token, csrf, _ = open_admin(app, platform, "/lti/admin/badges/new")
    url = f"/lti/admin/badges/validate?lt={token}"
    assert browser.post(url, json={"template": GOOD}).status_code == 403
    [problem] = browser.post(url, json={"template": GOOD}, headers={"X-CSRF-Token": csrf}).get_json()[
        "messages"
    ]
    assert problem == {
        "file": "admin-made.toml",
        "key": "image",
        "reason": "file 'admin-made.svg' not found beside it",
        "message": "admin-made.toml: image: file 'admin-made.svg' not found beside it",
    }
    chosen = browser.post(
        url, json={"template": GOOD, "image_chosen": True}, headers={"X-CSRF-Token": csrf}
    ).get_json()
    assert chosen == {"valid": True, "summary": "The template is valid.", "messages": []}
    taken = browser.post(
        url, json={"template": GOOD.replace('"admin-made"', '"welcome"')}, headers={"X-CSRF-Token": csrf}
    ).get_json()
    assert "welcome.toml: id: 'welcome' is already used by another badge" in taken["messages"][0]["message"]
    assert browser.post(url, json={"nothing": 1}, headers={"X-CSRF-Token": csrf}).status_code == 400


def test_a_good_template_is_saved_with_its_image(
    app: Flask, platform: FakePlatform, database: Database, templates: Path
) -> None:
    browser, token, csrf, _ = open_admin(app, platform, "/lti/admin/badges/new")
    form = {"lt": token, "csrf": csrf, "template": GOOD, "image": (_file(SVG), "anything.svg")}
    page = follow(browser, browser.post("/lti/admin/badges/new", data=form))
    assert "The badge is created." in page and "Edit Admin Made" in page
    assert (templates / "admin-made.svg").read_bytes() == SVG
    badge = get_badge(database, "admin-made")
    assert (badge.name, badge.points, badge.image, badge.criteria_version) == (
        "Admin Made",
        3,
        "admin-made.svg",
        1,
    )
    assert browser.get("/ob/images/admin-made.png").status_code == 200  # the publisher draws it
    assert [e.actor for e in audit_log(database) if e.action == "badge.create"] == [
        f"administrator moodle1/{ADMIN_SUB} (LTI)"
    ]

    edited = {"lt": token, "csrf": csrf, "template": GOOD.replace("Admin Made", "Admin Made Again")}
    page = follow(browser, browser.post("/lti/admin/badges/edit/admin-made", data=edited))
    assert "The badge is saved." in page and "Admin Made Again" in page
    assert get_badge(database, "admin-made").criteria_version == 1  # the criteria did not change
    renamed = {**edited, "template": GOOD.replace('"admin-made"', '"other-id"', 1)}
    refused = browser.post("/lti/admin/badges/edit/admin-made", data=renamed)
    assert refused.status_code == 422
    assert (
        "admin-made.toml: id: the document says &#39;other-id&#39; but the badge is &#39;admin-made&#39;"
        in (refused.get_data(as_text=True))
    )


@pytest.mark.parametrize(
    "image, reason",
    [
        (b"", "the file is empty"),
        (b"<svg" + b" " * MAX_IMAGE_BYTES + b"/>", "larger than 256 KB"),
        (b"<html><body>hi</body></html>", "not an SVG image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><g>", "not well-formed XML"),
        (SVG.replace(b"<circle", b"<script>alert(1)</script><circle"), "the script element is not allowed"),
        (SVG.replace(b"<circle", b'<circle onclick="x()"'), "scripts and event handlers"),
        (SVG.replace(b"<circle", b'<image href="https://evil.example/x.png"/><circle'), "may not link"),
        (b'<!DOCTYPE svg [<!ENTITY a "b">]>' + SVG, "DOCTYPE or entity"),
        ("<svg xmlns='http://www.w3.org/2000/svg'>é</svg>".encode("latin-1"), "UTF-8"),
    ],
)
def test_an_image_that_is_not_a_safe_svg_is_refused_and_not_stored(
    app: Flask, platform: FakePlatform, database: Database, templates: Path, image: bytes, reason: str
) -> None:
    browser, token, csrf, _ = open_admin(app, platform, "/lti/admin/badges/new")
    form = {"lt": token, "csrf": csrf, "template": GOOD, "image": (_file(image), "badge.svg")}
    refused = browser.post("/lti/admin/badges/new", data=form)
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "admin-made.toml: image: the uploaded file cannot be the badge&#39;s image:" in html
    assert reason.replace("'", "&#39;") in html
    assert not (templates / "admin-made.svg").exists()
    assert [b for b in ("admin-made",) if b in {e.badge_id for e in audit_log(database)}] == []


def test_a_badge_is_disabled_and_enabled_again(
    app: Flask, platform: FakePlatform, database: Database
) -> None:
    browser, token, csrf, _ = open_admin(app, platform, "/lti/admin/badges")
    url = "/lti/admin/badges/edit/welcome/enabled"
    assert browser.post(url, data={"lt": token, "enabled": "0"}).status_code == 403
    page = follow(browser, browser.post(url, data={"lt": token, "csrf": csrf, "enabled": "0"}))
    assert "The badge is disabled" in page and not get_badge(database, "welcome").enabled
    follow(browser, browser.post(url, data={"lt": token, "csrf": csrf, "enabled": "1"}))
    assert get_badge(database, "welcome").enabled


def _file(content: bytes) -> io.BytesIO:
    return io.BytesIO(content)


# --- failed events ------------------------------------------------------------------------------------------


def _failed(database: Database) -> tuple[int, int]:
    [event_id] = store(database, LearningEvent("moodle1", "login-9", "login", "9", utcnow(), course="2"))
    now = utcnow()
    with database.write() as session:
        session.execute(
            update(Event)
            .where(Event.id == event_id)
            .values(status="failed", attempts=5, last_error="boom: 42")
        )
        follow_up = WebhookFollowUp(
            platform="moodle1",
            webhook_type="\\core\\event\\user_graded",
            payload="{}",
            status="failed",
            attempts=3,
            next_attempt_at=now,
            received_at=now,
            last_error="Moodle answered 503",
        )
        session.add(follow_up)
        session.flush()
        return event_id, follow_up.id


def test_failed_events_are_shown_with_their_errors_and_retried_one_or_all(
    app: Flask, platform: FakePlatform, database: Database
) -> None:
    event_id, follow_up_id = _failed(database)
    browser, token, csrf, html = open_admin(app, platform, "/lti/admin/failed")
    assert "2 items failed." in html and "boom: 42" in html and "Moodle answered 503" in html
    assert "Webhook follow-up" in html and "5 times" in html and "3 times" in html

    assert browser.post(f"/lti/admin/failed/{event_id}/retry", data={"lt": token}).status_code == 403
    page = follow(
        browser, browser.post(f"/lti/admin/failed/{event_id}/retry", data={"lt": token, "csrf": csrf})
    )
    assert "1 item is back in the queue." in page and "1 item failed." in page
    with database.read() as session:
        event = session.get(Event, event_id)
        assert event is not None and (event.status, event.attempts, event.last_error) == ("pending", 0, None)

    page = follow(browser, browser.post("/lti/admin/failed/retry", data={"lt": token, "csrf": csrf}))
    assert "1 item is back in the queue." in page and "No failed events" in page
    with database.read() as session:
        statuses = session.scalars(select(WebhookFollowUp.status).where(WebhookFollowUp.id == follow_up_id))
        assert list(statuses) == ["pending"]


def test_saving_a_badge_that_is_not_there_and_retrying_an_impossible_id_are_readable_refusals(
    app: Flask, platform: FakePlatform, templates: Path
) -> None:
    (templates / "admin-made.svg").write_bytes(SVG)
    browser, token, csrf, _ = open_admin(app, platform)
    gone = browser.post(
        "/lti/admin/badges/edit/admin-made", data={"lt": token, "csrf": csrf, "template": GOOD}
    )
    assert gone.status_code == 404
    assert "admin-made.toml: id: no badge with id &#39;admin-made&#39;" in gone.get_data(as_text=True)
    past_64_bits = browser.post(f"/lti/admin/failed/-{2**64}/retry", data={"lt": token, "csrf": csrf})
    assert past_64_bits.status_code == 404
