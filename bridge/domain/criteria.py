"""Badge criteria and their incremental evaluation.

Criteria are requirements in groups: every group must be met (AND), and a group is met by any one of its
requirements (OR). A learner's state for a badge is a small mapping, one entry per requirement, updated
per event, so the cost of an event does not depend on the learner's history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.domain.aggregates import Aggregate, EventFacts, Streak, Window
from bridge.domain.expressions import EventFilter

State = Mapping[str, Any]


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
    unit: str | None = None

    @property
    def on_points(self) -> bool:
        return self.aggregate is None

    def accepts(self, facts: EventFacts) -> bool:
        return facts.event.kind in self.kinds and (self.filter is None or self.filter.matches(facts.context))

    def advance(self, state: Any, facts: EventFacts) -> Any:
        """The state after a matching event (``state`` is None before the first).

        A met requirement keeps its state: its value is capped at the target, so nothing more can show,
        and nothing needs writing.
        """
        aggregate = self.aggregate
        assert aggregate is not None
        if state is not None and self.measure(state, 0) >= self.target:
            return state
        if isinstance(aggregate, Streak):
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
        if self.window is not None:
            return self.window.measure(state)
        return self.aggregate.measure(state)


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    target: float
    points: int


@dataclass(frozen=True, slots=True)
class Part:
    """One group's best requirement and how far it is."""

    requirement: Requirement
    value: float  # capped at the target
    state: Any

    @property
    def met(self) -> bool:
        return self.value >= self.requirement.target


@dataclass(frozen=True, slots=True)
class Progress:
    value: float
    target: float
    complete: bool
    parts: tuple[Part, ...]
    tier: str = ""  # the highest tier reached, for badges with tiers
    reached: tuple[Tier, ...] = ()
    next_tier: Tier | None = None

    @property
    def fraction(self) -> float:
        return 1.0 if self.target <= 0 else min(self.value / self.target, 1.0)


@dataclass(frozen=True, slots=True)
class Criteria:
    groups: tuple[tuple[Requirement, ...], ...]
    tiers: tuple[Tier, ...] = ()

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(kind for group in self.groups for r in group for kind in r.kinds)

    @property
    def on_points(self) -> bool:
        return any(r.on_points for group in self.groups for r in group)

    def advance(self, state: State, facts: EventFacts) -> dict[str, Any] | None:
        """The state after the event, or None when the event changes nothing; the input is left untouched."""
        changed: dict[str, Any] | None = None
        for group in self.groups:
            for requirement in group:
                if requirement.kinds and requirement.accepts(facts):
                    before = state.get(requirement.key)
                    after = requirement.advance(before, facts)
                    if after is not before and after != before:
                        if changed is None:
                            changed = dict(state)
                        changed[requirement.key] = after
        return changed

    def progress(self, state: State, points: float = 0) -> Progress:
        if self.tiers:
            return self._tiered_progress(state, points)
        value = target = 0.0
        complete = True
        parts = []
        for group in self.groups:
            best: Part | None = None
            for requirement in group:
                reached = min(requirement.measure(state.get(requirement.key), points), requirement.target)
                part = Part(requirement, reached, state.get(requirement.key))
                if best is None or reached / requirement.target > best.value / best.requirement.target:
                    best = part
            assert best is not None
            parts.append(best)
            value += best.value
            target += best.requirement.target
            complete = complete and best.met
        return Progress(value=value, target=target, complete=complete, parts=tuple(parts))

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
        )
