"""What a requirement measures over its matching events, kept as a small JSON-able state.

Every state here is a function of the *set* of events added, not of their order, so a learner's
progress is the same whichever way their events arrive (the property the oracle test checks). States are
capped at the target: once it is reached, further events leave the state as it is, so nothing is written.
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Any, Protocol

from bridge.domain.events import LearningEvent

MICRO = 1_000_000  # sums are kept in millionths, as integers, so that their order cannot round them
# How far back from a learner's latest event a streak or window keeps its days, weeks or months. Older
# parts are folded into the best value, so a state stays small however long the learner's history is.
HORIZON_DAYS = 35


class LateEvent(Exception):
    """An event older than the part of a state that is kept.

    The state cannot take it: the ledger rebuilds it from the learner's history in time order (as for
    new criteria). Live events and the nightly sync arrive well within the horizon.
    """


class EventFacts:
    """One event as the rules see it: its fields, local calendar position and filter context.

    Computed once per event and shared by every badge that looks at it; the calendar position only
    when a streak or window asks for it.
    """

    __slots__ = ("_day", "_local_date", "_zone", "context", "event")

    def __init__(self, event: LearningEvent, zone: tzinfo) -> None:
        self.event = event
        self._zone = zone
        self._local_date: date | None = None
        self._day = 0
        self.context: Mapping[str, Any] = {
            "kind": event.kind,
            "course": event.course,
            "item": event.item,
            "platform": event.platform,
            "learner": event.learner,
            "score": event.score,
            "data": event.data,
        }

    @property
    def local_date(self) -> date:
        if self._local_date is None:
            self._local_date = self.event.occurred_at.astimezone(self._zone).date()
            self._day = self._local_date.toordinal()
        return self._local_date

    @property
    def day(self) -> int:
        if self._local_date is None:
            self.local_date  # noqa: B018 - computes both
        return self._day

    @property
    def week(self) -> int:
        """The ordinal of the week's Monday."""
        return self.day - self.local_date.weekday()

    @property
    def month(self) -> int:
        return self.local_date.year * 12 + self.local_date.month - 1

    def field(self, name: str) -> Any:
        """The value of a measured field, or None when the event does not carry it."""
        if name == "day":
            return self.day
        if name == "week":
            return self.week
        value = self.event.data.get(name[5:]) if name.startswith("data.") else self.context.get(name)
        return value if isinstance(value, str | int | float) else None


class Aggregate(Protocol):
    name: str
    needs_field: bool

    def empty(self) -> Any: ...
    def add(self, state: Any, value: Any) -> Any: ...
    def merge(self, states: Iterable[Any]) -> Any: ...
    def measure(self, state: Any) -> float: ...


def _number(value: Any) -> float | None:
    """A finite number, or None: booleans, text, infinities and NaN are not measured."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class Count:
    cap: int
    name: str = "count"
    needs_field: bool = False

    def empty(self) -> int:
        return 0

    def add(self, state: int, value: Any) -> int:
        return min(state + 1, self.cap)

    def merge(self, states: Iterable[int]) -> int:
        return min(sum(states), self.cap)

    def measure(self, state: int) -> float:
        return float(state)


@dataclass(frozen=True, slots=True)
class Sum:
    """In millionths, capped at ``cap`` millionths."""

    cap: int
    name: str = "sum"
    needs_field: bool = True

    def empty(self) -> int:
        return 0

    def add(self, state: int, value: Any) -> int:
        # Negative values are skipped: a sum that could fall would make progress depend on arrival order.
        number = _number(value)
        return state if number is None or number < 0 else min(state + round(number * MICRO), self.cap)

    def merge(self, states: Iterable[int]) -> int:
        return min(sum(states), self.cap)

    def measure(self, state: int) -> float:
        return state / MICRO


@dataclass(frozen=True, slots=True)
class Max:
    name: str = "max"
    needs_field: bool = True

    def empty(self) -> float | None:
        return None

    def add(self, state: float | None, value: Any) -> float | None:
        number = _number(value)
        if number is None:
            return state
        return number if state is None else max(state, number)

    def merge(self, states: Iterable[float | None]) -> float | None:
        present = [s for s in states if s is not None]
        return max(present) if present else None

    def measure(self, state: float | None) -> float:
        return 0.0 if state is None else max(state, 0.0)


class _SeenValues(ABC):
    """A list of the values seen so far; subclasses decide which values count."""

    __slots__ = ()

    def empty(self) -> list[Any]:
        return []

    @abstractmethod
    def add(self, state: list[Any], value: Any) -> list[Any]: ...

    def merge(self, states: Iterable[list[Any]]) -> list[Any]:
        merged: list[Any] = []
        for state in states:
            for value in state:
                merged = self.add(merged, value)
        return merged

    def measure(self, state: list[Any]) -> float:
        return float(len(state))


@dataclass(frozen=True, slots=True)
class Distinct(_SeenValues):
    """Different values seen, at most ``cap`` of them."""

    cap: int
    name: str = "distinct"
    needs_field: bool = True

    def add(self, state: list[Any], value: Any) -> list[Any]:
        if value is None or len(state) >= self.cap or value in state:
            return state
        return [*state, value]


@dataclass(frozen=True, slots=True)
class AllOf(_SeenValues):
    """Which of a listed set of values were seen."""

    items: frozenset[Any]
    name: str = "all"
    needs_field: bool = True

    def add(self, state: list[Any], value: Any) -> list[Any]:
        if value not in self.items or value in state:
            return state
        return [*state, value]


@dataclass(frozen=True, slots=True)
class Streak:
    """Runs of consecutive active days, as sorted, disjoint ``[first, last]`` day ordinals.

    State: ``{"runs": [...], "best": longest run dropped, "from": first day taken}``. Runs that end
    before ``from`` - 1 cannot grow any more (a day before ``from`` is a LateEvent), so they are dropped
    and only the longest is remembered. (A plain list of runs is the earlier form, still read.)
    """

    name: str = "streak"
    needs_field: bool = True  # the day, supplied by the requirement

    def empty(self) -> dict[str, Any]:
        return {"runs": [], "best": 0, "from": None}

    @staticmethod
    def runs(state: Any) -> list[list[int]]:
        return state if isinstance(state, list) else state["runs"]

    def add(self, state: Any, value: Any) -> Any:
        day = int(value)
        state = {"runs": state, "best": 0, "from": None} if isinstance(state, list) else state
        floor = state["from"]
        if floor is not None and day < floor:
            raise LateEvent(day)
        state_runs = state["runs"]
        starts = [run[0] for run in state_runs]
        i = bisect.bisect_right(starts, day)
        if i and state_runs[i - 1][1] >= day:
            return state  # already inside a run
        runs = [list(run) for run in state_runs]
        joins_left = i > 0 and runs[i - 1][1] == day - 1
        joins_right = i < len(runs) and runs[i][0] == day + 1
        if joins_left and joins_right:
            runs[i - 1][1] = runs[i][1]
            del runs[i]
        elif joins_left:
            runs[i - 1][1] = day
        elif joins_right:
            runs[i][0] = day
        else:
            runs.insert(i, [day, day])
        best = state["best"]
        if floor is None or day - HORIZON_DAYS > floor:
            floor = day - HORIZON_DAYS
            done = [last - first + 1 for first, last in runs if last < floor - 1]
            if done:
                best = max(best, *done)
                runs = [run for run in runs if run[1] >= floor - 1]
        return {"runs": runs, "best": best, "from": floor}

    def merge(self, states: Iterable[Any]) -> Any:
        raise TypeError("a streak has no window")

    def measure(self, state: Any) -> float:
        if isinstance(state, list):
            return float(max((last - first + 1 for first, last in state), default=0))
        longest = max((last - first + 1 for first, last in state["runs"]), default=0)
        return float(max(longest, state["best"]))


WINDOWED = frozenset({"count", "distinct", "sum", "max", "all"})
PERIODS = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class Window:
    """Where the target must be reached: within one calendar ``period``, or within ``days`` days.

    State: ``{"b": {period or day ordinal: aggregate state}, "best": best window value so far, "from":
    the first period taken}``. A new event can only raise the windows that contain it, so the best value
    is a running maximum, and periods before ``from`` (a LateEvent) are dropped: they cannot change.
    """

    period: str | None = None
    days: int | None = None

    def bucket(self, facts: EventFacts) -> int:
        if self.period == "week":
            return facts.week
        if self.period == "month":
            return facts.month
        return facts.day

    def empty(self) -> dict[str, Any]:
        return {"b": {}, "best": 0.0}

    def add(self, state: Mapping[str, Any], aggregate: Aggregate, facts: EventFacts, value: Any) -> Any:
        key = self.bucket(facts)
        floor = state.get("from")
        if floor is not None and key < floor:
            raise LateEvent(key)
        buckets = dict(state["b"])
        before = buckets.get(str(key), aggregate.empty())
        after = aggregate.add(before, value)
        if after == before and str(key) in buckets:
            return state
        buckets[str(key)] = after
        if self.days is None:
            reached = aggregate.measure(after)
        else:
            reached = self._best_span_through(key, buckets, aggregate)
        # Months are numbered one apart, days and weeks (their Mondays) by day ordinals.
        horizon = 2 if self.period == "month" else HORIZON_DAYS
        if floor is None or key - horizon > floor:
            floor = key - horizon
            # A span through a day from ``floor`` on reaches back ``days`` - 1 days before it.
            kept = floor - (self.days or 0)
            buckets = {k: v for k, v in buckets.items() if int(k) >= kept}
        return {"b": buckets, "best": max(float(state["best"]), reached), "from": floor}

    def _best_span_through(self, day: int, buckets: Mapping[str, Any], aggregate: Aggregate) -> float:
        """The best value of the ``days``-long spans that contain ``day``.

        Only spans starting on an active day need checking: moving a span's start forward to the next
        active day loses no event and can only gain some at its end.
        """
        assert self.days is not None
        span = self.days
        active = sorted(d for d in map(int, buckets) if day - span < d < day + span)
        best = 0.0
        for start in active:
            if start > day:
                break
            if start <= day - span:
                continue
            inside = (buckets[str(d)] for d in active if start <= d < start + span)
            best = max(best, aggregate.measure(aggregate.merge(inside)))
        return best

    def measure(self, state: Mapping[str, Any]) -> float:
        return float(state["best"])
