"""A Moodle grade hidden from the learner (``gradeishidden``) is not counted, and must be once it is shown.

The grades poll diffs each learner's raw grades against the last snapshot; a grade recorded as seen while
hidden is the same raw grade when shown, so it must not be recorded until it is counted.
"""

from __future__ import annotations

import responses

from connectors.moodle import MoodleConnector
from tests.connectors.support import fixture, moodle_config
from tests.connectors.test_moodle import course_42, keys, moodle_site, poll

GRADE_KEY = "quiz_graded:42:501:311:8.2"


@responses.activate
def test_a_grade_hidden_at_one_poll_is_counted_by_the_poll_after_it_is_shown() -> None:
    grades = fixture("moodle", "ws_gradereport_user_get_grade_items")
    for item in grades["usergrades"][0]["gradeitems"]:
        item["gradeishidden"] = True
    moodle_site(course_42(gradereport_user_get_grade_items=lambda _form: grades))
    connector = MoodleConnector(moodle_config())
    hidden, cursors = poll(connector)
    assert GRADE_KEY not in keys(hidden)
    for item in grades["usergrades"][0]["gradeitems"]:
        item["gradeishidden"] = False  # the teacher shows the grade; nothing else changed
    shown, _ = poll(connector, cursors)
    assert GRADE_KEY in keys(shown)
