"""A learner's record of one badge, as the ledger keeps it (see bridge.domain.evaluation).

Times in a learner's document are microseconds since the epoch: exact, and compact in JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from bridge.domain.criteria import Progress, Standing
from bridge.domain.rules import ActiveBadge

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch: how ``since`` keeps times, exact and compact in a document."""
    return (moment - EPOCH) // MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + value * MICROSECOND


class BadgeRecord(NamedTuple):
    """A learner's progress on one badge: where the learner's states leave it (a named tuple: one is
    made per badge that changes). Progress in full is worked out from the states only when asked for."""

    criteria_version: int
    started_at: datetime | None  # the first counted event
    complete: bool = False
    tier: str = ""
    saturated: bool = False  # every requirement met: events cannot change it

    @property
    def standing(self) -> Standing:
        return Standing(self.complete, self.tier, self.saturated)

    def progress(self, badge: ActiveBadge, states: Mapping[str, Any], points: float) -> Progress:
        """Progress in full, from the learner's requirement states (``LearnerLedger.states``).

        A saturated record's progress is full, whatever the states say now: a state it shares may have
        been rebuilt for another badge since, and what this record met stays met.
        """
        if self.saturated:
            return badge.criteria.full_progress()
        return badge.criteria.progress(states, points)

    def reports_differently(self, other: BadgeRecord | None) -> bool:
        """Whether the progress report (version, start, completeness, tier) differs from ``other``'s."""
        return (
            other is None
            or self.criteria_version != other.criteria_version
            or self.started_at != other.started_at
            or self.complete != other.complete
            or self.tier != other.tier
        )


@functools.cache  # one per criteria version: most of a long-standing learner's records are these
def saturated_record(criteria_version: int) -> BadgeRecord:
    """A saturated record as a learner's document keeps it: its criteria version alone.

    Nothing about it changes any more: its progress is full (see BadgeRecord.progress), its start and
    tier are in the progress report written when it saturated, and nothing looks at them here again
    (a record is only rebuilt for new criteria, which report it anew).
    """
    return BadgeRecord(criteria_version, None, True, "", True)
