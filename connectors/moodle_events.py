"""Moodle events (as the ``local_webhooks`` plugin posts them) and grade items, as learning events.

Event data is ``\\core\\event\\base::get_data()`` (moodle/moodle lib/classes/event/base.php) plus the
plugin's ``host``, ``token`` and ``extra`` (valentineus/moodle-webhooks lib.php). Ids arrive as integers
from live events and as strings from events restored from the log (the plugin's own example), so every
id goes through :func:`moodle_id`. The learner is ``relateduserid``: ``userid`` is whoever acted (a
teacher grading, the cron completing a course).

The keys built here are also built by the web-service poll (:mod:`connectors.moodle`), so a webhook and
a poll of the same fact collapse into one stored event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.clock import utcnow
from bridge.domain.events import LearningEvent
from connectors import Malformed, fraction, number_key, parse_time

COURSE_COMPLETED = "\\core\\event\\course_completed"
MODULE_COMPLETION = "\\core\\event\\course_module_completion_updated"
QUIZ_SUBMITTED = "\\mod_quiz\\event\\attempt_submitted"
USER_GRADED = "\\core\\event\\user_graded"

# Activity completion states (lib/completionlib.php): 0 incomplete, 1 complete, 2 complete with a pass,
# 3 complete with a fail. Course completion counts only 1 and 2 (completion_criteria_activity::review).
COMPLETE_STATES = frozenset({1, 2})
INCOMPLETE = 0


def moodle_id(value: Any) -> str:
    try:
        return str(int(str(value)))
    except ValueError:
        raise Malformed(f"expected a Moodle id, got {value!r}") from None


def course_completed_event(platform: str, course: str, user: str, at: Any, source: str) -> LearningEvent:
    return LearningEvent(
        platform,
        f"course_completed:{course}:{user}",
        "course_completed",
        user,
        parse_time(at) or utcnow(),
        course=course,
        score=1.0,
        data={"source": source},
    )


def activity_completed_event(
    platform: str, course: str, cmid: str, user: str, state: int, at: Any, source: str
) -> LearningEvent:
    return LearningEvent(
        platform,
        f"activity_completed:{course}:{cmid}:{user}",
        "activity_completed",
        user,
        parse_time(at) or utcnow(),
        course=course,
        item=cmid,
        data={"completionstate": state, "passed": state == 2, "source": source},
    )


def activity_uncompleted_event(
    platform: str, course: str, cmid: str, user: str, occurrence: str, source: str
) -> LearningEvent:
    # An un-completion is an occurrence, not a lasting fact: its key carries what identifies this one
    # (the webhook's log entry, or the poll's previous completion time), so a later one is kept too.
    return LearningEvent(
        platform,
        f"activity_uncompleted:{course}:{cmid}:{user}:{occurrence}",
        "activity_uncompleted",
        user,
        utcnow(),
        course=course,
        item=cmid,
        data={"source": source},
    )


def grade_item_events(
    platform: str, course: str, user: str, item: Mapping[str, Any], source: str
) -> list[LearningEvent]:
    """A learner's grade in one grade item (gradereport_user_get_grade_items), by the item's type.

    The course total becomes ``course_graded``, a quiz ``quiz_graded``, any other activity
    ``assignment_graded``; categories and manual items carry no badge-worthy fact of their own.
    """
    raw = item.get("graderaw")
    if raw is None or item.get("gradeishidden"):
        return []  # not graded, or hidden from the learner (a badge must not reveal it)
    at = parse_time(item.get("gradedategraded")) or utcnow()
    score = fraction(
        float(raw) - float(item.get("grademin") or 0),
        float(item.get("grademax") or 0) - float(item.get("grademin") or 0),
    )
    data = {"grade": float(raw), "grademax": item.get("grademax"), "source": source}
    item_type, module = item.get("itemtype"), item.get("itemmodule")
    if item_type == "course":
        return [
            LearningEvent(
                platform,
                f"course_graded:{course}:{user}:{number_key(raw)}",
                "course_graded",
                user,
                at,
                course=course,
                score=score,
                data=data,
            )
        ]
    if item_type != "mod" or item.get("id") is None:
        return []
    kind = "quiz_graded" if module == "quiz" else "assignment_graded"
    cmid = moodle_id(item["cmid"]) if item.get("cmid") is not None else None
    key = f"{kind}:{course}:{moodle_id(item['id'])}:{user}:{number_key(raw)}"
    return [
        LearningEvent(
            platform,
            key,
            kind,
            user,
            at,
            course=course,
            item=cmid,
            score=score,
            data={**data, "itemid": moodle_id(item["id"]), "module": module},
        )
    ]


def _learner(event: Mapping[str, Any]) -> str:
    user = event.get("relateduserid")
    if user is None and isinstance(event.get("other"), Mapping):
        user = event["other"].get("relateduserid")  # the deprecated copy older events still carry
    if user is None:
        raise Malformed("relateduserid: missing")
    return moodle_id(user)


def parse_moodle_event(platform: str, event: Mapping[str, Any]) -> list[LearningEvent]:
    """The learning events one Moodle event states; [] for events that need the web service or are unused."""
    name = event.get("eventname")
    if not isinstance(name, str):
        raise Malformed("eventname: expected the event's class name")
    try:
        if name == COURSE_COMPLETED:
            course = moodle_id(event.get("courseid"))
            return [
                course_completed_event(platform, course, _learner(event), event.get("timecreated"), "webhook")
            ]
        if name == MODULE_COMPLETION:
            return _module_completion(platform, event)
        if name == QUIZ_SUBMITTED:
            # The attempt's grade is not in the event: fetch_for_webhook reads it from the web service.
            course, cmid = moodle_id(event.get("courseid")), moodle_id(event.get("contextinstanceid"))
            attempt = moodle_id(event.get("objectid"))
            return [
                LearningEvent(
                    platform,
                    f"quiz_submitted:{course}:{attempt}",
                    "quiz_submitted",
                    _learner(event),
                    parse_time(event.get("timecreated")) or utcnow(),
                    course=course,
                    item=cmid,
                    data={"attempt": attempt, "source": "webhook"},
                )
            ]
    except (TypeError, ValueError) as error:
        raise Malformed(f"{name}: {error}") from None
    return []  # user_graded needs the grade item's range (fetched), other events are not used


def _module_completion(platform: str, event: Mapping[str, Any]) -> list[LearningEvent]:
    other = event.get("other")
    if not isinstance(other, Mapping) or "completionstate" not in other:
        raise Malformed("other.completionstate: missing")
    state = int(other["completionstate"])
    course, user = moodle_id(event.get("courseid")), _learner(event)
    # A module event's context is the course module: contextinstanceid is the cmid (contextlevel 70).
    cmid = moodle_id(event.get("contextinstanceid"))
    if state in COMPLETE_STATES:
        return [
            activity_completed_event(platform, course, cmid, user, state, event.get("timecreated"), "webhook")
        ]
    if state == INCOMPLETE:  # the event fires on un-completion too (lib/completionlib.php internal_set_data)
        occurrence = f"e{moodle_id(event.get('objectid'))}-{event.get('timecreated')}"
        return [activity_uncompleted_event(platform, course, cmid, user, occurrence, "webhook")]
    return []  # 3: completed with a fail, which course completion does not count either


def needs_fetch(event: Mapping[str, Any]) -> bool:
    return event.get("eventname") in (QUIZ_SUBMITTED, USER_GRADED)
