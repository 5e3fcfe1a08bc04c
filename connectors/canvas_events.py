"""Canvas Live Events (Canvas format, ``{"metadata", "body"}``) and the event keys Canvas facts share.

Field reference: instructure/canvas-lms ``doc/api/data_services/json/canvas/event-types/*.json`` and the
payload builders in ``lib/canvas/live_events.rb``. The keys built here are also built by the REST poll
(:mod:`connectors.canvas`), so a webhook and a poll of the same fact collapse into one stored event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bridge.clock import utcnow
from bridge.domain.events import LearningEvent
from connectors import Malformed, fraction, number_key, parse_time

# Canvas ids in Live Events may be global (shard * 10**13 + local id, e.g. "21070000000000565") while
# REST ids are local; both become local (developerdocs "Metadata" page, data_service_canvas_event_metadata).
_SHARD = 10**13

# Enrollment states that make someone a member of the course (Enrollment object, developerdocs).
ENROLLED_STATES = frozenset({"active", "invited", "completed"})


def local_id(value: Any) -> str:
    """A Canvas id, global or local, string or number, as its local id."""
    try:
        return str(int(str(value)) % _SHARD)
    except ValueError:
        raise Malformed(f"expected a Canvas id, got {value!r}") from None


def course_completed_key(course: str, user: str) -> str:
    return f"course_completed:{course}:{user}"


def course_progress_key(course: str, user: str, done: int) -> str:
    return f"course_progress:{course}:{user}:{done}"


def assignment_graded_key(assignment: str, user: str, points: Any) -> str:
    return f"assignment_graded:{assignment}:{user}:{number_key(points)}"


def course_graded_key(course: str, user: str, percent: Any) -> str:
    return f"course_graded:{course}:{user}:{number_key(percent)}"


def enrolled_key(course: str, user: str) -> str:
    return f"enrolled:{course}:{user}"


def progress_events(
    platform: str,
    course: str,
    user: str,
    progress: Mapping[str, Any],
    source: str,
    at: datetime | None = None,
) -> list[LearningEvent]:
    """``course_completed`` or ``course_progress`` from a CourseProgress object (event or REST).

    A partial progress has no time of its own: ``at`` (the event's time), else now.
    """
    done = int(progress.get("requirement_completed_count") or 0)
    total = int(progress.get("requirement_count") or 0)
    completed_at = parse_time(progress.get("completed_at"))
    data = {"requirement_completed_count": done, "requirement_count": total, "source": source}
    if completed_at is not None:
        return [
            LearningEvent(
                platform,
                course_completed_key(course, user),
                "course_completed",
                user,
                completed_at,
                course=course,
                score=1.0,
                data=data,
            )
        ]
    if done == 0 or total == 0:
        return []
    return [
        LearningEvent(
            platform,
            course_progress_key(course, user, done),
            "course_progress",
            user,
            at or utcnow(),
            course=course,
            score=fraction(done, total),
            data=data,
        )
    ]


def graded_event(
    platform: str,
    course: str | None,
    assignment: str,
    user: str,
    points: Any,
    possible: Any,
    graded_at: datetime,
    source: str,
) -> LearningEvent:
    data = {"points": float(points), "points_possible": possible, "source": source}
    return LearningEvent(
        platform,
        assignment_graded_key(assignment, user, points),
        "assignment_graded",
        user,
        graded_at,
        course=course,
        item=assignment,
        score=fraction(points, possible),
        data=data,
    )


def course_graded_event(
    platform: str, course: str, user: str, percent: Any, at: datetime, source: str
) -> LearningEvent:
    # Canvas course scores are percentages (Enrollment "grades", course_grade_change body).
    return LearningEvent(
        platform,
        course_graded_key(course, user, percent),
        "course_graded",
        user,
        at,
        course=course,
        score=fraction(percent, 100),
        data={"current_score": float(percent), "source": source},
    )


def enrolled_event(platform: str, course: str, user: str, at: datetime, source: str) -> LearningEvent:
    return LearningEvent(
        platform, enrolled_key(course, user), "enrolled", user, at, course=course, data={"source": source}
    )


def _context_course(metadata: Mapping[str, Any]) -> str | None:
    if metadata.get("context_type") == "Course" and metadata.get("context_id") is not None:
        return local_id(metadata["context_id"])
    return None


def _course_completion(
    platform: str, metadata: Mapping[str, Any], body: Mapping[str, Any]
) -> list[LearningEvent]:
    course, user, progress = body.get("course"), body.get("user"), body.get("progress")
    if not isinstance(course, Mapping) or not isinstance(user, Mapping) or not isinstance(progress, Mapping):
        raise Malformed("body: expected course, user and progress objects")
    at = parse_time(metadata.get("event_time"))
    return progress_events(
        platform, local_id(course.get("id")), local_id(user.get("id")), progress, "webhook", at
    )


def _grade_change(platform: str, metadata: Mapping[str, Any], body: Mapping[str, Any]) -> list[LearningEvent]:
    # An unposted ("muted") grade is hidden from the student: no badge may reveal it. The REST poll skips
    # submissions without posted_at for the same reason.
    if body.get("score") is None or body.get("muted") is True:
        return []
    user = local_id(body.get("student_id") or body.get("user_id"))
    at = parse_time(metadata.get("event_time")) or utcnow()
    return [
        graded_event(
            platform,
            _context_course(metadata),
            local_id(body.get("assignment_id")),
            user,
            body["score"],
            body.get("points_possible"),
            at,
            "webhook",
        )
    ]


def _course_grade_change(
    platform: str, metadata: Mapping[str, Any], body: Mapping[str, Any]
) -> list[LearningEvent]:
    if body.get("current_score") is None:
        return []
    at = parse_time(body.get("updated_at")) or parse_time(metadata.get("event_time")) or utcnow()
    course, user = local_id(body.get("course_id")), local_id(body.get("user_id"))
    return [course_graded_event(platform, course, user, body["current_score"], at, "webhook")]


def _submission(platform: str, metadata: Mapping[str, Any], body: Mapping[str, Any]) -> list[LearningEvent]:
    if body.get("submitted_at") is None:
        return []  # an unsubmitted placeholder (e.g. a missing-work record)
    user, assignment = local_id(body.get("user_id")), local_id(body.get("assignment_id"))
    attempt = body.get("attempt") or 1
    at = parse_time(body.get("submitted_at")) or utcnow()
    return [
        LearningEvent(
            platform,
            f"assignment_submitted:{assignment}:{user}:{attempt}",
            "assignment_submitted",
            user,
            at,
            course=_context_course(metadata),
            item=assignment,
            data={"attempt": attempt, "late": bool(body.get("late")), "source": "webhook"},
        )
    ]


def _quiz_submitted(
    platform: str, metadata: Mapping[str, Any], body: Mapping[str, Any]
) -> list[LearningEvent]:
    # Classic quizzes only (New Quizzes send submission_*); the score follows in a grade_change.
    if metadata.get("user_id") is None:
        raise Malformed("metadata.user_id: missing")
    user, submission = local_id(metadata["user_id"]), local_id(body.get("submission_id"))
    quiz = local_id(body.get("quiz_id"))
    return [
        LearningEvent(
            platform,
            f"quiz_submitted:{submission}",
            "quiz_submitted",
            user,
            parse_time(metadata.get("event_time")) or utcnow(),
            course=_context_course(metadata),
            item=quiz,
            data={"source": "webhook"},
        )
    ]


def _enrollment(platform: str, metadata: Mapping[str, Any], body: Mapping[str, Any]) -> list[LearningEvent]:
    if body.get("type") != "StudentEnrollment" or body.get("workflow_state") not in ENROLLED_STATES:
        return []
    at = parse_time(body.get("created_at")) or parse_time(metadata.get("event_time")) or utcnow()
    return [
        enrolled_event(
            platform, local_id(body.get("course_id")), local_id(body.get("user_id")), at, "webhook"
        )
    ]


Parser = Callable[[str, Mapping[str, Any], Mapping[str, Any]], list[LearningEvent]]

PARSERS: dict[str, Parser] = {
    "course_completed": _course_completion,
    "course_progress": _course_completion,
    "grade_change": _grade_change,
    "course_grade_change": _course_grade_change,
    "submission_created": _submission,
    "submission_updated": _submission,
    "quiz_submitted": _quiz_submitted,
    "enrollment_created": _enrollment,
    "enrollment_updated": _enrollment,
}


def parse_live_event(platform: str, payload: Mapping[str, Any]) -> list[LearningEvent]:
    """The learning events of one Live Event; [] for the types the bridge does not use."""
    metadata, body = payload.get("metadata"), payload.get("body")
    if not isinstance(metadata, Mapping) or not isinstance(body, Mapping):
        raise Malformed("expected a Canvas Live Event: an object with 'metadata' and 'body' objects")
    parser = PARSERS.get(str(metadata.get("event_name")))
    if parser is None:
        return []
    try:
        return parser(platform, metadata, body)
    except (TypeError, ValueError, OverflowError) as error:
        # A field of the wrong type or size (a score too large for a float): not what Canvas sends.
        raise Malformed(f"{metadata.get('event_name')}: {error}") from None
