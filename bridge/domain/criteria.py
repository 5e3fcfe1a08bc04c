"""Badge criteria and their incremental evaluation.

Criteria are requirements in groups: every group must be met (AND), and a group is met by any one of its
requirements (OR). Evaluation is incremental: a learner's state for a badge is a small mapping updated
per event, so the cost of an event does not depend on the learner's history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bridge.domain.events import LearningEvent

SUPPORTED_AGGREGATES = frozenset({"count"})

State = Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Requirement:
    """``target`` events of one of ``kinds``."""

    key: str
    kinds: frozenset[str]
    target: int
    aggregate: str = "count"

    def matches(self, event: LearningEvent) -> bool:
        return event.kind in self.kinds


@dataclass(frozen=True, slots=True)
class Progress:
    value: float
    target: float
    complete: bool

    @property
    def fraction(self) -> float:
        return 1.0 if self.target <= 0 else min(self.value / self.target, 1.0)


@dataclass(frozen=True, slots=True)
class Criteria:
    groups: tuple[tuple[Requirement, ...], ...]

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(kind for group in self.groups for r in group for kind in r.kinds)

    def advance(self, state: State, event: LearningEvent) -> dict[str, float]:
        """The state after ``event``; the input is left untouched."""
        new_state = dict(state)
        for group in self.groups:
            for requirement in group:
                if requirement.matches(event):
                    new_state[requirement.key] = new_state.get(requirement.key, 0.0) + 1.0
        return new_state

    def progress(self, state: State) -> Progress:
        """Summed over groups, each group counting its best requirement, capped at its target."""
        value = target = 0.0
        complete = True
        for group in self.groups:
            best = max(group, key=lambda r: min(state.get(r.key, 0.0) / r.target, 1.0))
            reached = min(state.get(best.key, 0.0), float(best.target))
            value += reached
            target += best.target
            complete = complete and reached >= best.target
        return Progress(value=value, target=target, complete=complete)
