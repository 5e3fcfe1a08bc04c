"""Progress in a sentence a learner understands: "3 of 5 modules completed", "2 more days in a row"."""

from __future__ import annotations

from typing import Any

from bridge.domain.aggregates import AllOf, Count, Distinct, Max, Streak, Sum
from bridge.domain.criteria import Part, Progress, Requirement, is_retired

_KIND_UNITS = {
    "login": "sign-ins",
    "purchase": "purchases",
    "course_completed": "courses completed",
    "module_completed": "modules completed",
    "activity_completed": "activities completed",
    "assignment_graded": "assignments graded",
    "quiz_graded": "quizzes graded",
    "course_graded": "course grades",
    "enrolled": "enrolments",
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


def unit(requirement: Requirement) -> str:
    if requirement.unit:
        return requirement.unit
    aggregate = requirement.aggregate
    if aggregate is None:
        return "points"
    if isinstance(aggregate, Streak):
        return "days in a row"
    if isinstance(aggregate, Distinct):
        if requirement.field == "day":
            return "days of activity"
        if requirement.field == "week":
            return "weeks of activity"
        return f"different {_field_words(requirement.field)}s"
    if isinstance(aggregate, Sum | Max):
        return _field_words(requirement.field)
    if isinstance(aggregate, AllOf):
        return "items"
    if len(requirement.kinds) == 1:
        (kind,) = requirement.kinds
        return _KIND_UNITS.get(kind, f"{kind.replace('_', ' ')} events")
    return "activities"


def _part(part: Part, today: int) -> str:
    requirement = part.requirement
    words = unit(requirement)
    value, target = _number(part.value), _number(requirement.target)
    window = _window_words(requirement)
    aggregate = requirement.aggregate
    if isinstance(aggregate, Streak):
        return _streak(part, today)
    if part.met:
        return f"Complete: {target} {words}{window}"
    if isinstance(aggregate, Max):
        return f"Best {words} so far: {value} of {target}{window}"
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
        return f"Longest streak so far {longest} of {target} days: start a new one today"
    return f"0 of {target} days in a row: start today"


def _tiered(progress: Progress) -> str:
    part = progress.parts[0]
    words = unit(part.requirement)
    value = _number(part.value)
    upcoming = progress.next_tier
    if upcoming is None:
        return f"{progress.tier.title()} reached: {value} {words}"
    remaining = _number(upcoming.target - part.value)
    if progress.tier:
        return f"{progress.tier.title()} reached; {remaining} more {words} for {upcoming.name}"
    return f"{value} of {_number(upcoming.target)} {words} for {upcoming.name}"


def _window_words(requirement: Requirement) -> str:
    window = requirement.window
    if window is None:
        return ""
    if window.days is not None:
        return f" within {window.days} {_days(window.days)} (best so far)"
    return f" in one {window.period} (best so far)"


def _field_words(field: str | None) -> str:
    if field is None:
        return "value"
    return field.removeprefix("data.").replace("_", " ")


def _days(count: int) -> str:
    return "day" if count == 1 else "days"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}".rstrip("0").rstrip(".")
