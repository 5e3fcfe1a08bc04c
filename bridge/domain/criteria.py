"""Badge criteria and their incremental evaluation.

Criteria are requirements in groups: every group must be met (AND), and a group is met by any one of its
requirements (OR). A learner's state for a badge is a small mapping, one entry per requirement, updated
per event, so the cost of an event does not depend on the learner's history.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bridge.domain.aggregates import Aggregate, AllOf, EventFacts, LateEvent, Window
from bridge.domain.expressions import EventFilter

State = Mapping[str, Any]
POINTS_KEY = "points"  # the learner's points have no state: every points requirement may share a key


def retired(value: float) -> str:
    """What is kept of a state once every badge reading it is saturated: how far it measured.

    States are lists, mappings or numbers; a retired one is text (``"=5.0"``). It measures what the
    state did, and it cannot take an event (Requirement.add raises LateEvent): a requirement that needs
    more of it than it measured — a badge newer than the learner's state — rebuilds it from history.
    """
    return f"={value!r}"


def is_retired(state: Any) -> bool:
    return state.__class__ is str


def shape_key(
    kinds: Collection[str],
    aggregate: str,
    field: str | None,
    filter_text: str | None,
    items: Iterable[Any] | None,
    within_days: int | None,
    per: str | None,
) -> str:
    """The key of a requirement's state: what it measures, over which events, but not its target.

    Requirements that differ only in target measure the same thing, whichever badges they belong to,
    so a learner keeps one state for them all (see RuleBook.advancers). Written out again in migration
    0007, which must keep meaning what it meant; a test holds the two together.
    """
    shape = {
        "kinds": sorted(set(kinds)),
        "aggregate": aggregate,
        "field": field,
        "filter": filter_text,
        "items": None if items is None else sorted(set(items), key=repr),
        "within_days": within_days,
        "per": per,
    }
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


class Unit(NamedTuple):
    """What a requirement counts, in the singular and the plural: "1 quiz aced", "3 quizzes aced"."""

    one: str
    other: str

    def of(self, count: float) -> str:
        return self.one if count == 1 else self.other


@dataclass(frozen=True, slots=True)
class Requirement:
    """What one kind of evidence must add up to; ``kinds`` is empty for the learner's points."""

    key: str
    kinds: frozenset[str]
    aggregate: Aggregate | None  # None: the learner's points, which no event carries
    target: float
    field: str | None = None
    filter: EventFilter | None = None
    window: Window | None = None
    unit: Unit | None = None

    @property
    def on_points(self) -> bool:
        return self.aggregate is None

    @property
    def shape(self) -> str:
        """The key its state is kept under when it comes from a template (see ``shape_key``)."""
        if self.aggregate is None:
            return POINTS_KEY
        items = self.aggregate.items if isinstance(self.aggregate, AllOf) else None
        window = self.window
        return shape_key(
            self.kinds,
            self.aggregate.name,
            self.field,
            None if self.filter is None else self.filter.text,
            items,
            None if window is None else window.days,
            None if window is None else window.period,
        )

    def accepts(self, facts: EventFacts) -> bool:
        return facts.event.kind in self.kinds and (self.filter is None or self.filter.matches(facts.context))

    def advance(self, state: Any, facts: EventFacts) -> Any:
        """The state after a matching event (``state`` is None before the first).

        A met requirement keeps its state: its value is capped at the target, so nothing more can show,
        and nothing needs writing.
        """
        if state is not None and self.measure(state, 0) >= self.target:
            return state
        return self.add(state, facts)

    def add(self, state: Any, facts: EventFacts) -> Any:
        """``advance`` for a requirement known not to be met yet."""
        aggregate = self.aggregate
        assert aggregate is not None
        if state.__class__ is str:
            raise LateEvent(f"{self.key}: retired at {state[1:]}, below the target {self.target}")
        if aggregate.name == "streak":
            value: Any = facts.day
        elif self.field is not None:
            value = facts.field(self.field)
            if value is None:
                return state
        else:
            value = None
        if self.window is not None:
            return self.window.add(state or self.window.empty(), aggregate, facts, value)
        return aggregate.add(aggregate.empty() if state is None else state, value)

    def measure(self, state: Any, points: float) -> float:
        if self.aggregate is None:
            return float(points)
        if state is None:
            return 0.0
        if state.__class__ is str:
            return float(state[1:])  # retired (see retired)
        if self.window is not None:
            return self.window.measure(state)
        return self.aggregate.measure(state)


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    target: float
    points: int


class Part(NamedTuple):
    """One group's best requirement and how far it is.

    Named tuples, not frozen dataclasses, for Part and Progress: the evaluator makes one or two per
    badge per event, and a frozen dataclass costs several times as much to build.
    """

    requirement: Requirement
    value: float  # capped at the target
    state: Any

    @property
    def met(self) -> bool:
        return self.value >= self.requirement.target


class Standing(NamedTuple):
    """Where a state stands, without the detail of Progress: what the evaluator keeps per badge.

    Worked out for every change of every badge's state, so it is made of comparisons only.
    """

    complete: bool
    tier: str = ""  # the highest tier reached, for badges with tiers
    saturated: bool = False  # every requirement met: no event can change it any more


NOT_MET = Standing(False, "", False)
MET = Standing(True, "", True)


class Progress(NamedTuple):
    value: float
    target: float
    complete: bool
    parts: tuple[Part, ...]
    tier: str = ""  # the highest tier reached, for badges with tiers
    reached: tuple[Tier, ...] = ()
    next_tier: Tier | None = None
    # Every requirement met: no event can change this progress any more.
    saturated: bool = False

    @property
    def fraction(self) -> float:
        return 1.0 if self.target <= 0 else min(self.value / self.target, 1.0)


def advancers(requirements: Iterable[Requirement]) -> dict[str, tuple[Requirement, ...]]:
    """By event kind, one requirement per state key: the one that advances the state.

    Requirements with one key differ at most in target (see ``shape_key``). The state is advanced by
    the one with the highest target, whose cap (and freezing point, see Requirement.advance) is
    highest, so that it holds what every one of them needs.
    """
    chosen: dict[str, Requirement] = {}
    for requirement in requirements:
        if requirement.on_points:
            continue
        known = chosen.get(requirement.key)
        if known is None or requirement.target > known.target:
            chosen[requirement.key] = requirement
    by_kind: dict[str, list[Requirement]] = {}
    for requirement in chosen.values():
        for kind in sorted(requirement.kinds):
            by_kind.setdefault(kind, []).append(requirement)
    return {kind: tuple(found) for kind, found in by_kind.items()}


def advance_states(
    requirements: Iterable[Requirement],
    states: dict[str, Any],
    facts: EventFacts,
    late: Callable[[Requirement], Any] | None = None,
) -> set[str] | None:
    """Advance ``states`` in place by the event, one requirement per key (see ``advancers``); returns
    the keys changed, or None.

    ``late`` gives a requirement's state when the event is older than the part of it that is kept
    (aggregates.LateEvent); without it, LateEvent is raised.
    """
    changed: set[str] | None = None
    for requirement in requirements:
        key = requirement.key
        before = states.get(key)
        if before is not None and requirement.measure(before, 0) >= requirement.target:
            continue  # met (see Requirement.advance); checked before the costlier filter
        if requirement.filter is not None and not requirement.filter.matches(facts.context):
            continue
        try:
            after = requirement.add(before, facts)
        except LateEvent:
            if late is None:
                raise
            after = late(requirement)
        if after is not before and after != before:
            states[key] = after
            if changed is None:
                changed = set()
            changed.add(key)
    return changed


@dataclass(frozen=True, slots=True)
class Criteria:
    groups: tuple[tuple[Requirement, ...], ...]
    tiers: tuple[Tier, ...] = ()
    _by_kind: dict[str, tuple[Requirement, ...]] = field(init=False, repr=False, compare=False)
    # Most badges: one group of one requirement, and no tiers.
    single: Requirement | None = field(init=False, repr=False, compare=False)
    # The keys of the states its requirements on events read.
    state_keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        requirements = [requirement for group in self.groups for requirement in group]
        object.__setattr__(self, "_by_kind", advancers(requirements))
        single = len(self.groups) == 1 and len(self.groups[0]) == 1 and not self.tiers
        object.__setattr__(self, "single", self.groups[0][0] if single else None)
        keys = frozenset(r.key for r in requirements if not r.on_points)
        object.__setattr__(self, "state_keys", keys)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(kind for group in self.groups for r in group for kind in r.kinds)

    @property
    def on_points(self) -> bool:
        return any(r.on_points for group in self.groups for r in group)

    def advance(self, state: State, facts: EventFacts) -> dict[str, Any] | None:
        """The state after the event, or None when the event changes nothing; the input is left untouched."""
        after = dict(state)
        return after if advance_states(self._by_kind.get(facts.event.kind, ()), after, facts) else None

    def progress(self, state: State, points: float = 0) -> Progress:
        if self.tiers:
            return self._tiered_progress(state, points)
        if len(self.groups) == 1 and len(self.groups[0]) == 1:  # most badges: one requirement
            (requirement,) = self.groups[0]
            raw = state.get(requirement.key)
            reached = min(requirement.measure(raw, points), requirement.target)
            met = reached >= requirement.target
            part = Part(requirement, reached, raw)
            return Progress(reached, requirement.target, met, (part,), saturated=met)
        value = target = 0.0
        complete = saturated = True
        parts = []
        for group in self.groups:
            best: Part | None = None
            for requirement in group:
                reached = min(requirement.measure(state.get(requirement.key), points), requirement.target)
                saturated = saturated and reached >= requirement.target
                if best is None or reached / requirement.target > best.value / best.requirement.target:
                    best = Part(requirement, reached, state.get(requirement.key))
            assert best is not None
            parts.append(best)
            value += best.value
            target += best.requirement.target
            complete = complete and best.met
        return Progress(value, target, complete, tuple(parts), saturated=saturated)

    def full_progress(self) -> Progress:
        """The progress of any state that meets every requirement: what a saturated record shows.

        The same as ``progress`` of such a state, but for the parts' states, which it does not need.
        """
        if self.tiers:
            (requirement,) = self.groups[0]
            top = self.tiers[-1]
            part = Part(requirement, top.target, None)
            return Progress(top.target, top.target, True, (part,), top.name, self.tiers, None, saturated=True)
        # Every requirement met: each group's best is its first (the first wins a tie).
        parts = tuple(Part(group[0], group[0].target, None) for group in self.groups)
        target = sum(part.value for part in parts)
        return Progress(target, target, True, parts, saturated=True)

    def standing(self, state: State, points: float = 0) -> Standing:
        """What ``progress`` would say of completeness, tier and saturation, for less."""
        single = self.single
        if single is not None:
            return MET if single.measure(state.get(single.key), points) >= single.target else NOT_MET
        if self.tiers:
            (requirement,) = self.groups[0]
            measured = requirement.measure(state.get(requirement.key), points)
            tier = ""
            for reached in self.tiers:
                if measured >= reached.target:
                    tier = reached.name
            top = measured >= self.tiers[-1].target
            return Standing(top, tier, top)
        complete = saturated = True
        for group in self.groups:
            any_met = False
            for requirement in group:
                met = requirement.measure(state.get(requirement.key), points) >= requirement.target
                any_met = any_met or met
                saturated = saturated and met
            complete = complete and any_met
        return Standing(complete, "", saturated)

    def _tiered_progress(self, state: State, points: float) -> Progress:
        (requirement,) = self.groups[0]
        top = self.tiers[-1].target
        measured = requirement.measure(state.get(requirement.key), points)
        reached = tuple(tier for tier in self.tiers if measured >= tier.target)
        upcoming = [tier for tier in self.tiers if measured < tier.target]
        value = min(measured, top)
        return Progress(
            value=value,
            target=top,
            complete=measured >= top,
            parts=(Part(requirement, value, state.get(requirement.key)),),
            tier=reached[-1].name if reached else "",
            reached=reached,
            next_tier=upcoming[0] if upcoming else None,
            saturated=measured >= top,
        )
