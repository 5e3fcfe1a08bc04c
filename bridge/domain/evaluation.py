"""One learner's progress, awards and points while their events are evaluated.

The ledger is the rules engine's working memory for one learner: the services load it inside the
transaction (with the learner locked), feed it events, and write back what changed. Everything it decides
— which tiers are earned, whether prerequisites are held, what needs approval, how points move — is here,
free of I/O, so the worker, the hourly sweep and the tests share one set of rules.

A learner's requirement states are kept once, by key (``criteria.shape_key``), not per badge: badges
whose requirements differ only in target ("5 logins", "50 logins") read one state, advanced once per
event. Beside each state, the time of the first event that changed it (``since``).

A badge on its way needs nothing more: its progress is worked out from the states when asked for. A
record per badge (criteria version, start, and where the states leave it) is kept once it counts: when
the badge is complete or on a tier; for every badge with tiers (the tier funnel counts who started); for
a learner who came before the badge's criteria reached every worker (the record says the states are of
these criteria, rebuilt from history if need be); and for badges on the learner's points (their start
is when the points first moved). Most of a learner's badges are on their way: keeping no record for
them makes an event's work and a learner's document smaller. A record's start is the earliest
``since`` of the states it reads.

Once every badge reading a state is saturated, the state is retired: only what it measured is kept
(criteria.retired), and a badge that needs more of it — one newer than the learner's states, met by a
worker before its rule book knew it — rebuilds it from history. States a disabled badge reads are
never retired. A disabled badge's record is not looked at; a state it shares with enabled badges goes
on advancing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from bridge.domain.aggregates import EventFacts
from bridge.domain.criteria import Progress, Requirement, Standing, Tier, advance_states, is_retired, retired
from bridge.domain.events import LearningEvent
from bridge.domain.records import BadgeRecord, from_micros, micros
from bridge.domain.replay import before_criteria, earliest, in_time_order, replay
from bridge.domain.rules import ActiveBadge, RuleBook


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


# The learner's earlier events of some kinds (for states rebuilt from them), in any order.
History = Callable[[frozenset[str]], Iterable[EventFacts]]
# A record not loaded up front (e.g. a dependant unlocked by an award), or None if there is none.
Loader = Callable[[str], BadgeRecord | None]


class AwardsOf(NamedTuple):
    """A learner's awards and approval requests of one badge, read when first needed."""

    awarded: tuple[str, ...]  # tiers, revoked ones included
    requested: tuple[str, ...]  # tiers in the approval queue, whatever the decision
    held: bool  # an award that is not revoked


AwardsLoader = Callable[[str], AwardsOf]


@dataclass
class LearnerLedger:
    points: int
    records: dict[str, BadgeRecord]
    awarded: set[tuple[str, str]]  # (badge, tier) of every award, revoked ones included: never re-awarded
    held: set[str]  # badges with an award that is not revoked: what prerequisites look at
    requested: set[tuple[str, str]]  # (badge, tier) already in the approval queue, whatever its decision
    policy: AwardPolicy
    # The learner's requirement states by key, shared by the badges that read them (see the module).
    states: dict[str, Any] = field(default_factory=dict)
    # By state key: when the first event that changed it happened (see micros).
    since: dict[str, int] = field(default_factory=dict)
    states_changed: bool = False  # states to write
    # When the learner was first seen; None when first seen now, with no earlier events to replay.
    first_seen: datetime | None = None
    # For a learner first seen now: when (see _counts).
    seen_now: datetime | None = None
    # How long after a criteria change some worker may still evaluate with the old rule book.
    rules_lag: timedelta = timedelta(0)
    load: Loader | None = None  # None: every record is in records
    # The badges whose awards and requests are in awarded/held/requested; None: every badge's are.
    # Others are read with load_awards when first needed (an unlocked dependant, say).
    awards_known: set[str] | None = None
    load_awards: AwardsLoader = lambda _badge_id: AwardsOf((), (), False)
    dirty: set[str] = field(default_factory=set)  # records changed: the learner's states to write
    # Records whose progress report changed. Reported: records complete or with a tier (and those no
    # longer so), every record of a tiered badge, and records rebuilt by the sweep; not every step.
    reported: set[str] = field(default_factory=set)
    earned: list[Earned] = field(default_factory=list)
    _unloaded: set[str] = field(default_factory=set)
    # When the learner was first seen less the rules' lag: a badge whose criteria changed since then may
    # have had some of their events evaluated with other criteria (see replay.before_criteria).
    _replayed_after: datetime | None = field(init=False, default=None)
    _pinned_after: datetime | None = field(init=False, default=None)  # the same, for seen_now too

    def __post_init__(self) -> None:
        lag = self.rules_lag
        self._replayed_after = None if self.first_seen is None else self.first_seen - lag
        seen = self.first_seen or self.seen_now
        self._pinned_after = None if seen is None else seen - lag

    def record(self, badge_id: str) -> BadgeRecord | None:
        found = self.records.get(badge_id)
        if found is None and self.load is not None and badge_id not in self._unloaded:
            found = self.load(badge_id)
            if found is None:
                self._unloaded.add(badge_id)
            else:
                self.records[badge_id] = found
        return found

    def progress_of(self, badge: ActiveBadge) -> Progress | None:
        """The learner's progress on the badge in full, or None when their states are not of its
        criteria (they come before them: rebuilt from history at their next event, or by the sweep)."""
        record = self.record(badge.id)
        if record is None:
            if self._needs_replay(badge, None):
                return None
            return badge.criteria.progress(self.states, self.points)  # on its way, or not started
        if record.criteria_version != badge.criteria_version:
            return None
        return record.progress(badge, self.states, self.points)

    def _know_awards(self, badge_id: str) -> None:
        known = self.awards_known
        if known is None or badge_id in known:
            return
        known.add(badge_id)
        found = self.load_awards(badge_id)
        self.awarded.update((badge_id, tier) for tier in found.awarded)
        self.requested.update((badge_id, tier) for tier in found.requested)
        if found.held:
            self.held.add(badge_id)

    def observe(self, facts: EventFacts, rules: RuleBook, history: History) -> None:
        """Advance the states the event counts in, then every badge listening to it; award what it
        completes."""
        event = facts.event
        occurred = event.occurred_at
        changed = self._advance_states(facts, rules, history)
        records, load, states = self.records, self.load, self.states
        measured: dict[str, float] = {}  # this event's values of the states, by key
        for badge in rules.for_kind(event.kind):
            record = records.get(badge.id)
            if record is None and load is not None:
                record = self.record(badge.id)
            rebuilt = False
            if record is None:
                if self._replayed_after is not None and self._needs_replay(badge, None):
                    # A badge that came after some of the learner's events were evaluated: rebuilt
                    # from everything they did, and kept as a record of these criteria.
                    started, rebuilt = self._rebuild(badge, rules, facts, history), True
                    measured.clear()
                elif changed is None or changed.isdisjoint(badge.criteria.state_keys):
                    continue
                elif (single := badge.criteria.single) is not None:
                    # Most badges: one requirement, no tiers. Badges sharing its state measure it once.
                    value = measured.get(single.key)
                    if value is None:
                        value = measured[single.key] = single.measure(states.get(single.key), 0)
                    if value < single.target and not self._pinned(badge):
                        continue  # on its way: the states say how far (see the module)
            elif record.criteria_version != badge.criteria_version:
                # New criteria: from everything.
                started, rebuilt = self._rebuild(badge, rules, facts, history), True
                measured.clear()
            elif record.saturated or changed is None or changed.isdisjoint(badge.criteria.state_keys):
                # Saturated: nothing left to change or to earn by events (unlocks come by _unlock).
                continue
            standing = badge.criteria.standing(self.states, self.points)
            if rebuilt:
                pass
            elif record is None:
                if not self._counts(badge, standing):
                    continue  # on its way: the states say how far (see the module)
                started = self._started(badge)
            else:
                started = earliest(record.started_at, occurred)
                if standing == record.standing and started == record.started_at:
                    continue  # a step on the way: the states changed, the record did not
            stored = self._store(badge, started, record, standing)
            if (stored.complete or stored.tier) and stored.reports_differently(record):
                # Completed, or a new tier: what was earned before was awarded then, or is waiting
                # for what releases it (the sweep, a prerequisite, an approval), not for an event.
                self._earn(badge, stored, rules, event, occurred)
            if stored.saturated:
                self._retire_states(badge, rules)

    def _advance_states(self, facts: EventFacts, rules: RuleBook, history: History) -> set[str] | None:
        """Advance each state the event counts in, once whatever the badges sharing it; returns the keys
        of those it changed, or None."""

        def rebuilt(requirement: Requirement) -> Any:  # the event is older than what the state keeps
            state, first = replay(requirement, in_time_order(history(requirement.kinds), facts))
            self._set_state(requirement.key, state, first)
            return state

        changed = advance_states(rules.advancers(facts.event.kind), self.states, facts, rebuilt)
        if changed is not None:
            self.states_changed = True
            at, since = micros(facts.event.occurred_at), self.since
            for key in changed:
                first = since.get(key)
                if first is None or at < first:
                    since[key] = at
        return changed

    def _rebuild(
        self, badge: ActiveBadge, rules: RuleBook, facts: EventFacts | None, history: History
    ) -> datetime | None:
        """Every state the badge reads, rebuilt from the learner's earlier events and this one (if any);
        returns the badge's start: the earliest event that changed one of them."""
        kinds = badge.criteria.kinds
        if not kinds:
            return None
        events = in_time_order(history(kinds), facts)
        started: datetime | None = None
        for key in sorted(badge.criteria.state_keys):
            # The rule book's requirement of the key: a shared state holds what every badge needs.
            state, first = replay(rules.advancer(key), events)
            self._set_state(key, state, first)
            if first is not None:
                started = earliest(started, first)
        self.states_changed = True
        return started

    def _retire_states(self, badge: ActiveBadge, rules: RuleBook) -> None:
        """Retire the states of a saturated badge that no badge needs any more: every badge reading
        one is saturated too (see criteria.retired). Long-standing learners have many such states: the
        document read and written for them at every batch stays small."""
        states = self.states
        for key in badge.criteria.state_keys:
            state = states.get(key)
            if state is None or is_retired(state) or not rules.may_retire(key):
                continue
            if all(self._saturated(reader) for reader in rules.readers(key)):
                states[key] = retired(rules.advancer(key).measure(state, 0))
                self.since.pop(key, None)
                self.states_changed = True

    def _saturated(self, badge: ActiveBadge) -> bool:
        record = self.record(badge.id)
        return record is not None and record.saturated and record.criteria_version == badge.criteria_version

    def _set_state(self, key: str, state: Any, first: datetime | None) -> None:
        """A state rebuilt from history, and when the first event that changed it happened."""
        if state is None:
            self.states.pop(key, None)
        else:
            self.states[key] = state
        if first is None:
            self.since.pop(key, None)
        else:
            self.since[key] = micros(first)

    def _started(self, badge: ActiveBadge) -> datetime | None:
        """When the first event that changed one of the badge's states happened."""
        since = self.since
        known = [since[key] for key in badge.criteria.state_keys if key in since]
        return from_micros(min(known)) if known else None

    def _counts(self, badge: ActiveBadge, standing: Standing) -> bool:
        """Whether a badge without a record needs one (see the module)."""
        return standing.complete or bool(standing.tier) or bool(badge.criteria.tiers) or self._pinned(badge)

    def _pinned(self, badge: ActiveBadge) -> bool:
        """Whether the learner was first seen shortly after the badge's criteria changed, and needs a
        record of them: some of their events may have been evaluated with the criteria before, and
        without a record of these criteria their states are rebuilt from history at their next event
        (see _needs_replay)."""
        return before_criteria(badge, self._pinned_after)

    def _needs_replay(self, badge: ActiveBadge, record: BadgeRecord | None) -> bool:
        if record is not None:
            return record.criteria_version != badge.criteria_version
        # No record: none of the learner's events matched, or the badge is on its way — unless some
        # were evaluated before this version of the badge reached every worker.
        return before_criteria(badge, self._replayed_after)

    def settle(self, rules: RuleBook, now: datetime) -> None:
        """Award everything already complete but not yet awarded (the sweep after achievements were off)."""
        for badge in rules.badges:
            self._earn_current(badge, rules, None, now)
        self._points_changed(rules, None, now)

    def rebuild(self, badge: ActiveBadge, rules: RuleBook, history: History, now: datetime) -> None:
        """The badge's record rebuilt from the learner's events, and what it completes earned.

        For a badge that is new, or has new criteria, since the learner's last event: their next event
        would rebuild it (see observe), but a learner may send none for a long time.
        """
        started = self._rebuild(badge, rules, None, history)
        stored = self._store(badge, started, self.record(badge.id))
        self.reported.add(badge.id)  # even an empty record: the learner was looked at
        if stored.complete or stored.tier:
            self._earn(badge, stored, rules, None, now)

    def grant(
        self, badge: ActiveBadge, tier: Tier, rules: RuleBook, at: datetime, granted_by: str, reason: str
    ) -> Earned:
        """Award by hand (an instructor, or an approval): no criteria, prerequisite or approval check.

        What the award unlocks (dependants, point levels) follows the rules as usual.
        """
        self._know_awards(badge.id)
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
        known = None if self.awards_known is None else set(self.awards_known)
        return (
            self.points, dict(self.records), dict(self.states), dict(self.since), self.states_changed,
            set(self.awarded), set(self.held), set(self.requested), set(self.dirty), set(self.reported),
            len(self.earned), known,
        )  # fmt: skip

    def restore(self, snapshot: tuple[Any, ...]) -> None:
        """Back to ``snapshot``, which stays as it was: it can be restored again."""
        (
            points, records, states, since, states_changed, awarded, held, requested, dirty, reported,
            count, known,
        ) = snapshot  # fmt: skip
        self.states, self.since, self.states_changed = dict(states), dict(since), states_changed
        self.points, self.records, self.awarded = points, dict(records), set(awarded)
        self.held, self.requested = set(held), set(requested)
        self.dirty, self.reported = set(dirty), set(reported)
        self.awards_known = None if known is None else set(known)
        del self.earned[count:]

    def _store(
        self,
        badge: ActiveBadge,
        started: datetime | None,
        before: BadgeRecord | None,
        standing: Standing | None = None,
    ) -> BadgeRecord:
        complete, tier, saturated = standing or badge.criteria.standing(self.states, self.points)
        record = BadgeRecord(badge.criteria_version, started, complete, tier, saturated)
        self.records[badge.id] = record
        self.dirty.add(badge.id)
        if (
            complete
            or tier
            or (before is not None and (before.complete or before.tier))
            or badge.criteria.tiers  # the tier funnel counts who started
        ) and record.reports_differently(before):
            self.reported.add(badge.id)
        return record

    def _earn_current(
        self, badge: ActiveBadge, rules: RuleBook, event: LearningEvent | None, at: datetime
    ) -> None:
        """Award what the record of the badge's current criteria earns, with the points of now."""
        record = self.record(badge.id)
        if record is not None and record.criteria_version == badge.criteria_version:
            if not record.saturated:  # a saturated record stays so (see BadgeRecord.progress)
                complete, tier, _ = badge.criteria.standing(self.states, self.points)
                record = record._replace(complete=complete, tier=tier)
            self._earn(badge, record, rules, event, at)

    def _earn(
        self,
        badge: ActiveBadge,
        record: BadgeRecord,
        rules: RuleBook,
        event: LearningEvent | None,
        earned_at: datetime,
    ) -> None:
        if not (record.complete or record.tier) or not self.policy.enabled:
            return
        for needed in badge.prerequisites:
            self._know_awards(needed)
            if needed not in self.held:
                return  # awarded when the last prerequisite is (see _unlock)
        self._know_awards(badge.id)
        for tier in badge.tiers_earned(record.progress(badge, self.states, self.points)):
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
            self._earn_current(dependant, rules, event, at)

    def _points_changed(self, rules: RuleBook, event: LearningEvent | None, at: datetime) -> None:
        """Badges on the learner's points follow them; awarding one may move the points again."""
        for badge in rules.on_points:
            record = self.record(badge.id)
            current = record is not None and record.criteria_version == badge.criteria_version
            if badge.criteria.kinds and self._needs_replay(badge, record):
                continue  # points and events, to be rebuilt from history on the learner's next event
            if record is not None and current and record.saturated:
                continue
            standing = badge.criteria.standing(self.states, self.points)
            if record is None or not current or standing != record.standing:
                started = record.started_at if record is not None and current else None
                # A new tier or completion is earned now; an unchanged one was when it came (as in
                # observe; settle looks at every badge itself).
                self._earn(badge, self._store(badge, started or at, record, standing), rules, event, at)
