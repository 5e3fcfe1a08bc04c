"""The canonical learning event every connector and the REST API produce."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.domain.text import check_data, check_names

# The kinds the LMS connectors produce. The REST API may add custom kinds (``login``, ``purchase``, ...),
# accepted when listed in the ``track_event_types`` setting.
LMS_KINDS: tuple[str, ...] = (
    "course_completed",
    "module_completed",
    "activity_completed",
    "assignment_graded",
    "quiz_graded",
    "course_graded",
    "enrolled",
    # From the connectors too: partial module progress (Canvas), an activity marked incomplete again
    # (Moodle), and submissions whose grade comes later.
    "course_progress",
    "activity_uncompleted",
    "assignment_submitted",
    "quiz_submitted",
)


@dataclass(frozen=True, slots=True)
class LearningEvent:
    """One fact about one learner, from one platform.

    ``event_key`` is unique per platform. It is semantic where the event states a fact ("learner L
    completed course C"), so a webhook and a poll of the same fact collapse into one; occurrences that
    count (a login, a purchase) carry their own id. ``score`` is a fraction 0..1; raw points stay in ``data``.
    """

    platform: str
    event_key: str
    kind: str
    learner: str
    occurred_at: datetime
    course: str | None = None
    item: str | None = None
    score: float | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("platform", "event_key", "kind", "learner"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must carry a timezone")
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ValueError("score must be a fraction between 0 and 1")
        # What both databases store and read back unchanged (see bridge.domain.text): refused here, the
        # one way into the inbox, rather than failing in the worker.
        check_names(self.platform, self.event_key, self.kind, self.learner, self.course, self.item)
        if self.data:
            check_data(self.data)
