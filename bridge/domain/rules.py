"""The active badges, indexed by the event kinds their criteria listen to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bridge.domain.criteria import Criteria


@dataclass(frozen=True, slots=True)
class ActiveBadge:
    id: str
    criteria_version: int
    points: int
    criteria: Criteria


class RuleBook:
    def __init__(self, badges: Iterable[ActiveBadge]) -> None:
        self.badges = tuple(badges)
        by_kind: dict[str, list[ActiveBadge]] = {}
        for badge in self.badges:
            for kind in badge.criteria.kinds:
                by_kind.setdefault(kind, []).append(badge)
        self._by_kind = {kind: tuple(found) for kind, found in by_kind.items()}

    def for_kind(self, kind: str) -> tuple[ActiveBadge, ...]:
        return self._by_kind.get(kind, ())
