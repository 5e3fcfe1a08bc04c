"""Badge templates: badge definitions as data, validated with the file, the key and the reason."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.domain.criteria import SUPPORTED_AGGREGATES, Criteria, Requirement

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_TEMPLATE_KEYS = {"id", "name", "description", "image", "narrative", "tags", "points", "criteria"}
_REQUIREMENT_KEYS = {"kinds", "aggregate", "target"}


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
    criteria: Criteria
    raw_criteria: Mapping[str, Any]


def parse_template(raw: Mapping[str, Any], source: str, known_kinds: Collection[str]) -> BadgeTemplate:
    for key in raw:
        if key not in _TEMPLATE_KEYS:
            raise TemplateError(source, key, "unknown key")
    template_id = _text(raw, "id", source)
    if not _ID.match(template_id):
        raise TemplateError(source, "id", "expected lowercase letters, digits, '-' or '_' (at most 64)")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise TemplateError(source, "tags", "expected a list of strings")
    points = raw.get("points", 0)
    if not isinstance(points, int) or isinstance(points, bool) or points < 0:
        raise TemplateError(source, "points", "expected a whole number >= 0")
    criteria_raw = raw.get("criteria")
    if not isinstance(criteria_raw, Mapping):
        raise TemplateError(source, "criteria", "missing: a badge needs criteria")
    return BadgeTemplate(
        id=template_id,
        name=_text(raw, "name", source),
        description=_text(raw, "description", source),
        image=_text(raw, "image", source),
        narrative=str(raw.get("narrative", "")),
        tags=tuple(tags),
        points=points,
        criteria=parse_criteria(criteria_raw, source, known_kinds),
        raw_criteria=criteria_raw,
    )


def parse_criteria(raw: Mapping[str, Any], source: str, known_kinds: Collection[str]) -> Criteria:
    unknown = set(raw) - {"groups"}
    if unknown:
        raise TemplateError(source, f"criteria.{sorted(unknown)[0]}", "unknown key")
    groups_raw = raw.get("groups")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise TemplateError(source, "criteria.groups", "expected at least one group")
    groups = []
    for g, group_raw in enumerate(groups_raw):
        where = f"criteria.groups[{g}]"
        if not isinstance(group_raw, Mapping) or set(group_raw) - {"requirements"}:
            raise TemplateError(source, where, "expected a table with only 'requirements'")
        requirements_raw = group_raw.get("requirements")
        if not isinstance(requirements_raw, list) or not requirements_raw:
            raise TemplateError(source, f"{where}.requirements", "empty group: expected at least one")
        groups.append(
            tuple(
                _requirement(r_raw, f"{where}.requirements[{r}]", f"g{g}r{r}", source, known_kinds)
                for r, r_raw in enumerate(requirements_raw)
            )
        )
    return Criteria(groups=tuple(groups))


def _requirement(raw: Any, where: str, key: str, source: str, known_kinds: Collection[str]) -> Requirement:
    if not isinstance(raw, Mapping):
        raise TemplateError(source, where, "expected a table")
    for name in raw:
        if name not in _REQUIREMENT_KEYS:
            raise TemplateError(source, f"{where}.{name}", "unknown key")
    kinds = raw.get("kinds")
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        raise TemplateError(source, f"{where}.kinds", "expected a non-empty list of event kinds")
    for kind in kinds:
        if kind not in known_kinds:
            raise TemplateError(
                source, f"{where}.kinds", f"unknown event kind {kind!r} (not in track_event_types)"
            )
    aggregate = raw.get("aggregate", "count")
    if aggregate not in SUPPORTED_AGGREGATES:
        raise TemplateError(
            source, f"{where}.aggregate", f"{aggregate!r} is not one of {sorted(SUPPORTED_AGGREGATES)}"
        )
    target = raw.get("target")
    if not isinstance(target, int) or isinstance(target, bool) or target < 1:
        raise TemplateError(source, f"{where}.target", "expected a whole number >= 1")
    return Requirement(key=key, kinds=frozenset(kinds), target=target, aggregate=aggregate)


def _text(raw: Mapping[str, Any], key: str, source: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TemplateError(source, key, "missing: expected a non-empty string")
    return value
