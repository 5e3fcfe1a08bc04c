"""Rebuilding a learner's requirement states from their earlier events.

A state is rebuilt when its badge's criteria are newer than some of the learner's events evaluated with
the rules before (a criteria change reaches every worker within the rules' lag), or when an event is
older than what a state keeps (aggregates.LateEvent).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bridge.domain.aggregates import EventFacts
from bridge.domain.criteria import Requirement
from bridge.domain.rules import ActiveBadge


def before_criteria(badge: ActiveBadge, seen_less_lag: datetime | None) -> bool:
    """Whether a learner seen at ``seen_less_lag`` (plus the rules' lag) may have had events evaluated
    with other criteria than the badge's: seen before they reached every worker."""
    return seen_less_lag is not None and (
        badge.criteria_since is None or seen_less_lag <= badge.criteria_since
    )


def in_time_order(history: Iterable[EventFacts], facts: EventFacts | None) -> list[EventFacts]:
    """The learner's earlier events and this one (if any), in time order: the order in which a state
    drops nothing it still needs (see aggregates.LateEvent)."""
    events = [*history, *([] if facts is None else [facts])]
    return sorted(events, key=lambda f: f.event.occurred_at)


def replay(requirement: Requirement, events: Iterable[EventFacts]) -> tuple[Any, datetime | None]:
    """The requirement's state after ``events``, taken in order, and the time of the first that changed
    it (None: none did)."""
    state: Any = None
    first: datetime | None = None
    for one in events:
        if not requirement.accepts(one):
            continue
        after = requirement.advance(state, one)
        if after is not state and after != state:
            state = after
            first = earliest(first, one.event.occurred_at)
    return state, first


def earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current
