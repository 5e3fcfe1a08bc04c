"""Badge templates: badge definitions as data, validated with the source, the key and the reason.

The format is documented for authors in ``badge_templates/README.md``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from bridge.domain.aggregates import (
    MICRO,
    PERIODS,
    WINDOWED,
    AllOf,
    Count,
    Distinct,
    Max,
    Streak,
    Sum,
    Window,
)
from bridge.domain.criteria import Criteria, Requirement, Tier, Unit
from bridge.domain.expressions import EventFilter, ExpressionError

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_NOT_A_FILE_NAME = re.compile(r"[/\\\x00-\x1f\x7f\ud800-\udfff]")
_TEMPLATE_KEYS = {
    "id", "name", "description", "image", "narrative", "tags", "points", "prerequisites",
    "requires_approval", "expires_after_days", "expires_on", "tiers", "criteria", "notification_type",
}  # fmt: skip
CHANNELS = ("in-app", "email", "webhook", "xapi")  # as the notification_type setting names them
_REQUIREMENT_KEYS = {"kinds", "filter", "aggregate", "field", "items", "target", "within_days", "per", "unit"}
_TIER_KEYS = {"name", "target", "points"}
AGGREGATES = ("count", "distinct", "sum", "max", "streak", "all", "points")
_FIELDS = ("score", "course", "item", "kind", "platform", "learner", "day", "week")
_FIELD = re.compile(r"^data\.[A-Za-z_][A-Za-z0-9_]{0,63}$")
LEVEL_NAMES = ("bronze", "silver", "gold", "platinum", "diamond")
LEVELS_SETTING = "badge_level_threshold"


class TemplateError(ValueError):
    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source, self.key, self.reason = source, key, reason


@dataclass(frozen=True, slots=True)
class BadgeTemplate:
    id: str
    name: str
    description: str
    image: str
    narrative: str
    tags: tuple[str, ...]
    points: int
    prerequisites: tuple[str, ...]
    requires_approval: bool
    expires_after_days: int | None
    expires_on: date | None
    criteria: Criteria
    raw_criteria: Mapping[str, Any]
    tiers: tuple[Mapping[str, Any], ...]  # resolved: name, target and points of every tier
    document: Mapping[str, Any]  # the template as JSON (dates as ISO text), as given
    # The channels this badge's awards are told by, instead of the notification_type setting's.
    notification_type: tuple[str, ...] | None = None


def level_tiers(thresholds: Sequence[int], points: int) -> list[dict[str, Any]]:
    """The tiers named by the ``badge_level_threshold`` setting: bronze, silver, gold, ..."""
    return [
        {"name": LEVEL_NAMES[i] if i < len(LEVEL_NAMES) else f"level-{i + 1}", "target": t, "points": points}
        for i, t in enumerate(thresholds)
    ]


def parse_template(
    raw: Mapping[str, Any], source: str, known_kinds: Collection[str], level_thresholds: Sequence[int]
) -> BadgeTemplate:
    for key in raw:
        if key not in _TEMPLATE_KEYS:
            raise TemplateError(source, key, "unknown key")
    template_id = _text(raw, "id", source)
    if not _ID.fullmatch(template_id):
        raise TemplateError(source, "id", "expected lowercase letters, digits, '-' or '_' (at most 64)")
    tags = _strings(raw, "tags", source)
    prerequisites = _strings(raw, "prerequisites", source)
    points = _whole(raw.get("points", 0), source, "points", minimum=0)
    requires_approval = raw.get("requires_approval", False)
    if not isinstance(requires_approval, bool):
        raise TemplateError(source, "requires_approval", "expected true or false")
    expires_after_days, expires_on = _expiry(raw, source)
    criteria_raw = raw.get("criteria")
    if not isinstance(criteria_raw, Mapping):
        raise TemplateError(source, "criteria", "missing: a badge needs criteria")
    tiers = _tiers(raw.get("tiers"), source, points, level_thresholds)
    channels = raw.get("notification_type")
    if channels is not None:
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise TemplateError(source, "notification_type", f"expected a list of channels: {list(CHANNELS)}")
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise TemplateError(source, "notification_type", f"{unknown[0]!r} is not one of {list(CHANNELS)}")
        if len(set(channels)) != len(channels):
            raise TemplateError(source, "notification_type", "a channel is named twice")
    return BadgeTemplate(
        id=template_id,
        name=_text(raw, "name", source),
        description=_text(raw, "description", source),
        image=_image(raw, source),
        narrative=str(raw.get("narrative", "")),
        tags=tuple(tags),
        points=points,
        prerequisites=tuple(prerequisites),
        requires_approval=requires_approval,
        expires_after_days=expires_after_days,
        expires_on=expires_on,
        criteria=parse_criteria(criteria_raw, tiers, source, known_kinds),
        raw_criteria=criteria_raw,
        tiers=tuple(tiers),
        document=_as_json(raw),
        notification_type=None if channels is None else tuple(channels),
    )


def parse_criteria(
    raw: Mapping[str, Any], tiers: Sequence[Mapping[str, Any]], source: str, known_kinds: Collection[str]
) -> Criteria:
    """Criteria from their document and the badge's resolved tiers (see ``parse_template``)."""
    if not isinstance(raw, Mapping):
        raise TemplateError(source, "criteria", "expected a table")
    unknown = set(raw) - {"groups"}
    if unknown:
        raise TemplateError(source, f"criteria.{sorted(unknown)[0]}", "unknown key")
    groups_raw = raw.get("groups")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise TemplateError(source, "criteria.groups", "expected at least one group")
    # Tier targets to a millionth, as sums are kept (whole-number targets are unchanged).
    tier_list = tuple(
        Tier(t["name"], round(float(t["target"]) * MICRO) / MICRO, int(t["points"])) for t in tiers
    )
    if tier_list and (len(groups_raw) != 1 or len(_requirements_of(groups_raw[0])) != 1):
        raise TemplateError(source, "tiers", "a badge with tiers has one group of one requirement")
    groups = []
    for g, group_raw in enumerate(groups_raw):
        where = f"criteria.groups[{g}]"
        if not isinstance(group_raw, Mapping) or set(group_raw) - {"requirements"}:
            raise TemplateError(source, where, "expected a table with only 'requirements'")
        requirements_raw = group_raw.get("requirements")
        if not isinstance(requirements_raw, list) or not requirements_raw:
            raise TemplateError(source, f"{where}.requirements", "empty group: expected at least one")
        found = (
            _requirement(r_raw, f"{where}.requirements[{r}]", source, known_kinds, tier_list)
            for r, r_raw in enumerate(requirements_raw)
        )
        # A state is kept by what it measures (Requirement.shape), shared with like requirements.
        groups.append(tuple(replace(requirement, key=requirement.shape) for requirement in found))
    return Criteria(groups=tuple(groups), tiers=tier_list)


def check_prerequisites(
    templates: Iterable[BadgeTemplate], sources: Mapping[str, str]
) -> list[TemplateError]:
    """Errors for templates whose prerequisites are missing, invalid or in a cycle.

    ``sources`` names where each template came from. A template that depends on a rejected one is
    rejected too, so that what loads is always complete.
    """
    by_id = {t.id: t for t in templates}
    errors: dict[str, TemplateError] = {}
    state: dict[str, str] = {}  # "visiting" or "done"

    def visit(badge_id: str, path: list[str]) -> bool:
        if state.get(badge_id) == "done":
            return badge_id not in errors
        if state.get(badge_id) == "visiting":
            cycle = [*path[path.index(badge_id) :], badge_id]
            for member in cycle[:-1]:
                errors.setdefault(
                    member,
                    TemplateError(sources[member], "prerequisites", f"cycle: {' -> '.join(cycle)}"),
                )
            return False
        state[badge_id] = "visiting"
        template = by_id[badge_id]
        for needed in template.prerequisites:
            if needed not in by_id:
                errors.setdefault(
                    badge_id,
                    TemplateError(
                        sources[badge_id], "prerequisites", f"{needed!r} is not a badge that loads"
                    ),
                )
            elif not visit(needed, [*path, badge_id]):
                errors.setdefault(
                    badge_id,
                    TemplateError(sources[badge_id], "prerequisites", f"{needed!r} did not load"),
                )
        state[badge_id] = "done"
        return badge_id not in errors

    for badge_id in by_id:
        visit(badge_id, [])
    return list(errors.values())


def _requirements_of(group_raw: Any) -> list[Any]:
    found = group_raw.get("requirements") if isinstance(group_raw, Mapping) else None
    return found if isinstance(found, list) else []


def _unit(raw: Any, where: str, source: str) -> Unit | None:
    """``unit = "quizzes aced"`` (every count) or ``unit = { one = "quiz aced", other = "quizzes aced" }``."""
    if raw is None:
        return None
    if isinstance(raw, str):
        if not raw.strip():
            raise TemplateError(source, where, "expected a non-empty string")
        return Unit(raw, raw)
    if not isinstance(raw, Mapping):
        raise TemplateError(source, where, 'expected a string or a table { one = "...", other = "..." }')
    for name in raw:
        if name not in ("one", "other"):
            raise TemplateError(source, f"{where}.{name}", "unknown key (a unit has one and other)")
    forms = [raw.get("one"), raw.get("other")]
    for name, form in zip(("one", "other"), forms, strict=True):
        if not isinstance(form, str) or not form.strip():
            raise TemplateError(source, f"{where}.{name}", "expected a non-empty string")
    return Unit(*forms)


def _requirement(
    raw: Any, where: str, source: str, known_kinds: Collection[str], tiers: tuple[Tier, ...]
) -> Requirement:
    key = ""  # set from the parsed requirement's shape by parse_criteria
    if not isinstance(raw, Mapping):
        raise TemplateError(source, where, "expected a table")
    for name in raw:
        if name not in _REQUIREMENT_KEYS:
            raise TemplateError(source, f"{where}.{name}", "unknown key")
    aggregate_name = raw.get("aggregate", "count")
    if aggregate_name not in AGGREGATES:
        raise TemplateError(
            source, f"{where}.aggregate", f"{aggregate_name!r} is not one of {list(AGGREGATES)}"
        )
    unit = _unit(raw.get("unit"), f"{where}.unit", source)
    if aggregate_name == "points":
        for name in ("kinds", "filter", "field", "items", "within_days", "per"):
            if name in raw:
                raise TemplateError(source, f"{where}.{name}", "not used with the points aggregate")
        target = _target(raw, where, source, tiers, whole=True)
        return Requirement(key=key, kinds=frozenset(), aggregate=None, target=target, unit=unit)

    kinds = raw.get("kinds")
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        raise TemplateError(source, f"{where}.kinds", "expected a non-empty list of event kinds")
    for kind in kinds:
        if kind not in known_kinds:
            raise TemplateError(
                source, f"{where}.kinds", f"unknown event kind {kind!r} (not in track_event_types)"
            )
    event_filter = None
    if "filter" in raw:
        if not isinstance(raw["filter"], str):
            raise TemplateError(source, f"{where}.filter", "expected an expression as a string")
        try:
            event_filter = EventFilter(raw["filter"])
        except ExpressionError as error:
            raise TemplateError(source, f"{where}.filter", str(error)) from None
    window = _window(raw, where, source, aggregate_name)
    field = raw.get("field")
    if field is not None and not (isinstance(field, str) and (field in _FIELDS or _FIELD.fullmatch(field))):
        raise TemplateError(
            source, f"{where}.field", f"expected one of {', '.join(_FIELDS)} or data.NAME, got {field!r}"
        )
    if aggregate_name in ("count", "streak"):
        if field is not None:
            raise TemplateError(source, f"{where}.field", f"not used with the {aggregate_name} aggregate")
        if "items" in raw:
            raise TemplateError(source, f"{where}.items", "only used with the all aggregate")
        target = _target(raw, where, source, tiers, whole=True)
        aggregate = Count(int(target)) if aggregate_name == "count" else Streak()
        return Requirement(key, frozenset(kinds), aggregate, target, None, event_filter, window, unit)
    if aggregate_name == "all":
        items = raw.get("items")
        if not isinstance(items, list) or not items or not all(isinstance(i, str | int) for i in items):
            raise TemplateError(source, f"{where}.items", "expected a non-empty list of values to see")
        if "target" in raw or tiers:
            raise TemplateError(source, f"{where}.target", "the all aggregate's target is every item")
        all_of = AllOf(frozenset(items))
        return Requirement(
            key,
            frozenset(kinds),
            all_of,
            float(len(all_of.items)),
            field or "item",
            event_filter,
            window,
            unit,
        )
    if "items" in raw:
        raise TemplateError(source, f"{where}.items", "only used with the all aggregate")
    if field is None:
        raise TemplateError(source, f"{where}.field", f"the {aggregate_name} aggregate needs a field")
    if aggregate_name == "distinct":
        target = _target(raw, where, source, tiers, whole=True)
        return Requirement(
            key, frozenset(kinds), Distinct(int(target)), target, field, event_filter, window, unit
        )
    target = _target(raw, where, source, tiers, whole=False)
    if aggregate_name == "sum":  # sums are exact to a millionth, and so is what they must reach
        target = round(target * MICRO) / MICRO
        return Requirement(
            key, frozenset(kinds), Sum(round(target * MICRO)), target, field, event_filter, window, unit
        )
    aggregate = Max()
    return Requirement(key, frozenset(kinds), aggregate, target, field, event_filter, window, unit)


def _target(
    raw: Mapping[str, Any], where: str, source: str, tiers: tuple[Tier, ...], *, whole: bool
) -> float:
    if tiers:
        if "target" in raw:
            raise TemplateError(
                source, f"{where}.target", "a badge with tiers takes its targets from the tiers"
            )
        if whole and any(t.target != int(t.target) for t in tiers):
            raise TemplateError(source, "tiers", "expected whole-number targets for this aggregate")
        return tiers[-1].target
    target = raw.get("target")
    if whole:
        return float(_whole(target, source, f"{where}.target", minimum=1))
    if not isinstance(target, int | float) or isinstance(target, bool) or target <= 0:
        raise TemplateError(source, f"{where}.target", "expected a number > 0")
    return float(target)


def _window(raw: Mapping[str, Any], where: str, source: str, aggregate: str) -> Window | None:
    within, per = raw.get("within_days"), raw.get("per")
    if within is None and per is None:
        return None
    if aggregate not in WINDOWED:
        raise TemplateError(source, where, f"the {aggregate} aggregate takes no window")
    if within is not None and per is not None:
        raise TemplateError(source, f"{where}.per", "use within_days or per, not both")
    if per is not None:
        if per not in PERIODS:
            raise TemplateError(source, f"{where}.per", f"expected one of {', '.join(PERIODS)}")
        return Window(period=per)
    days = _whole(within, source, f"{where}.within_days", minimum=1)
    if days > 366:
        raise TemplateError(source, f"{where}.within_days", "expected at most 366 days")
    return Window(days=days)


def _tiers(raw: Any, source: str, points: int, level_thresholds: Sequence[int]) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if raw == LEVELS_SETTING:
        return level_tiers(level_thresholds, points)
    if not isinstance(raw, list) or not raw:
        raise TemplateError(source, "tiers", f"expected a list of tiers or {LEVELS_SETTING!r}")
    tiers: list[dict[str, Any]] = []
    for i, tier in enumerate(raw):
        where = f"tiers[{i}]"
        if not isinstance(tier, Mapping):
            raise TemplateError(source, where, "expected a table with name and target")
        for name in tier:
            if name not in _TIER_KEYS:
                raise TemplateError(source, f"{where}.{name}", "unknown key")
        name = _text(tier, "name", source, where)
        target = tier.get("target")
        if not isinstance(target, int | float) or isinstance(target, bool) or target <= 0:
            raise TemplateError(source, f"{where}.target", "expected a number > 0")
        if tiers and target <= tiers[-1]["target"]:
            raise TemplateError(source, f"{where}.target", "tier targets must increase")
        if any(t["name"] == name for t in tiers):
            raise TemplateError(source, f"{where}.name", f"{name!r} is used twice")
        tier_points = _whole(tier.get("points", points), source, f"{where}.points", minimum=0)
        tiers.append({"name": name, "target": target, "points": tier_points})
    return tiers


def _expiry(raw: Mapping[str, Any], source: str) -> tuple[int | None, date | None]:
    after, on = raw.get("expires_after_days"), raw.get("expires_on")
    if after is not None and on is not None:
        raise TemplateError(source, "expires_on", "use expires_after_days or expires_on, not both")
    if after is not None:
        return _whole(after, source, "expires_after_days", minimum=1), None
    if on is None:
        return None, None
    if isinstance(on, date):
        return None, on
    if isinstance(on, str):
        try:
            return None, date.fromisoformat(on)
        except ValueError:
            pass
    raise TemplateError(source, "expires_on", "expected a date such as 2027-07-31")


def _whole(value: Any, source: str, key: str, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TemplateError(source, key, f"expected a whole number >= {minimum}")
    return value


def _strings(raw: Mapping[str, Any], key: str, source: str) -> list[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TemplateError(source, key, "expected a list of strings")
    return value


def _text(raw: Mapping[str, Any], key: str, source: str, where: str = "") -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TemplateError(
            source, f"{where}.{key}" if where else key, "missing: expected a non-empty string"
        )
    return value


def _image(raw: Mapping[str, Any], source: str) -> str:
    """The file name of the image beside the template: one name that a file system can hold (at most 255
    bytes), with no folder, NUL, control character or lone surrogate. Checked before any file is looked
    for: a longer name made the look-up itself fail (OSError: file name too long)."""
    name = _text(raw, "image", source)
    if _NOT_A_FILE_NAME.search(name) or len(name.encode()) > 255 or name in (".", ".."):
        raise TemplateError(
            source, "image", "expected the file name of an image beside the template (at most 255 bytes)"
        )
    return name


def _as_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value
