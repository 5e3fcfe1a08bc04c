"""The administrator's pages as an administrator meets them, in headless Chromium: a course page of the LMS
(HTTPS on 127.0.0.1) opens the tool in an iframe through a real signed LTI launch. A launch from a new
installation (an unknown deployment) is refused as pending; the administrator opens the admin pages from
their own launch, approves that deployment with the keyboard, and the next launch from it opens the tool.
The badge editor checks a template as it is typed. axe-core finds no serious or critical violation on any
admin page, and none scrolls sideways in a 320 px wide frame."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bridge.clock import utcnow
from bridge.db.models_webhooks import WebhookFollowUp
from tests.browser.host import HostPage, host_page, screenshot
from tests.conftest import free_port
from tests.e2e.lti_server import ToolServer, tool_server
from tests.lti.tls import self_signed_certificate

pytestmark = pytest.mark.slow
NEW_DEPLOYMENT = "deployment-from-browser"
ADMIN_PATHS = ("", "/badges", "/badges/new", "/badges/edit/welcome", "/failed")


@pytest.fixture(scope="module")
def lms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostPage, ToolServer]]:
    directory = tmp_path_factory.mktemp("browser-admin")
    port = free_port()
    cert, key = self_signed_certificate(directory / "host-tls")
    with (
        host_page(port, cert, key) as host,
        tool_server(directory / "tool", moodle_site=f"https://127.0.0.1:{port}") as tool,
    ):
        yield host, tool


def open_tool(browser: Any, host: HostPage, tool: ToolServer, name: str, width: int, **launch: Any) -> Any:
    """A course page at ``/<name>`` launching the tool in its iframe; the page (its context is closed by
    closing the page's context)."""
    params = tool.moodle.login_params(**launch)
    course = host.course(name, f"{tool.base}/lti/login", params)
    context = browser.new_context(ignore_https_errors=True, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(course)
    return page


def tool_frame(page: Any, tool: ToolServer) -> Any:
    """The tool's frame, once it shows a page reached with a launch token."""
    for _ in range(150):
        frame = next((f for f in page.frames if f.url.startswith(tool.base) and "lt=" in f.url), None)
        if frame is not None:
            return frame
        page.wait_for_timeout(100)
    raise AssertionError(f"the tool's frame never reached a page: {[f.url for f in page.frames]}")


def admin_frame(
    browser: Any, host: HostPage, tool: ToolServer, name: str, width: int
) -> tuple[Any, Any, str]:
    """An administrator's launch in the LMS's iframe, then the admin page in that same frame."""
    page = open_tool(
        browser,
        host,
        tool,
        name,
        width,
        claims_overrides={"sub": "400", "name": "Ada Admin"},
        roles="administrator",
    )
    frame = tool_frame(page, tool)
    token = parse_qs(urlsplit(frame.url).query)["lt"][0]
    frame.goto(f"{tool.base}/lti/admin?lt={token}")
    return page, frame, token


def serious_violations(frame: Any) -> list[tuple[str, str, list[str]]]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(frame)
    return [
        (v["id"], v["help"], [n["target"] for n in v["nodes"]][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def park_a_follow_up(tool: ToolServer) -> None:
    """A webhook follow-up parked as failed, for the failed events page to show."""
    now = utcnow()
    with tool.database.write() as session:
        session.add(
            WebhookFollowUp(
                platform="moodle1",
                webhook_type="\\core\\event\\user_graded",
                payload="{}",
                status="failed",
                attempts=5,
                next_attempt_at=now,
                received_at=now,
                last_error="Moodle answered 503 Service Unavailable to core_grades_get_grades",
            )
        )


def test_the_administrator_approves_a_pending_deployment_and_its_launch_then_opens(
    browser: Any, lms: Any
) -> None:
    from playwright.sync_api import expect

    host, tool = lms
    learner = {"claims_overrides": {"sub": "401", "deployment_id": NEW_DEPLOYMENT}, "roles": "learner"}
    refused = open_tool(browser, host, tool, "new-install", 1280, **learner)
    expect(refused.frame_locator("#tool").locator("[role=alert]")).to_contain_text(
        f"deployment {NEW_DEPLOYMENT}) is waiting for an administrator", timeout=15_000
    )
    refused.context.close()

    page, frame, _ = admin_frame(browser, host, tool, "admin", 1280)
    expect(frame.locator("h1")).to_have_text("Platforms and registrations", timeout=15_000)
    pending = frame.locator(".row--pending")
    expect(pending).to_contain_text(f"Deployment {NEW_DEPLOYMENT}")
    expect(pending).to_contain_text("Waiting for approval")
    assert serious_violations(frame) == []

    # With the keyboard only: Tab to the deployment's approve button, Enter.
    frame.locator("h1").click()
    label = f"Approve deployment {NEW_DEPLOYMENT}"
    for _ in range(80):
        page.keyboard.press("Tab")
        if frame.evaluate("document.activeElement.textContent.trim()") == label:
            break
    else:
        raise AssertionError(f"{label!r} cannot be reached with the Tab key")
    page.keyboard.press("Enter")
    expect(frame.locator(".notice")).to_have_text("Approved: launches from it are let in now.")
    expect(frame.locator(".row--pending")).to_have_count(0)
    screenshot(page, frame, "admin-page")
    page.context.close()

    opened = open_tool(browser, host, tool, "new-install-again", 1280, **learner)
    expect(opened.frame_locator("#tool").locator("h1")).to_contain_text("badges", timeout=15_000)
    opened.context.close()


def test_the_badge_editor_checks_the_template_as_it_is_typed(browser: Any, lms: Any) -> None:
    from playwright.sync_api import expect

    host, tool = lms
    page, frame, token = admin_frame(browser, host, tool, "editor", 1280)
    frame.goto(f"{tool.base}/lti/admin/badges/new?lt={token}")
    editor = frame.locator("#template")
    expect(frame.locator("#template-summary")).to_have_text("1 problem to fix:", timeout=10_000)
    expect(frame.locator("#template-problems li")).to_have_text(
        ["new-badge.toml: image: file 'new-badge.svg' not found beside it"]
    )
    editor.fill(
        editor.input_value().replace('"new-badge.svg"', '"welcome.svg"').replace("target = 1", "target = 0")
    )
    expect(frame.locator("#template-problems li")).to_have_text(
        ["new-badge.toml: criteria.groups[0].requirements[0].target: expected a whole number >= 1"]
    )
    editor.fill(editor.input_value().replace("target = 0", "target = 2"))
    expect(frame.locator("#template-summary")).to_have_text("The template is valid.")
    expect(frame.locator("#template-problems li")).to_have_count(0)
    frame.get_by_role("button", name="Create the badge").click()
    expect(frame.locator(".notice")).to_have_text("The badge is created.")
    page.context.close()


@pytest.mark.parametrize("width", [1280, 320])
def test_every_admin_page_passes_axe_and_fits_the_frame(browser: Any, lms: Any, width: int) -> None:
    from playwright.sync_api import expect

    host, tool = lms
    park_a_follow_up(tool)
    page, frame, token = admin_frame(browser, host, tool, f"admin-{width}", width)
    expect(frame.locator("h1")).to_be_visible(timeout=15_000)
    for path in ADMIN_PATHS:
        frame.goto(f"{tool.base}/lti/admin{path}?lt={token}")
        expect(frame.locator("h1")).to_be_visible()
        if path == "/failed":
            expect(frame.locator(".error-text").first).to_contain_text("Moodle answered 503")
        if path.startswith("/badges/"):
            expect(frame.locator("#template-summary")).not_to_be_empty()  # the live check has answered
        assert serious_violations(frame) == [], path
        sideways = frame.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        wide = frame.evaluate(  # the leaves past the right edge, to name them when the check fails
            "Array.from(document.querySelectorAll('body *'))"
            ".filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1"
            " && e.children.length === 0)"
            ".map(e => e.tagName + ' ' + e.textContent.slice(0, 60)).slice(0, 8)"
        )
        assert sideways <= 0, f"{path} scrolls sideways at {width} px: {wide}"
    page.context.close()
