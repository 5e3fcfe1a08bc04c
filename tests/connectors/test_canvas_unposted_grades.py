"""Canvas grades graded but not yet posted (posting policies): the ``graded_since`` watermark must wait.

A submission graded but not posted has ``posted_at`` null and its score hidden from the student; it is not
counted then. Posting it later sets ``posted_at`` but leaves ``graded_at`` as it was, so a watermark that
had moved past its ``graded_at`` would never read it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

from connectors import PollOptions
from connectors.canvas import CanvasConnector
from tests.connectors.support import canvas_config, fixture
from tests.connectors.test_canvas_poll import API, SUBMISSIONS, collect, submission

GRADED_HIDDEN = "2021-03-30T16:11:38Z"  # the fixture's graded_at
GRADED_LATER = "2021-04-02T10:00:00Z"  # days later: far beyond the hour of overlap


class FakeCanvas:
    """The bulk submissions endpoint as Canvas answers it: ``graded_at > graded_since``, by graded_at."""

    def __init__(self, submissions: list[dict[str, Any]]) -> None:
        self.submissions = submissions
        responses.get(f"{API}/enrollments", json=fixture("canvas", "api_enrollment"))
        responses.get(f"{API}/bulk_user_progress", json=[])
        responses.add_callback(responses.GET, SUBMISSIONS, callback=self._answer)

    def _answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        import json

        since = parse_qs(urlsplit(request.url).query).get("graded_since")
        rows = [
            s
            for s in self.submissions
            if since is None or _time(s["graded_at"]) > _time(since[0].replace("Z", "+00:00"))
        ]
        rows.sort(key=lambda s: _time(s["graded_at"]))
        return 200, {}, json.dumps(rows)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def graded_keys(connector: CanvasConnector, cursors: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    events, cursors = collect(connector.poll("565", cursors, PollOptions()), cursors)
    return [e.event_key for e in events if e.kind == "assignment_graded"], cursors


@responses.activate
def test_a_grade_posted_after_a_later_grade_moved_the_watermark_is_still_counted() -> None:
    hidden = submission(id=1, graded_at=GRADED_HIDDEN, posted_at=None)  # graded, not posted
    later = submission(id=2, assignment_id=7, graded_at=GRADED_LATER, posted_at=GRADED_LATER)
    canvas = FakeCanvas([hidden, later])
    connector = CanvasConnector(canvas_config())

    first, cursors = graded_keys(connector, {})
    assert first == ["assignment_graded:7:1163:20.0"]  # the unposted grade is not counted (yet)

    canvas.submissions[0] = {**hidden, "posted_at": "2021-04-05T09:00:00Z"}  # the teacher posts it
    second, cursors = graded_keys(connector, cursors)
    assert "assignment_graded:356597:1163:20.0" in second

    # Nothing unposted is left: the watermark moves on to the latest grade.
    assert cursors["submissions"] == {"watermark": "2021-04-02T10:00:00+00:00"}


@responses.activate
def test_the_watermark_waits_at_the_oldest_unposted_grade_for_as_long_as_it_stays_unposted() -> None:
    hidden = submission(id=1, graded_at=GRADED_HIDDEN, posted_at=None)
    later = submission(id=2, assignment_id=7, graded_at=GRADED_LATER, posted_at=GRADED_LATER)
    FakeCanvas([hidden, later])
    connector = CanvasConnector(canvas_config())
    _, cursors = graded_keys(connector, {})
    for _ in range(2):  # runs go by, the grade stays hidden: each run asks from before it again
        responses.calls.reset()
        keys, cursors = graded_keys(connector, cursors)
        assert keys == ["assignment_graded:7:1163:20.0"]
        asked = parse_qs(
            urlsplit(next(c for c in responses.calls if SUBMISSIONS in c.request.url).request.url).query
        )
        assert _time(asked["graded_since"][0]) < _time(GRADED_HIDDEN)


@responses.activate
def test_with_no_overlap_configured_the_unposted_grade_is_still_asked_for() -> None:
    from datetime import timedelta

    hidden = submission(id=1, graded_at=GRADED_HIDDEN, posted_at=None)
    later = submission(id=2, assignment_id=7, graded_at=GRADED_LATER, posted_at=GRADED_LATER)
    canvas = FakeCanvas([hidden, later])
    config = canvas_config()
    connector = CanvasConnector(type(config)(**{**_fields(config), "submissions_overlap": timedelta(0)}))
    _, cursors = graded_keys(connector, {})
    canvas.submissions[0] = {**hidden, "posted_at": "2021-04-05T09:00:00Z"}
    keys, _ = graded_keys(connector, cursors)
    assert "assignment_graded:356597:1163:20.0" in keys  # graded_since is strictly before its graded_at


def _fields(config: Any) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}
