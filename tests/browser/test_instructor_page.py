"""The instructor's pages as a teacher meets them: a course page of the LMS (HTTPS on 127.0.0.1) opens the
tool in an iframe through a real signed LTI launch; the teacher opens the instructor's pages with the
launch's token, awards a badge to a learner with a reason (by keyboard) and sees it in the matrix; every
instructor page passes axe-core with no serious or critical violation, and fits a 320 px frame."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from bridge.services.api_keys import create_key
from tests.browser.host import HostPage, host_page, screenshot
from tests.conftest import free_port
from tests.e2e.lti_server import ToolServer, tool_server
from tests.e2e.processes import wait_until
from tests.lti.tls import self_signed_certificate

pytestmark = pytest.mark.slow
PAGES = ("", "/learners", "/approvals", "/analytics")


@pytest.fixture(scope="module")
def lms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostPage, ToolServer]]:
    directory = tmp_path_factory.mktemp("browser-instructor")
    port = free_port()
    cert, key = self_signed_certificate(directory / "host-tls")
    with (
        host_page(port, cert, key) as host,
        tool_server(directory / "tool", moodle_site=f"https://127.0.0.1:{port}") as tool,
    ):
        prepare_course(tool)
        yield host, tool


def api(tool: ToolServer, method: str, path: str, **options: Any) -> Any:
    key = create_key(tool.database, f"browser-{uuid.uuid4().hex}")
    headers = {"Authorization": f"Bearer {key}"}
    answer = requests.request(
        method, f"{tool.base}/api/v1{path}", headers=headers, verify=tool.ca_bundle, timeout=10, **options
    )
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


def awarded(tool: ToolServer, learner: str, badge: str) -> bool:
    found = api(tool, "GET", "/awards", params={"platform": "moodle1", "learner": learner})["awards"]
    return badge in {a["badge_id"] for a in found}


def prepare_course(tool: ToolServer) -> None:
    """Two learners in course 2: Katherine has the welcome badge and waits for Peer Mentor's approval."""
    tool.launch(None, "moodle", {"sub": "401", "name": "Katherine Johnson"})
    tool.launch(None, "moodle", {"sub": "402", "name": "Dorothy Vaughan"})
    forum = [
        {
            "event_key": f"forum-401-{n}",
            "kind": "activity_completed",
            "learner": "401",
            "course": "2",
            "item": f"forum-{n}",
            "data": {"activity": "forum"},
        }
        for n in range(10)
    ]
    login = {"event_key": "login-401", "kind": "login", "learner": "401", "course": "2"}
    for event in [login, *forum]:
        api(tool, "POST", "/events", json={"platform": "moodle1", **event})
    wait_until(lambda: awarded(tool, "401", "welcome"), 20, "the welcome badge")


def open_instructor_pages(browser: Any, host: HostPage, tool: ToolServer, name: str, width: int) -> Any:
    """The course page with the tool launched by a teacher in its iframe, which then shows the
    instructor's overview (reached with the launch's token); the page and the tool's frame."""
    from playwright.sync_api import expect

    params = tool.moodle.login_params({"sub": "450", "name": "Margaret Hamilton"}, roles="instructor")
    course = host.course(name, f"{tool.base}/lti/login", params)
    context = browser.new_context(ignore_https_errors=True, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(course)
    expect(page.frame_locator("#tool").locator("h1")).to_be_visible(timeout=15_000)
    frame = next(f for f in page.frames if f.url.startswith(f"{tool.base}/lti/courses/"))
    token = parse_qs(urlsplit(frame.url).query)["lt"][0]
    frame.goto(f"{tool.base}/lti/courses/2/instructor?lt={token}")
    return page, frame


def test_the_instructor_awards_a_badge_with_a_reason_and_sees_it_in_the_matrix(
    browser: Any, lms: Any
) -> None:
    from playwright.sync_api import expect

    host, tool = lms
    page, frame = open_instructor_pages(browser, host, tool, "teach", 1280)
    expect(frame.locator("h1")).to_have_text("Badges of Open Badges 101")
    expect(frame.locator("nav.tabs a[aria-current=page]")).to_have_text("Overview")
    frame.get_by_role("link", name="Learners", exact=True).click()
    expect(frame.locator("caption")).to_have_text("Progress of each learner on each badge")

    frame.get_by_label("Learner", exact=True).select_option(label="Dorothy Vaughan")
    frame.get_by_label("Badge", exact=True).select_option(label="Quiz Ace")
    frame.get_by_label("Reason (kept in the audit log)").first.fill("Aced the oral quiz")
    frame.get_by_label("Reason (kept in the audit log)").first.press("Tab")  # to the form's button
    page.keyboard.press("Enter")
    expect(frame.locator(".instructor__notice")).to_have_text("The badge was awarded.")
    row = frame.locator("tbody tr", has=frame.locator("th", has_text="Dorothy Vaughan"))
    headers = frame.locator("thead th").all_inner_texts()
    expect(row.locator("td").nth(headers.index("Quiz Ace") - 1)).to_have_text("Held")
    assert awarded(tool, "402", "quiz-ace")

    screenshot(page, frame, "instructor-page")
    page.context.close()


def test_every_instructor_page_passes_axe_and_fits_a_narrow_frame(browser: Any, lms: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    host, tool = lms
    for width in (1280, 320):
        page, frame = open_instructor_pages(browser, host, tool, f"axe-{width}", width)
        token = parse_qs(urlsplit(frame.url).query)["lt"][0]
        for path in PAGES:
            frame.goto(f"{tool.base}/lti/courses/2/instructor{path}?lt={token}")
            expect(frame.locator("h1")).to_be_visible()
            if path == "/approvals":
                first_request = frame.locator(".card h3").first
                expect(first_request).to_have_text("Katherine Johnson completed Peer Mentor")
            if path == "/analytics":
                assert frame.locator("svg.chart[role=img] > title").count() >= 3
                if width == 1280:
                    screenshot(page, frame, "instructor-analytics")
            results = Axe().run(frame)
            serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
            assert serious == [], (width, path, [(v["id"], v["help"], v["nodes"][:2]) for v in serious])
            overflow = frame.locator("body").evaluate("body => body.scrollWidth - body.clientWidth")
            assert overflow <= 0, (width, path)  # no sideways scrolling: wide tables scroll in their region
        page.context.close()
