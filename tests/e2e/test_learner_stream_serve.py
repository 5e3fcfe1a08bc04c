"""The learner's live toasts (server-sent events) from the service as users run it, over HTTPS: an open
stream does not keep other requests waiting, and it ends, freeing its thread, when the browser leaves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from bridge.clock import utcnow
from bridge.domain.events import LearningEvent
from tests.conftest import process_env
from tests.e2e import lti_server
from tests.e2e.lti_server import ToolServer, tool_server
from tests.helpers import store

pytestmark = pytest.mark.slow
PROMPT = 3.0  # seconds; these answers take milliseconds


@pytest.fixture
def tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ToolServer]:
    # Two threads for the app: one held by an open stream, one for everything else. A stream that outlived
    # its client would hold the second as soon as another stream opened.
    monkeypatch.setattr(
        lti_server, "process_env", lambda config: {**process_env(config), "BRIDGE_SERVER__THREADS": "2"}
    )
    with tool_server(tmp_path) as server:
        yield server


def events(stream: requests.Response) -> Iterator[str]:
    # One iterator per stream: leaving an iter_content() loop early closes urllib3's connection.
    return stream.iter_content(chunk_size=None, decode_unicode=True)  # type: ignore[no-any-return]


def read_until(chunks: Iterator[str], marker: str, seconds: float) -> str:
    seen = ""
    deadline = time.monotonic() + seconds
    for piece in chunks:
        seen += piece
        if marker in seen or time.monotonic() > deadline:
            break
    return seen


def answers_promptly(tool: ToolServer, page: str) -> None:
    other = tool.browser()
    for url in (f"{tool.base}/healthz", page):
        started = time.monotonic()
        assert other.get(url, timeout=PROMPT).status_code == 200
        assert time.monotonic() - started < PROMPT


def test_an_open_stream_keeps_no_one_waiting_and_ends_when_the_browser_leaves(tool: ToolServer) -> None:
    browser = tool.browser()
    launched = tool.launch(browser, "moodle", claims={"sub": "105"})
    assert launched.status_code == 303, launched.text
    page = launched.headers["Location"]
    token = parse_qs(urlsplit(page).query)["lt"][0]
    stream_url = f"{tool.base}/lti/notifications/stream?lt={token}"

    first = browser.get(stream_url, stream=True, timeout=20)
    assert first.headers["Content-Type"].startswith("text/event-stream")
    first_events = events(first)
    assert "retry: 1000" in read_until(first_events, "retry", 10)
    answers_promptly(tool, page)

    # A badge earned while the page is open arrives on the stream (the embedded worker awards it).
    store(tool.database, LearningEvent("moodle1", "login-105", "login", "105", utcnow(), course="2"))
    assert "You earned Welcome!" in read_until(first_events, "You earned", 20)
    first.close()  # the browser leaves the page

    time.sleep(2)  # a stream checks for its client every half second
    # If the first stream still held its thread, this one takes the other and the app has none left.
    second = browser.get(stream_url, stream=True, timeout=20)
    assert "retry: 1000" in read_until(events(second), "retry", 10)
    answers_promptly(tool, page)
    second.close()
