"""One learner's progress, awards and points while their events are evaluated.

The ledger is the rules engine's working memory for one learner: the services load it inside the
transaction (with the learner locked), feed it events, and write back what changed. Everything it decides
— which tiers are earned, whether prerequisites are held, what needs approval, how points move — is here,
free of I/O, so the worker, the hourly sweep and the tests share one set of rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.domain.aggregates import EventFacts
from bridge.domain.criteria import Progress, Tier
from bridge.domain.events import LearningEvent
from bridge.domain.rules import ActiveBadge, RuleBook


@dataclass(frozen=True, slots=True)
class BadgeRecord:
    """A learner's stored progress on one badge."""

    criteria_version: int
    state: Mapping[str, Any]
    progress: Progress
    started_at: datetime | None


@dataclass(frozen=True, slots=True)
class Earned:
    """A badge tier the learner has earned: awarded now, or waiting for approval."""

    badge: ActiveBadge
    tier: Tier
    event: LearningEvent | None  # what earned it; None when found by the sweep
    earned_at: datetime
    needs_approval: bool
    points: int  # what the award adds to the learner's points
    granted_by: str | None = None  # who awarded it by hand; None for the rules
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AwardPolicy:
    enabled: bool = True  # the enable_achievements setting
    points_per_badge: int = 0


# The learner's earlier events for a badge whose criteria changed, oldest first.
History = Callable[[ActiveBadge], Iterable[EventFacts]]
# A record not loaded up front (e.g. a dependant unlocked by an award), or None if there is none.
Loader = Callable[[str], BadgeRecord | None]


@dataclass
class LearnerLedger:
    points: int
    records: dict[str, BadgeRecord]
    awarded: set[tuple[str, str]]  # (badge, tier) of every award, revoked ones included: never re-awarded
    held: set[str]  # badges with an award that is not revoked: what prerequisites look at
    requested: set[tuple[str, str]]  # (badge, tier) already in the approval queue, whatever its decision
    policy: AwardPolicy
    # False for a learner first seen in this batch: no earlier events, so a missing record means zero.
    has_history: bool = True
    load: Loader = lambda _badge_id: None
    dirty: set[str] = field(default_factory=set)
    earned: list[Earned] = field(default_factory=list)
    _unloaded: set[str] = field(default_factory=set)

    def record(self, badge_id: str) -> BadgeRecord | None:
        if badge_id not in self.records and badge_id not in self._unloaded:
            found = self.load(badge_id)
            if found is None:
                self._unloaded.add(badge_id)
            else:
                self.records[badge_id] = found
        return self.records.get(badge_id)

    def observe(self, facts: EventFacts, rules: RuleBook, history: History) -> None:
        """Advance every badge listening to the event, and award what it completes."""
        event = facts.event
        for badge in rules.for_kind(event.kind):
            record = self.record(badge.id)
            stale = record is not None and record.criteria_version != badge.criteria_version
            if stale or (record is None and self.has_history):
                # New criteria, or a badge the learner has no record of although they have history
                # (it was created after their earlier events): rebuild from everything they did.
                state: Mapping[str, Any] = {}
                started: datetime | None = None
                for past in history(badge):
                    advanced = badge.criteria.advance(state, past)
                    if advanced is not None:
                        state = advanced
                        started = _earliest(started, past.event.occurred_at)
                advanced = badge.criteria.advance(state, facts)
                if advanced is not None:
                    state, started = advanced, _earliest(started, event.occurred_at)
            else:
                advanced = badge.criteria.advance(record.state if record else {}, facts)
                if advanced is None:
                    continue
                state = advanced
                started = _earliest(record.started_at if record else None, event.occurred_at)
            progress = badge.criteria.progress(state, self.points)
            self._store(badge, BadgeRecord(badge.criteria_version, state, progress, started))
            self._earn(badge, progress, rules, event, event.occurred_at)

    def settle(self, rules: RuleBook, now: datetime) -> None:
        """Award everything already complete but not yet awarded (the sweep after achievements were off)."""
        for badge in rules.badges:
            record = self.record(badge.id)
            if record is not None and record.criteria_version == badge.criteria_version:
                self._earn(badge, record.progress, rules, None, now)
        self._points_changed(rules, None, now)

    def grant(
        self, badge: ActiveBadge, tier: Tier, rules: RuleBook, at: datetime, granted_by: str, reason: str
    ) -> Earned:
        """Award by hand (an instructor, or an approval): no criteria, prerequisite or approval check.

        What the award unlocks (dependants, point levels) follows the rules as usual.
        """
        key = (badge.id, tier.name)
        if key in self.awarded:
            raise ValueError(f"{badge.id}{'/' + tier.name if tier.name else ''} is already awarded")
        points = tier.points + self.policy.points_per_badge
        earned = Earned(badge, tier, None, at, False, points, granted_by, reason)
        self.awarded.add(key)
        self.held.add(badge.id)
        self.points += points
        self.earned.append(earned)
        self._unlock(badge.id, rules, None, at)
        if points:
            self._points_changed(rules, None, at)
        return earned

    def snapshot(self) -> tuple[Any, ...]:
        return (
            self.points, dict(self.records), set(self.awarded), set(self.held), set(self.requested),
            set(self.dirty), len(self.earned),
        )  # fmt: skip

    def restore(self, snapshot: tuple[Any, ...]) -> None:
        self.points, self.records, self.awarded, self.held, self.requested, self.dirty, count = snapshot
        del self.earned[count:]

    def _store(self, badge: ActiveBadge, record: BadgeRecord) -> None:
        self.records[badge.id] = record
        self.dirty.add(badge.id)

    def _earn(
        self,
        badge: ActiveBadge,
        progress: Progress,
        rules: RuleBook,
        event: LearningEvent | None,
        earned_at: datetime,
    ) -> None:
        if not self.policy.enabled:
            return
        if any(needed not in self.held for needed in badge.prerequisites):
            return  # awarded when the last prerequisite is (see _unlock)
        for tier in badge.tiers_earned(progress):
            key = (badge.id, tier.name)
            if key in self.awarded or key in self.requested:
                continue
            points = tier.points + self.policy.points_per_badge
            if badge.requires_approval:
                self.requested.add(key)
                self.earned.append(Earned(badge, tier, event, earned_at, True, points))
                continue
            self.awarded.add(key)
            self.held.add(badge.id)
            self.points += points
            self.earned.append(Earned(badge, tier, event, earned_at, False, points))
            self._unlock(badge.id, rules, event, earned_at)
            if points:
                self._points_changed(rules, event, earned_at)

    def _unlock(self, badge_id: str, rules: RuleBook, event: LearningEvent | None, at: datetime) -> None:
        for dependant in rules.dependants(badge_id):
            record = self.record(dependant.id)
            if record is not None and record.criteria_version == dependant.criteria_version:
                self._earn(dependant, record.progress, rules, event, at)

    def _points_changed(self, rules: RuleBook, event: LearningEvent | None, at: datetime) -> None:
        """Badges on the learner's points follow them; awarding one may move the points again."""
        for badge in rules.on_points:
            record = self.record(badge.id)
            current = record is not None and record.criteria_version == badge.criteria_version
            if record is not None and not current and badge.criteria.kinds:
                continue  # mixed criteria of an old version: replayed on the learner's next event
            state = record.state if record is not None and current else {}
            progress = badge.criteria.progress(state, self.points)
            if record is None or not current or progress != record.progress:
                started = record.started_at if record is not None and current else None
                self._store(badge, BadgeRecord(badge.criteria_version, state, progress, started or at))
            self._earn(badge, progress, rules, event, at)


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current
