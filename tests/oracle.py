"""A from-scratch oracle for badge evaluation, written straight from ``badge_templates/README.md``.

The engine evaluates incrementally: it keeps a small state per learner and badge and updates it per
event. This module does the opposite, by brute force: given the whole set of a learner's events it
recomputes every aggregate from nothing, tries every window, and awards badges by repeating "award
whatever is now awardable" until nothing changes. It is slow and obvious on purpose, so that a
property-based test can compare the engine against it (tests/services/test_evaluation_oracle.py).

What it implements, rule by rule (the README's words in quotes):

* The inbox keeps one event per ``(platform, event_key)``; "a learner's progress on a badge depends only
  on the set of their events". A learner is ``(platform, learner)``.
* A requirement listens to its ``kinds`` and, optionally, a ``filter``. Filters are rule-engine
  expressions, which this oracle does not parse: the caller gives the Python meaning of each expression
  text. "An event for which the expression cannot be evaluated does not match": a predicate that raises
  (``None >= 0.5``, a missing ``data`` key) is a non-match.
* Aggregates: ``count`` (matching events), ``distinct`` (different values of ``field``), ``sum`` (of
  ``field``, each value taken to the nearest millionth so the total is exact), ``max`` (highest value of
  ``field``), ``streak`` (longest run of consecutive local days), ``all`` (how many of ``items`` were
  seen in ``field``, default ``item``), ``points`` (the learner's points from awards). "An event without
  the field is skipped"; ``sum`` and ``max`` also skip values that are not numbers.
* Days are local calendar dates in the ``timezone`` setting, weeks run Monday to Sunday (a week is named
  by its Monday), months are calendar months.
* Windows: ``within_days = N`` is the best aggregate over every span of N consecutive days; ``per`` is
  the best aggregate over every calendar day, week or month.
* A requirement's value is capped at its target and met when it reaches it. A group's best requirement
  has the highest value / target (the first on a tie); the badge's value and target are the sums over
  groups of the best requirement's capped value and target; complete when every group is met.
* Tiers: one requirement, targets from the tiers (or the ``badge_level_threshold`` levels named bronze,
  silver, gold, platinum, diamond, level-6, ...); target is the top tier's; tier is the highest reached.
* Awards: a badge (each tier reached, for tiers) is awarded when complete, when the learner holds every
  prerequisite (any tier), achievements are enabled and it does not require approval. Each award gives
  its points (a tier's own, else the badge's) plus ``points_per_badge``. Awards are never taken back, and
  every aggregate here only grows with more events, so the awards of a set of events are the least fixed
  point of "award what is awardable", computed by iterating it. This includes level badges reached
  through the points of level awards themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from bridge.domain.events import LearningEvent

LearnerKey = tuple[str, str]  # (platform, LMS user id)
Predicate = Callable[[LearningEvent], bool]

AGGREGATES = frozenset({"count", "distinct", "sum", "max", "streak", "all", "points"})
LEVEL_NAMES = ("bronze", "silver", "gold", "platinum", "diamond")
MILLIONTH = Fraction(1, 1_000_000)


# --- Badges, as the oracle reads them -------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    kinds: frozenset[str]
    aggregate: str
    target: Fraction  # resolved: the tiers' top target, or the number of items for `all`
    field: str | None = None
    items: tuple[Any, ...] = ()
    within_days: int | None = None
    per: str | None = None  # "day", "week" or "month"
    filter: Predicate | None = None


@dataclass(frozen=True)
class Tier:
    name: str
    target: Fraction
    points: int


@dataclass(frozen=True)
class Badge:
    id: str
    points: int
    groups: tuple[tuple[Requirement, ...], ...]
    tiers: tuple[Tier, ...] = ()
    prerequisites: tuple[str, ...] = ()
    requires_approval: bool = False


def level_name(index: int) -> str:
    """The name of the ``index``-th (from 0) level of ``badge_level_threshold``."""
    return LEVEL_NAMES[index] if index < len(LEVEL_NAMES) else f"level-{index + 1}"


def badge_from_document(
    document: Mapping[str, Any],
    *,
    filters: Mapping[str, Predicate] | None = None,
    level_thresholds: Sequence[int] = (),
) -> Badge:
    """Read a badge template document (the parsed TOML). It is assumed valid: this is not a validator.

    ``filters`` maps each filter expression's text to its Python meaning; ``level_thresholds`` is the
    ``badge_level_threshold`` setting, used by ``tiers = "badge_level_threshold"``.
    """
    points = int(document.get("points", 0))
    tiers_raw = document.get("tiers")
    tiers: tuple[Tier, ...] = ()
    if tiers_raw == "badge_level_threshold":
        tiers = tuple(Tier(level_name(i), Fraction(t), points) for i, t in enumerate(level_thresholds))
    elif tiers_raw:
        tiers = tuple(
            Tier(str(t["name"]), Fraction(t["target"]), int(t.get("points", points))) for t in tiers_raw
        )
    first = document["criteria"]["groups"][0]["requirements"][0]
    if tiers and first.get("aggregate") == "sum":
        tiers = tuple(replace(tier, target=_to_millionths(tier.target)) for tier in tiers)
    groups = tuple(
        tuple(_requirement(r, tiers, filters or {}) for r in group["requirements"])
        for group in document["criteria"]["groups"]
    )
    if tiers and (len(groups) != 1 or len(groups[0]) != 1):
        raise ValueError(f"{document['id']}: a tiered badge has one group of one requirement")
    return Badge(
        id=str(document["id"]),
        points=points,
        groups=groups,
        tiers=tiers,
        prerequisites=tuple(document.get("prerequisites", ())),
        requires_approval=bool(document.get("requires_approval", False)),
    )


def _requirement(
    raw: Mapping[str, Any], tiers: Sequence[Tier], filters: Mapping[str, Predicate]
) -> Requirement:
    aggregate = str(raw.get("aggregate", "count"))
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}")
    items = tuple(raw.get("items", ()))
    if tiers:
        target = tiers[-1].target
    elif aggregate == "all":
        target = Fraction(len(items))
    else:
        target = Fraction(raw["target"])  # the exact value of the number as written (a float is exact)
    if aggregate == "sum":
        target = _to_millionths(target)  # "exact to a millionth": the comparison too
    expression = raw.get("filter")
    if expression is not None and expression not in filters:
        raise ValueError(f"no Python meaning given for the filter {expression!r}")
    if raw.get("within_days") is not None and raw.get("per") is not None:
        raise ValueError("a requirement has at most one window")
    return Requirement(
        kinds=frozenset(raw.get("kinds", ())),
        aggregate=aggregate,
        target=target,
        field=raw.get("field", "item" if aggregate == "all" else None),
        items=items,
        within_days=raw.get("within_days"),
        per=raw.get("per"),
        filter=None if expression is None else filters[expression],
    )


# --- Results --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadgeProgress:
    value: float
    target: float
    complete: bool
    tier: str = ""  # the highest tier reached; "" when untiered or none yet


@dataclass(frozen=True)
class Outcome:
    progress: dict[tuple[LearnerKey, str], BadgeProgress]  # every badge, for every learner with events
    awards: frozenset[tuple[LearnerKey, str, str]]  # (learner, badge, tier); tier "" when untiered
    points: dict[LearnerKey, int]


def evaluate(
    badges: Sequence[Badge],
    events: Iterable[LearningEvent],
    *,
    timezone: str = "UTC",
    points_per_badge: int = 0,
    achievements_enabled: bool = True,
) -> Outcome:
    """Progress, awards and points of every learner, from the events alone (duplicates and order ignored)."""
    zone = ZoneInfo(timezone)
    inbox: dict[tuple[str, str], LearningEvent] = {}
    for event in events:
        inbox.setdefault((event.platform, event.event_key), event)  # a duplicate key is ignored
    histories: dict[LearnerKey, list[LearningEvent]] = defaultdict(list)
    for event in inbox.values():
        histories[(event.platform, event.learner)].append(event)

    progress: dict[tuple[LearnerKey, str], BadgeProgress] = {}
    awards: set[tuple[LearnerKey, str, str]] = set()
    points: dict[LearnerKey, int] = {}
    for learner, history in histories.items():
        held, learner_points = _awards(
            badges, history, zone, points_per_badge, achievements_enabled=achievements_enabled
        )
        awards.update((learner, badge_id, tier) for badge_id, tier in held)
        points[learner] = learner_points
        for badge in badges:
            progress[(learner, badge.id)] = badge_progress(badge, history, zone, learner_points)
    return Outcome(progress, frozenset(awards), points)


def _awards(
    badges: Sequence[Badge],
    history: Sequence[LearningEvent],
    zone: ZoneInfo,
    points_per_badge: int,
    *,
    achievements_enabled: bool,
) -> tuple[set[tuple[str, str]], int]:
    """One learner's awards ``(badge, tier)`` and points: award what is awardable until nothing is."""
    held: set[tuple[str, str]] = set()
    points = 0
    if not achievements_enabled:
        return held, points
    while True:
        held_badges = {badge_id for badge_id, _ in held}
        due: list[tuple[Badge, Tier | None]] = []
        for badge in badges:
            if badge.requires_approval or not set(badge.prerequisites) <= held_badges:
                continue
            for tier in _earned(badge, history, zone, points):
                if (badge.id, "" if tier is None else tier.name) not in held:
                    due.append((badge, tier))
        if not due:
            return held, points
        for badge, tier in due:
            held.add((badge.id, "" if tier is None else tier.name))
            points += (badge.points if tier is None else tier.points) + points_per_badge


def _earned(badge: Badge, history: Sequence[LearningEvent], zone: ZoneInfo, points: int) -> list[Tier | None]:
    """What completing the badge earns now: every tier reached, or ``None`` for a complete untiered badge."""
    if badge.tiers:
        value = measure(badge.groups[0][0], history, zone, points)
        return [tier for tier in badge.tiers if value >= tier.target]
    return [None] if badge_progress(badge, history, zone, points).complete else []


def badge_progress(
    badge: Badge, history: Sequence[LearningEvent], zone: ZoneInfo, points: int
) -> BadgeProgress:
    """The badge's value, target, completeness and tier for one learner's events and points."""
    if badge.tiers:
        requirement = badge.groups[0][0]
        value = measure(requirement, history, zone, points)
        reached = [tier.name for tier in badge.tiers if value >= tier.target]
        top = badge.tiers[-1].target
        return BadgeProgress(float(min(value, top)), float(top), value >= top, reached[-1] if reached else "")
    total_value = total_target = Fraction(0)
    complete = True
    for group in badge.groups:
        capped = [min(measure(r, history, zone, points), r.target) for r in group]
        ratios = [value / r.target for value, r in zip(capped, group, strict=True)]
        best = ratios.index(max(ratios))  # index() finds the first on a tie
        total_value += capped[best]
        total_target += group[best].target
        complete = complete and any(value >= r.target for value, r in zip(capped, group, strict=True))
    return BadgeProgress(float(total_value), float(total_target), complete)


# --- Measuring one requirement --------------------------------------------------------------------------


def measure(
    requirement: Requirement, history: Sequence[LearningEvent], zone: ZoneInfo, points: int
) -> Fraction:
    """The requirement's aggregate over the matching events, uncapped; for a window, its best period."""
    if requirement.aggregate == "points":
        return Fraction(points)
    matching = [event for event in history if _matches(requirement, event)]
    if not matching:
        return Fraction(0)
    if requirement.within_days is not None:
        span = requirement.within_days
        days = [local_day(event, zone) for event in matching]
        best = Fraction(0)
        start = min(days) - timedelta(days=span - 1)  # every span that holds at least one event
        while start <= max(days):
            end = start + timedelta(days=span - 1)
            inside = [event for event, day in zip(matching, days, strict=True) if start <= day <= end]
            best = max(best, aggregate(requirement, inside, zone))
            start += timedelta(days=1)
        return best
    if requirement.per is not None:
        periods: dict[object, list[LearningEvent]] = defaultdict(list)
        for event in matching:
            periods[period(requirement.per, local_day(event, zone))].append(event)
        return max(aggregate(requirement, inside, zone) for inside in periods.values())
    return aggregate(requirement, matching, zone)


def _matches(requirement: Requirement, event: LearningEvent) -> bool:
    if event.kind not in requirement.kinds:
        return False
    if requirement.filter is None:
        return True
    try:
        return bool(requirement.filter(event))
    except (TypeError, KeyError, AttributeError, ValueError):
        return False  # the expression cannot be evaluated for this event


def aggregate(requirement: Requirement, events: Sequence[LearningEvent], zone: ZoneInfo) -> Fraction:
    """The aggregate over exactly ``events`` (already matched and windowed)."""
    kind = requirement.aggregate
    if kind == "count":
        return Fraction(len(events))
    if kind == "streak":
        return Fraction(longest_run({local_day(event, zone) for event in events}))
    values = [field_value(event, requirement.field or "", zone) for event in events]
    present = [value for value in values if value is not _MISSING]
    if kind == "distinct":
        return Fraction(len(set(present)))
    if kind == "all":
        return Fraction(sum(1 for item in requirement.items if item in present))
    numbers = [Fraction(v) for v in present if isinstance(v, int | float) and not isinstance(v, bool)]
    if kind == "sum":
        return sum((_to_millionths(number) for number in numbers), Fraction(0))
    if kind == "max":
        return max(numbers, default=Fraction(0))
    raise ValueError(f"unknown aggregate {kind!r}")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Any = _Missing()


def field_value(event: LearningEvent, field: str, zone: ZoneInfo) -> Any:
    """The value of a ``field`` name for an event, or ``_MISSING`` when the event does not carry it."""
    if field == "day":
        return local_day(event, zone)
    if field == "week":
        return period("week", local_day(event, zone))
    if field in ("score", "course", "item", "kind"):
        value = getattr(event, field)
    elif field.startswith("data."):
        value = event.data.get(field.removeprefix("data."))
    else:
        raise ValueError(f"unknown field {field!r}")
    return _MISSING if value is None else value


def local_day(event: LearningEvent, zone: ZoneInfo) -> date:
    return event.occurred_at.astimezone(zone).date()


def period(per: str, day: date) -> object:
    """The calendar period holding ``day``: the day itself, its week's Monday, or (year, month)."""
    if per == "day":
        return day
    if per == "week":
        return day - timedelta(days=day.weekday())  # weekday(): Monday is 0
    if per == "month":
        return (day.year, day.month)
    raise ValueError(f"unknown period {per!r}")


def longest_run(days: set[date]) -> int:
    """The length of the longest run of consecutive dates in ``days``."""
    best = 0
    for day in sorted(days):
        if day - timedelta(days=1) in days:
            continue  # not the start of a run
        length = 1
        while day + timedelta(days=length) in days:
            length += 1
        best = max(best, length)
    return best


def _to_millionths(number: Fraction) -> Fraction:
    return round(number / MILLIONTH) * MILLIONTH
