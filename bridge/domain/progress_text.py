"""Progress in a sentence a learner understands: "3 of 5 modules completed", "2 more days in a row"."""

from __future__ import annotations

from typing import Any

from bridge.domain.aggregates import AllOf, Count, Distinct, Max, Streak, Sum
from bridge.domain.criteria import Part, Progress, Requirement, Unit, is_retired

_KIND_UNITS = {
    "login": Unit("sign-in", "sign-ins"),
    "purchase": Unit("purchase", "purchases"),
    "course_completed": Unit("course completed", "courses completed"),
    "module_completed": Unit("module completed", "modules completed"),
    "activity_completed": Unit("activity completed", "activities completed"),
    "assignment_graded": Unit("assignment graded", "assignments graded"),
    "quiz_graded": Unit("quiz graded", "quizzes graded"),
    "course_graded": Unit("course grade", "course grades"),
    "enrolled": Unit("enrolment", "enrolments"),
}


def describe(progress: Progress, today: int) -> str:
    """``today`` is the learner's current day (a date ordinal in the configured time zone)."""
    if progress.next_tier is not None or progress.reached:
        return _tiered(progress)
    if len(progress.parts) == 1:
        return _part(progress.parts[0], today)
    met = sum(part.met for part in progress.parts)
    if met == len(progress.parts):
        return f"Complete: all {met} requirements met"
    unmet = next(part for part in progress.parts if not part.met)
    return f"{met} of {len(progress.parts)} requirements met; next: {_part(unmet, today)}"


def unit(requirement: Requirement) -> Unit:
    """What the requirement counts, in both numbers: the template's ``unit``, or words from its shape."""
    if requirement.unit:
        return requirement.unit
    aggregate = requirement.aggregate
    if aggregate is None:
        return Unit("point", "points")
    if isinstance(aggregate, Streak):
        return Unit("day in a row", "days in a row")
    if isinstance(aggregate, Distinct):
        if requirement.field == "day":
            return Unit("day of activity", "days of activity")
        if requirement.field == "week":
            return Unit("week of activity", "weeks of activity")
        words = _field_words(requirement.field)
        return Unit(f"different {words}", f"different {words}s")
    if isinstance(aggregate, Sum | Max):
        words = _field_words(requirement.field)
        return Unit(words, words)
    if isinstance(aggregate, AllOf):
        return Unit("item", "items")
    if len(requirement.kinds) == 1:
        (kind,) = requirement.kinds
        words = kind.replace("_", " ")
        return _KIND_UNITS.get(kind, Unit(f"{words} event", f"{words} events"))
    return Unit("activity", "activities")


def _part(part: Part, today: int) -> str:
    requirement = part.requirement
    # "N of M things": the noun agrees with M, the number it counts towards.
    words = unit(requirement).of(requirement.target)
    value, target = _number(part.value), _number(requirement.target)
    window = _window_words(requirement, part.met)
    aggregate = requirement.aggregate
    if isinstance(aggregate, Streak):
        return _streak(part, today)
    if isinstance(aggregate, Max):
        best = words if words.lower().startswith("best ") else f"best {words}"
        if part.met:
            return f"Complete: {best} of {target} or more{window}"
        return f"{best[:1].upper()}{best[1:]} so far: {value} of {target}{window}"
    if part.met:
        return f"Complete: {target} {words}{window}"
    if isinstance(aggregate, Sum):
        return f"{value} of {target} {words} in total{window}"
    if isinstance(aggregate, AllOf) and requirement.window is None and not is_retired(part.state):
        missing = sorted(str(item) for item in aggregate.items if item not in (part.state or []))
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        return f"{value} of {target} {words}; still to do: {shown}"
    if isinstance(aggregate, Count | Distinct | AllOf) or aggregate is None:
        return f"{value} of {target} {words}{window}"
    return f"{value} of {target}{window}"


def _kept(state: Any) -> Any:
    """The state, or None for a retired one, which keeps no detail (see criteria.retired)."""
    return None if is_retired(state) else state


def _streak(part: Part, today: int) -> str:
    target = int(part.requirement.target)
    if part.met:
        return f"Complete: a {target}-day streak"
    state = _kept(part.state)
    runs = Streak.runs(state) if state else []
    if runs and runs[-1][1] >= today - 1:
        current = runs[-1][1] - runs[-1][0] + 1
        more = target - current
        when = "today" if runs[-1][1] == today else "yesterday"
        return f"{current}-day streak (last active {when}): {more} more {_days(more)} in a row to earn it"
    longest = int(part.value)
    if longest:
        return f"Longest streak so far {longest} of {target} {_days(target)}: start a new one today"
    return f"0 of {target} {_days(target)} in a row: start today"


def _tiered(progress: Progress) -> str:
    part = progress.parts[0]
    words = unit(part.requirement)
    value = _number(part.value)
    upcoming = progress.next_tier
    if upcoming is None:
        return f"{progress.tier.title()} reached: {value} {words.of(part.value)}"
    more = upcoming.target - part.value
    if progress.tier:
        return f"{progress.tier.title()} reached; {_number(more)} more {words.of(more)} for {upcoming.name}"
    return f"{value} of {_number(upcoming.target)} {words.of(upcoming.target)} for {upcoming.name}"


def _window_words(requirement: Requirement, met: bool) -> str:
    window = requirement.window
    if window is None:
        return ""
    best = "" if met else " (best so far)"  # the most any one window held: it may have been earlier
    if window.days is not None:
        return f" within {window.days} {_days(window.days)}{best}"
    return f" in one {window.period}{best}"


def _field_words(field: str | None) -> str:
    if field is None:
        return "value"
    return field.removeprefix("data.").replace("_", " ")


def _days(count: int) -> str:
    return "day" if count == 1 else "days"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}".rstrip("0").rstrip(".")
