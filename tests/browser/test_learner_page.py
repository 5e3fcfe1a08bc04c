"""The learner's page as a learner meets it: a course page of the LMS (HTTPS on 127.0.0.1) opens the tool
in an iframe through a real signed LTI launch; the page shows the earned badges and progress bars, a toast
for the badge earned since the last visit, a live toast for one earned while the page is open, and passes
axe-core with no serious or critical violation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bridge.services.api_keys import create_key
from tests.browser.host import HostPage, host_page, screenshot
from tests.conftest import free_port
from tests.e2e.lti_server import ToolServer, tool_server
from tests.e2e.processes import wait_until
from tests.lti.tls import self_signed_certificate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostPage, ToolServer]]:
    directory = tmp_path_factory.mktemp("browser")
    port = free_port()
    cert, key = self_signed_certificate(directory / "host-tls")
    with (
        host_page(port, cert, key) as host,
        tool_server(directory / "tool", moodle_site=f"https://127.0.0.1:{port}") as tool,
    ):
        yield host, tool


def post_event(tool: ToolServer, event: dict[str, Any]) -> None:
    key = create_key(tool.database, f"browser-{uuid.uuid4().hex}")
    answer = requests.post(
        f"{tool.base}/api/v1/events",
        json={"platform": "moodle1", **event},
        headers={"Authorization": f"Bearer {key}"},
        verify=tool.ca_bundle,
        timeout=10,
    )
    assert answer.status_code in (200, 202), answer.text


def awarded(tool: ToolServer, learner: str, badge: str) -> bool:
    key = create_key(tool.database, f"browser-{uuid.uuid4().hex}")
    found = requests.get(
        f"{tool.base}/api/v1/awards",
        params={"platform": "moodle1", "learner": learner},
        headers={"Authorization": f"Bearer {key}"},
        verify=tool.ca_bundle,
        timeout=10,
    ).json()["awards"]
    return badge in {a["badge_id"] for a in found}


def test_the_learner_sees_badges_progress_and_toasts_inside_the_lms(browser: Any, lms: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    host, tool = lms
    tool.launch(None, "moodle", {"sub": "301", "name": "Grace Hopper"})  # the learner's first visit
    post_event(tool, {"event_key": "login-301", "kind": "login", "learner": "301", "course": "2"})
    wait_until(lambda: awarded(tool, "301", "welcome"), 20, "the welcome badge")

    params = tool.moodle.login_params({"sub": "301", "name": "Grace Hopper"}, roles="learner")
    course = host.course("course", f"{tool.base}/lti/login", params)
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(course)
    tool_frame = page.frame_locator("#tool")
    expect(tool_frame.locator("h1")).to_have_text("Grace Hopper's badges", timeout=15_000)
    expect(tool_frame.locator(".card--earned h3")).to_have_text(["Welcome"])
    expect(tool_frame.locator(".card--earned img")).to_have_attribute("alt", "Welcome badge")
    assert tool_frame.locator("progress").count() > 5
    expect(tool_frame.locator(".toast")).to_contain_text(["You earned Welcome!"])  # since the last visit

    # While the page is open: a quiz graded in the LMS earns Quiz Ace, and says so without a reload.
    post_event(
        tool,
        {"event_key": "quiz-301", "kind": "quiz_graded", "learner": "301", "course": "2", "score": 1.0},
    )
    expect(tool_frame.locator(".toast").last).to_have_text("You earned Quiz Ace!Close", timeout=10_000)

    frame = next(f for f in page.frames if f.url.startswith(f"{tool.base}/lti/courses/"))
    screenshot(page, frame, "learner-page")
    results = Axe().run(frame)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], [(v["id"], v["help"]) for v in serious]
    context.close()


def test_the_learner_page_fits_a_narrow_frame(browser: Any, lms: Any) -> None:
    from playwright.sync_api import expect

    host, tool = lms
    params = tool.moodle.login_params({"sub": "302"}, roles="learner")
    course = host.course("narrow", f"{tool.base}/lti/login", params)
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 360, "height": 800})
    page = context.new_page()
    page.goto(course)
    frame = page.frame_locator("#tool")
    expect(frame.locator("h1")).to_be_visible(timeout=15_000)
    width = frame.locator("body").evaluate("body => body.scrollWidth - body.clientWidth")
    assert width <= 0  # no sideways scrolling inside the frame
    context.close()
