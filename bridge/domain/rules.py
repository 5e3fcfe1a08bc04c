"""The active badges, indexed by the event kinds their criteria listen to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from bridge.domain.criteria import Criteria, Progress, Requirement, Tier, advancers


@dataclass(frozen=True, slots=True)
class ActiveBadge:
    id: str
    criteria_version: int
    points: int
    criteria: Criteria
    prerequisites: tuple[str, ...] = ()
    requires_approval: bool = False
    expires_after_days: int | None = None
    expires_on: date | None = None
    criteria_since: datetime | None = None  # when this criteria version took effect
    notification_type: tuple[str, ...] | None = None  # the channels of its awards, when not the setting's

    def expires_at(self, awarded_at: datetime, zone: tzinfo) -> datetime | None:
        """When an award made at ``awarded_at`` expires: days after it, or the start of a fixed date."""
        if self.expires_after_days is not None:
            return awarded_at + timedelta(days=self.expires_after_days)
        if self.expires_on is not None:
            return datetime.combine(self.expires_on, time(), zone).astimezone(UTC)
        return None

    def tiers_earned(self, progress: Progress) -> tuple[Tier, ...]:
        """What the progress earns: every tier reached, or for an untiered badge one tier named ''."""
        if self.criteria.tiers:
            return progress.reached
        return (Tier("", progress.target, self.points),) if progress.complete else ()


class RuleBook:
    def __init__(
        self, badges: Iterable[ActiveBadge], read_elsewhere: frozenset[str] | None = frozenset()
    ) -> None:
        """``read_elsewhere``: the state keys badges outside the book read (disabled ones), whose states
        are never retired; None when not known, and then none is."""
        self.badges = tuple(badges)
        self._read_elsewhere = read_elsewhere
        self.by_id = {badge.id: badge for badge in self.badges}
        by_kind: dict[str, list[ActiveBadge]] = {}
        dependants: dict[str, list[ActiveBadge]] = {}
        for badge in self.badges:
            for kind in badge.criteria.kinds:
                by_kind.setdefault(kind, []).append(badge)
            for needed in badge.prerequisites:
                dependants.setdefault(needed, []).append(badge)
        self._by_kind = {kind: tuple(found) for kind, found in by_kind.items()}
        self._dependants = {badge_id: tuple(found) for badge_id, found in dependants.items()}
        self.on_points = tuple(badge for badge in self.badges if badge.criteria.on_points)
        # A learner's state of a requirement is shared by every badge with a requirement of its key.
        requirements = [r for badge in self.badges for group in badge.criteria.groups for r in group]
        self._advancers = advancers(requirements)
        self._advancer = {r.key: r for found in self._advancers.values() for r in found}
        readers: dict[str, list[ActiveBadge]] = {}
        for badge in self.badges:
            for key in badge.criteria.state_keys:
                readers.setdefault(key, []).append(badge)
        self._readers = {key: tuple(found) for key, found in readers.items()}

    def advancers(self, kind: str) -> tuple[Requirement, ...]:
        """The requirements whose states events of ``kind`` advance: one per key (see criteria.advancers)."""
        return self._advancers.get(kind, ())

    def advancer(self, key: str) -> Requirement:
        return self._advancer[key]

    def readers(self, key: str) -> tuple[ActiveBadge, ...]:
        """The badges with a requirement whose state is kept under ``key``."""
        return self._readers.get(key, ())

    def may_retire(self, key: str) -> bool:
        """Whether the book knows every badge that reads the state (see criteria.retired)."""
        return self._read_elsewhere is not None and key not in self._read_elsewhere

    def for_kind(self, kind: str) -> tuple[ActiveBadge, ...]:
        return self._by_kind.get(kind, ())

    def dependants(self, badge_id: str) -> tuple[ActiveBadge, ...]:
        return self._dependants.get(badge_id, ())

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._by_kind)
