"""Stored events as the worker reads them: on the driver's cursor (see bridge.db.driver), as named tuples.

The worker claims a batch, the ledgers read a learner's history and the effects their evidence; each
is a plain ``SELECT`` of the same columns, so the columns, the row type and its decoding are here once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from bridge.db.driver import Driver
from bridge.domain.events import LearningEvent

COLUMNS = "id, platform, event_key, kind, learner, course, item, score, occurred_at, data"


class EventRow(NamedTuple):
    id: int
    platform: str
    event_key: str
    kind: str
    learner: str
    course: str | None
    item: str | None
    score: float | None
    occurred_at: datetime
    data: dict[str, Any]


def event_row(driver: Driver, raw: Any) -> EventRow:
    """An ``EventRow`` from the first columns of a driver row selected as ``COLUMNS``."""
    return EventRow(
        raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
        driver.read_time(raw[8]), driver.read_json(raw[9]),  # type: ignore[arg-type]
    )  # fmt: skip


def learner_events(driver: Driver) -> str:
    """The condition for one learner's processed events of some kinds: (platform, learner, kinds)."""
    mark = driver.mark
    return f"platform = {mark} AND learner = {mark} AND {driver.in_list('kind')} AND status = 'done'"


def to_learning_event(row: Any) -> LearningEvent:
    return LearningEvent(
        platform=row.platform,
        event_key=row.event_key,
        kind=row.kind,
        learner=row.learner,
        occurred_at=row.occurred_at,
        course=row.course,
        item=row.item,
        score=row.score,
        data=row.data,
    )
