"""The instructor's pages inside the LMS, reached through a real LTI launch (in process): the course's
badges with completion counts, the learner-by-badge matrix, awards and revocations by hand (audit-logged),
the approval queue with its evidence, analytics as SVG with a CSV export, the last sync and "sync now",
the gradebook switch; and who may not open or change them."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.app import create_app
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Approval, AuditEntry, Award, Learner, Lease
from bridge.db.models_lti import LtiContext
from bridge.db.models_sync import SyncRun
from bridge.domain.events import LearningEvent
from bridge.lti.registry import register
from bridge.services.sync import Connectors
from bridge.settings import Settings
from bridge.worker import Worker
from connectors import Connector, ConnectorConfig, PollPage
from tests.conftest import make_settings
from tests.grammar import page_problems
from tests.helpers import store
from tests.lti.platform import FakePlatform, registration_of

BASE = "http://localhost"
LAUNCH = f"{BASE}/lti/launch"
COURSE = "/lti/courses/2/instructor"
TEACHER = "900"


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


@dataclasses.dataclass
class Launched:
    browser: FlaskClient
    token: str

    def get(self, path: str, **query: Any) -> Any:
        return self.browser.get(f"{path}?{urlencode({'lt': self.token, **query})}")

    def page(self, path: str = COURSE, **query: Any) -> str:
        answer = self.get(path, **query)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        html = str(answer.get_data(as_text=True))
        assert page_problems(html) == []  # every sentence of every page the tests open reads correctly
        return html

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.page())
        assert found
        return found.group(1)

    def post(self, path: str, fields: Mapping[str, str], *, csrf: bool = True) -> Any:
        extra = {"csrf": self.csrf()} if csrf else {}
        return self.browser.post(path, data={"lt": self.token, **extra, **fields})


def launch(
    app: Flask, platform: FakePlatform, sub: str, roles: str, *, drop: tuple[str, ...] = (), **claims: Any
) -> Launched:
    """A launch as the LMS makes it (``claims`` override the fixture's, ``drop`` removes some); the
    browser and the launch token its pages carry."""
    browser = app.test_client()
    params = platform.login_params({"sub": sub, **claims}, target_link_uri=LAUNCH, roles=roles, drop=drop)
    started = browser.get(f"/lti/login?{urlencode(params)}")
    action, fields = platform.authorize(started.headers["Location"])
    launched = browser.post(urlsplit(action).path, data=fields)
    assert launched.status_code == 303, launched.get_data(as_text=True)
    return Launched(browser, parse_qs(urlsplit(launched.headers["Location"]).query)["lt"][0])


def teacher(app: Flask, platform: FakePlatform) -> Launched:
    return launch(app, platform, TEACHER, "instructor", name="Margaret Hamilton")


def events(database: Database, settings: Settings, *found: LearningEvent) -> None:
    store(database, *found)
    Worker(database, settings).run(threading.Event(), drain=True)


def sign_in(learner: str, course: str = "2") -> LearningEvent:
    return LearningEvent("moodle1", f"login-{learner}-{course}", "login", learner, utcnow(), course=course)


def forum_posts(learner: str, count: int = 10) -> list[LearningEvent]:
    """Enough forum activity for Peer Mentor, a badge an instructor must approve."""
    return [
        LearningEvent(
            "moodle1",
            f"forum-{learner}-{n}",
            "activity_completed",
            learner,
            utcnow() - timedelta(minutes=count - n),
            course="2",
            item=f"forum-{n}",
            data={"activity": "forum"},
        )
        for n in range(count)
    ]


@pytest.fixture
def course(app: Flask, platform: FakePlatform, database: Database, settings: Settings) -> Launched:
    """Ada (105) has the welcome badge, Grace (106) launched once, learner 107 is only known from an
    event; the teacher launched the tool."""
    launch(app, platform, "105", "learner")
    launch(app, platform, "106", "learner", name="Grace Hopper")
    events(database, settings, sign_in("105"), sign_in("107"))
    return teacher(app, platform)


def audit(database: Database, action: str) -> list[AuditEntry]:
    with database.read() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def matrix_row(html: str, name: str) -> str:
    start = html.index(f'<th scope="row">{name}</th>')
    return html[start : html.index("</tr>", start)]


def column_of(html: str, badge: str) -> int:
    head = html[html.index("<thead>", html.index('class="data matrix"')) : html.index("</thead>")]
    return re.findall(r'<th scope="col">([^<]*)</th>', head).index(badge)


def cell(html: str, name: str, badge: str) -> str:
    cells = re.findall(r"<td class=\"cell--\w+\">([^<]*)</td>", matrix_row(html, name))
    return cells[column_of(html, badge) - 1]


def test_the_overview_shows_the_courses_badges_with_completion_counts(course: Launched) -> None:
    html = course.page()
    assert "<h1>Badges of Open Badges 101</h1>" in html
    assert "3 learners in this course." in html  # Ada, Grace and 107; not the teacher
    table = html[html.index('id="badges-caption"') : html.index("</table>")]
    welcome = table[table.index('<th scope="row">Welcome</th>') :].split("</tr>")[0]
    assert re.findall(r'<td class="num">([^<]*)</td>', welcome)[:2] == ["2", "0"]  # held by 2, on their way 0
    rate = table[table.index('<th scope="row">On a Roll</th>') :].split("</tr>")[0]
    assert re.findall(r'<td class="num">([^<]*)</td>', rate)[1] == "2"  # a streak started by two
    assert 'role="region"' in html and 'tabindex="0"' in html  # the wide table scrolls by keyboard too


def test_the_matrix_shows_each_learners_progress_by_name_in_a_real_table(course: Launched) -> None:
    html = course.page(f"{COURSE}/learners")
    assert '<caption id="matrix-caption">' in html and '<th scope="col">Learner</th>' in html
    assert cell(html, "Ada Lovelace", "Welcome") == "Held"
    assert cell(html, "Grace Hopper", "Welcome") == "Not started"
    assert cell(html, "Learner 107", "Welcome") == "Held"  # no name known: their LMS id
    assert re.fullmatch(r"\d+%", cell(html, "Ada Lovelace", "On a Roll"))
    assert cell(html, "Ada Lovelace", "Assignment Achiever") == "Not started"
    assert "Margaret Hamilton" not in html.split('id="award"')[0]  # the teacher is no learner here
    assert "Learners 1 to 3 of 3." in html
    found = course.page(f"{COURSE}/learners", q="grace")
    assert "1 learner." in found and "Ada Lovelace" not in found


def test_the_matrix_is_paged(course: Launched, database: Database, settings: Settings) -> None:
    events(database, settings, *(sign_in(str(200 + n)) for n in range(30)))
    first = course.page(f"{COURSE}/learners")
    assert "Learners 1 to 25 of 33." in first and "Next learners" in first
    second = course.page(f"{COURSE}/learners", page="2")
    assert "Learners 26 to 33 of 33." in second and "Previous learners" in second


def test_an_award_and_a_revocation_need_a_reason_and_are_audit_logged(
    course: Launched, database: Database
) -> None:
    learners = f"{COURSE}/learners"
    no_reason = course.post(f"{COURSE}/awards", {"learner": "106", "badge": "quiz-ace|", "reason": " "})
    assert no_reason.status_code == 422
    assert "Say why: the reason goes into the audit log." in no_reason.get_data(as_text=True)

    done = course.post(
        f"{COURSE}/awards", {"learner": "106", "badge": "quiz-ace|", "reason": "Aced it orally"}
    )
    assert done.status_code == 303
    after = course.browser.get(done.headers["Location"]).get_data(as_text=True)
    assert "The badge was awarded." in after and cell(after, "Grace Hopper", "Quiz Ace") == "Held"
    [entry] = audit(database, "award")
    assert (entry.actor, entry.badge_id, entry.reason) == (
        f"instructor moodle1/{TEACHER} (LTI)",
        "quiz-ace",
        "Aced it orally",
    )

    again = course.post(f"{COURSE}/awards", {"learner": "106", "badge": "quiz-ace|", "reason": "Twice"})
    assert again.status_code == 409
    assert "This learner already holds this badge." in again.get_data(as_text=True)

    tiered = course.post(
        f"{COURSE}/awards", {"learner": "106", "badge": "assignment-achiever|silver", "reason": "Portfolio"}
    )
    assert tiered.status_code == 303
    assert cell(course.page(learners), "Grace Hopper", "Assignment Achiever").startswith("Held: Silver, ")

    with database.read() as session:
        award_id = session.scalar(select(Award.id).where(Award.badge_id == "quiz-ace"))
    assert f'<option value="{award_id}">Grace Hopper: Quiz Ace</option>' in course.page(learners)
    revoked = course.post(f"{COURSE}/awards/revoke", {"award": str(award_id), "reason": "Copied answers"})
    assert revoked.status_code == 303
    after = course.browser.get(revoked.headers["Location"]).get_data(as_text=True)
    assert "The award was revoked." in after and cell(after, "Grace Hopper", "Quiz Ace") == "Not started"
    [entry] = audit(database, "revoke")
    assert (entry.actor, entry.award_id, entry.reason) == (
        f"instructor moodle1/{TEACHER} (LTI)",
        award_id,
        "Copied answers",
    )

    twice = course.post(f"{COURSE}/awards/revoke", {"award": str(award_id), "reason": "Again"})
    assert twice.status_code == 409 and "This award was revoked already." in twice.get_data(as_text=True)
    final = course.post(f"{COURSE}/awards", {"learner": "106", "badge": "quiz-ace|", "reason": "Sorry"})
    assert final.status_code == 409 and "a revocation is final" in final.get_data(as_text=True)
    unknown = course.post(f"{COURSE}/awards", {"learner": "106", "badge": "no-such-badge|", "reason": "x"})
    assert unknown.status_code == 404 and "Choose one of the badges." in unknown.get_data(as_text=True)


def test_a_learner_of_another_course_cannot_be_awarded_or_revoked(
    course: Launched, database: Database, settings: Settings
) -> None:
    events(database, settings, sign_in("500", course="3"))  # welcome, in another course
    outsider = course.post(f"{COURSE}/awards", {"learner": "500", "badge": "quiz-ace|", "reason": "x"})
    assert outsider.status_code == 422 and "Choose one of this course&#39;s learners." in outsider.get_data(
        as_text=True
    )
    with database.read() as session:
        theirs = session.scalar(select(Award.id).join(Learner).where(Learner.lms_user_id == "500"))
    refused = course.post(f"{COURSE}/awards/revoke", {"award": str(theirs), "reason": "x"})
    assert refused.status_code == 404
    for forged in ("abc", "99999999999999999999999", ""):
        assert course.post(f"{COURSE}/awards/revoke", {"award": forged, "reason": "x"}).status_code == 404
    assert audit(database, "award") == [] and audit(database, "revoke") == []


def test_the_approval_queue_shows_the_evidence_and_approves_or_rejects_with_a_reason(
    app: Flask, platform: FakePlatform, database: Database, settings: Settings, course: Launched
) -> None:
    events(database, settings, *forum_posts("105"), *forum_posts("106"))
    queue = course.page(f"{COURSE}/approvals")
    assert "2 requests are waiting." in queue and "Approvals (2 waiting)" in queue
    ada = queue[queue.index("Ada Lovelace completed Peer Mentor") :].split("</form>")[0]
    assert ada.count("Activity completed: 2 / forum-") == 10  # the events that earned it
    ids = re.findall(r'action="/lti/courses/2/instructor/approvals/(\d+)"', queue)

    no_reason = course.post(f"{COURSE}/approvals/{ids[1]}", {"decision": "reject", "reason": ""})
    assert no_reason.status_code == 422 and "Say why" in no_reason.get_data(as_text=True)
    rejected = course.post(
        f"{COURSE}/approvals/{ids[1]}", {"decision": "reject", "reason": "Off-topic posts"}
    )
    approved = course.post(f"{COURSE}/approvals/{ids[0]}", {"decision": "approve", "reason": ""})
    assert (rejected.status_code, approved.status_code) == (303, 303)
    assert "The request was approved" in course.browser.get(approved.headers["Location"]).get_data(
        as_text=True
    )
    with database.read() as session:
        decided = dict(session.execute(select(Approval.id, Approval.status)).all())
    assert decided == {int(ids[0]): "approved", int(ids[1]): "rejected"}
    assert [e.reason for e in audit(database, "reject")] == ["Off-topic posts"]
    assert "No requests are waiting." in course.page(f"{COURSE}/approvals")
    decided_again = course.post(f"{COURSE}/approvals/{ids[0]}", {"decision": "approve"})
    assert decided_again.status_code == 404  # no longer waiting


def test_analytics_are_svg_charts_with_their_numbers_as_text_and_a_csv(course: Launched) -> None:
    html = course.page(f"{COURSE}/analytics")
    charts = re.findall(r'<svg class="chart" role="img" aria-labelledby="([\w-]+)-title \1-desc"', html)
    assert charts[:2] == ["completion", "weeks"] and "funnel-assignment-achiever" in charts
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []  # no inline script: the CSP forbids it
    # The completion chart's desc; analytics count every member of the course, the teacher too.
    assert "Welcome: 2 of 4 eligible learners, 50%." in html
    assert re.search(r"Week of \d+ \w+: 2 awards\.", html)  # this week: two welcomes, by the day earned
    csv_link = re.search(r'href="(/lti/courses/2/instructor/analytics.csv\?lt=[^"]+)"', html)
    assert csv_link
    exported = course.browser.get(csv_link.group(1).replace("&amp;", "&"))
    assert exported.mimetype == "text/csv" and "attachment" in exported.headers["Content-Disposition"]
    lines = exported.get_data(as_text=True).splitlines()
    assert lines[0].startswith("badge_id,name,eligible,earned")
    assert any(line.startswith("welcome,Welcome,4,2,0.5,") for line in lines)


class OneEventConnector(Connector):
    """A Moodle that has one new sign-in for any course."""

    kind = "moodle"

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        self.polled = 0

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        raise NotImplementedError

    def webhook_type(self, payload: Mapping[str, Any]) -> str:
        return "none"

    def parse_webhook(self, payload: Mapping[str, Any]) -> list[LearningEvent]:
        return []

    def poll(self, course: str, cursors: Mapping[str, dict[str, Any]], options: Any) -> Iterator[PollPage]:
        self.polled += 1
        event = LearningEvent("moodle1", f"synced-{course}", "login", "105", utcnow(), course=course)
        yield PollPage("logins", [event], {"at": "now"})

    def roster(self, course: str) -> list[Any]:
        return []

    def courses(self) -> list[str]:
        return ["2"]

    @property
    def calls(self) -> int:
        return self.polled


def test_sync_now_runs_in_the_background_and_the_page_says_how_it_went(
    app: Flask, settings: Settings, database: Database, course: Launched
) -> None:
    found = app.extensions["bridge"]
    app.extensions["bridge"] = dataclasses.replace(found, connectors=Connectors(settings, OneEventConnector))
    assert "This course has not been synced yet." in course.page()
    started = course.post(f"{COURSE}/sync", {})
    assert started.status_code == 303
    assert "The sync has started." in course.browser.get(started.headers["Location"]).get_data(as_text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with database.read() as session:
            run = session.scalar(select(SyncRun))
        if run is not None and run.finished_at is not None:
            break
        time.sleep(0.05)
    assert run is not None and (run.course, run.trigger, run.status) == ("2", "instructor", "succeeded")
    assert re.search(r"The last sync ran on .+ and succeeded: it found 1 new event\.", course.page())

    with database.write() as session:  # a sync under way elsewhere
        session.add(Lease(name="sync:moodle1", holder="other", expires_at=utcnow() + timedelta(minutes=5)))
    busy = course.post(f"{COURSE}/sync", {})
    assert busy.status_code == 409 and "already running" in busy.get_data(as_text=True)


def test_the_grade_sync_switch_is_shown_only_where_the_platform_offers_the_gradebook(
    app: Flask, platform: FakePlatform, database: Database, course: Launched
) -> None:
    assert "Send badge points to the gradebook" in course.page()
    turned_on = course.post(f"{COURSE}/grade-sync", {"enabled": "1"})
    assert turned_on.status_code == 303
    assert "Stop sending badge points" in course.browser.get(turned_on.headers["Location"]).get_data(
        as_text=True
    )
    with database.read() as session:
        assert session.scalar(select(LtiContext.grade_sync).where(LtiContext.context_id == "2")) is True
    assert [e.actor for e in audit(database, "lti.grade_sync_on")] == [f"instructor moodle1/{TEACHER} (LTI)"]

    other = {"id": "3", "label": "ART", "title": "Art", "type": ["CourseSection"]}
    elsewhere = launch(app, platform, TEACHER, "instructor", context=other, drop=("ags",))
    html = elsewhere.page("/lti/courses/3/instructor")
    assert "<h1>Badges of Art</h1>" in html and "Gradebook" not in html


def test_a_learners_launch_gets_a_403_page_everywhere(
    app: Flask, platform: FakePlatform, course: Launched
) -> None:
    learner = launch(app, platform, "105", "learner")
    for path in ("", "/learners", "/approvals", "/analytics", "/analytics.csv"):
        refused = learner.get(COURSE + path)
        assert refused.status_code == 403, path
        assert "Only the course&#39;s instructors can open this page." in refused.get_data(as_text=True)
    csrf = re.search(r'data-csrf="([^"]+)"', learner.page("/lti/courses/2"))
    assert csrf
    forged = learner.browser.post(
        f"{COURSE}/awards", data={"lt": learner.token, "csrf": csrf.group(1), "learner": "105",
                                   "badge": "quiz-ace|", "reason": "me"}
    )  # fmt: skip
    assert forged.status_code == 403


def test_every_change_needs_the_pages_csrf_token(course: Launched, database: Database) -> None:
    for path, fields in [
        ("/awards", {"learner": "106", "badge": "quiz-ace|", "reason": "x"}),
        ("/awards/revoke", {"award": "1", "reason": "x"}),
        ("/approvals/1", {"decision": "approve"}),
        ("/sync", {}),
        ("/grade-sync", {"enabled": "1"}),
    ]:
        assert course.post(COURSE + path, fields, csrf=False).status_code == 403, path
        wrong = course.browser.post(COURSE + path, data={"lt": course.token, "csrf": "forged", **fields})
        assert wrong.status_code == 403, path
    assert audit(database, "award") == []


def test_another_courses_pages_are_refused_and_the_pages_need_a_token(course: Launched) -> None:
    refused = course.get("/lti/courses/3/instructor")
    assert refused.status_code == 403 and "another course" in refused.get_data(as_text=True)
    assert (
        course.post(
            "/lti/courses/3/instructor/awards", {"learner": "105", "badge": "quiz-ace|", "reason": "x"}
        ).status_code
        == 403
    )
    assert course.browser.get(COURSE).status_code == 401
    assert course.browser.get(f"{COURSE}?lt=forged").status_code == 401


def test_the_pages_are_framed_only_by_the_launching_platform(
    course: Launched, platform: FakePlatform
) -> None:
    for path in ("", "/learners", "/approvals", "/analytics"):
        page = course.get(COURSE + path)
        policy = page.headers["Content-Security-Policy"]
        assert (
            f"frame-ancestors 'self' {platform.base_url}" in policy and "https://moodle.example.edu" in policy
        )
        assert "unsafe-inline" not in policy and page.headers["Referrer-Policy"] == "no-referrer"
        assert " style=" not in page.get_data(as_text=True)  # the CSP allows no inline style
