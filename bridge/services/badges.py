"""Badge templates from files into the database, and the active rule book out of it."""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Badge

if TYPE_CHECKING:
    from bridge.domain.rules import ActiveBadge, RuleBook
    from bridge.domain.templates import BadgeTemplate, TemplateError

# The criteria (bridge.domain.templates and .rules) are imported where templates are parsed: they load
# rule-engine, whose parser is built when it is imported (about 0.3 s), which opening the database for a
# command that reads only the inbox (bridge.bootstrap imports this module) does not need.

log = logging.getLogger(__name__)


def shipped_templates_dir() -> Path:
    return Path(str(resources.files("badge_templates")))


@dataclass(frozen=True)
class TemplateLoad:
    templates: list[BadgeTemplate]
    errors: list[TemplateError]


def load_template_files(
    directory: Path, known_kinds: Collection[str], level_thresholds: Sequence[int]
) -> TemplateLoad:
    """Every ``*.toml`` in ``directory``; a bad file is reported and the others still load."""
    from bridge.domain.templates import TemplateError, check_prerequisites, parse_template

    templates: list[BadgeTemplate] = []
    errors: list[TemplateError] = []
    sources: dict[str, str] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            template = parse_template(raw, path.name, known_kinds, level_thresholds)
            if not (directory / template.image).is_file():
                raise TemplateError(path.name, "image", f"file {template.image!r} not found beside it")
            if template.id in sources:
                raise TemplateError(
                    path.name, "id", f"{template.id!r} is already used by {sources[template.id]}"
                )
        except tomllib.TOMLDecodeError as error:
            errors.append(TemplateError(path.name, "toml", str(error)))
            continue
        except UnicodeDecodeError as error:
            errors.append(TemplateError(path.name, "toml", f"not UTF-8 text: {error.reason}"))
            continue
        except TemplateError as error:
            errors.append(error)
            continue
        sources[template.id] = path.name
        templates.append(template)
    broken = check_prerequisites(templates, sources)
    rejected = {error.source for error in broken}
    return TemplateLoad([t for t in templates if sources[t.id] not in rejected], errors + broken)


def apply_template(badge: Badge, template: BadgeTemplate) -> None:
    """Copy a template onto its badge row; changed criteria or tiers make a new criteria version."""
    rules_changed = badge.criteria != dict(template.raw_criteria) or badge.tiers != list(template.tiers)
    if badge.criteria_version is None:
        badge.criteria_version = 1
        badge.criteria_since = utcnow()
    elif rules_changed:
        badge.criteria_version += 1
        badge.criteria_since = utcnow()
    badge.name = template.name
    badge.description = template.description
    badge.image = template.image
    badge.narrative = template.narrative
    badge.tags = list(template.tags)
    badge.points = template.points
    badge.criteria = dict(template.raw_criteria)
    badge.tiers = [dict(tier) for tier in template.tiers]
    badge.prerequisites = list(template.prerequisites)
    badge.requires_approval = template.requires_approval
    badge.expires_after_days = template.expires_after_days
    badge.expires_on = template.expires_on
    badge.definition = dict(template.document)
    badge.updated_at = utcnow()


def sync_templates(database: Database, templates: list[BadgeTemplate]) -> None:
    """Create or update one badge row per template file.

    Badges edited through the API or the CLI (``source == "api"``) belong to the database from then
    on: their file no longer overwrites them.
    """
    with database.write() as session:
        existing = {badge.id: badge for badge in session.scalars(select(Badge))}
        for template in templates:
            badge = existing.get(template.id)
            if badge is None:
                badge = Badge(id=template.id, enabled=True, source="file", created_at=utcnow())
                session.add(badge)
            elif badge.source != "file":
                log.info("badge.file_shadowed", extra={"badge": template.id})
                continue
            apply_template(badge, template)


def active_badge(badge: Badge, known_kinds: Collection[str]) -> ActiveBadge:
    from bridge.domain.rules import ActiveBadge
    from bridge.domain.templates import parse_criteria

    criteria = parse_criteria(badge.criteria, badge.tiers, f"badge {badge.id}", known_kinds)
    return ActiveBadge(
        id=badge.id,
        criteria_version=badge.criteria_version,
        points=badge.points,
        criteria=criteria,
        prerequisites=tuple(badge.prerequisites),
        requires_approval=badge.requires_approval,
        expires_after_days=badge.expires_after_days,
        expires_on=badge.expires_on,
        criteria_since=badge.criteria_since,
        notification_type=channels_of(badge),
    )


def channels_of(badge: Badge) -> tuple[str, ...] | None:
    """The badge template's own ``notification_type`` (checked when it was stored), or None."""
    channels = (badge.definition or {}).get("notification_type")
    return tuple(channels) if isinstance(channels, list) else None


def load_rulebook(session: Session, known_kinds: Collection[str]) -> RuleBook:
    """The enabled badges; the states disabled ones read are kept for when they are enabled again."""
    from bridge.domain.rules import RuleBook
    from bridge.domain.templates import TemplateError

    active = []
    read_elsewhere: set[str] | None = set()
    for badge in session.scalars(select(Badge).order_by(Badge.id)):
        try:
            parsed = active_badge(badge, known_kinds)
        except TemplateError as error:
            read_elsewhere = None  # what it reads is not known: no state is retired
            if badge.enabled:
                log.error("badge.criteria_invalid", extra={"badge": badge.id, "error": str(error)})
            continue
        if badge.enabled:
            active.append(parsed)
        elif read_elsewhere is not None:
            read_elsewhere.update(parsed.criteria.state_keys)
    return RuleBook(active, None if read_elsewhere is None else frozenset(read_elsewhere))


_LAST_READ: dict[tuple[str, ...], tuple[tuple[tuple[object, ...], ...], RuleBook]] = {}
_LAST_READ_LOCK = threading.Lock()


def current_rulebook(session: Session, known_kinds: Collection[str]) -> RuleBook:
    """``load_rulebook`` for readers on every request (the learner's and instructor's pages, progress):
    parsed again only when a badge row changed since the last read. Every change of a badge (its template
    file synced at start, an update through the API or the CLI, enabling or disabling it) sets its
    ``updated_at``, so one small query tells; parsing every badge's criteria was a third of a page."""
    rows = session.execute(
        select(Badge.id, Badge.enabled, Badge.criteria_version, Badge.updated_at).order_by(Badge.id)
    )
    signature = tuple(tuple(row) for row in rows)
    kinds = tuple(sorted(known_kinds))
    with _LAST_READ_LOCK:
        last = _LAST_READ.get(kinds)
    if last is not None and last[0] == signature:
        return last[1]
    rulebook = load_rulebook(session, known_kinds)
    with _LAST_READ_LOCK:
        _LAST_READ[kinds] = (signature, rulebook)
    return rulebook


class RuleBookCache:
    """The rule book, reloaded every ``refresh_seconds`` so run-time badge changes reach running workers."""

    def __init__(self, known_kinds: Collection[str], refresh_seconds: float) -> None:
        self._known_kinds = known_kinds
        self._refresh_seconds = refresh_seconds
        self._rulebook: RuleBook | None = None
        self._loaded_at = 0.0

    def current(self, session: Session) -> RuleBook:
        if self._rulebook is None or time.monotonic() - self._loaded_at > self._refresh_seconds:
            self._rulebook = load_rulebook(session, self._known_kinds)
            self._loaded_at = time.monotonic()
        return self._rulebook
