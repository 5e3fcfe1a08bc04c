"""Badge templates from files into the database, and the active rule book out of it."""

from __future__ import annotations

import logging
import time
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Badge
from bridge.domain.rules import ActiveBadge, RuleBook
from bridge.domain.templates import BadgeTemplate, TemplateError, parse_criteria, parse_template

log = logging.getLogger(__name__)


def shipped_templates_dir() -> Path:
    return Path(str(resources.files("badge_templates")))


@dataclass(frozen=True)
class TemplateLoad:
    templates: list[BadgeTemplate]
    errors: list[TemplateError]


def load_template_files(directory: Path, known_kinds: Collection[str]) -> TemplateLoad:
    """Every ``*.toml`` in ``directory``; a bad file is reported and the others still load."""
    templates: list[BadgeTemplate] = []
    errors: list[TemplateError] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            template = parse_template(raw, path.name, known_kinds)
            if not (directory / template.image).is_file():
                raise TemplateError(path.name, "image", f"file {template.image!r} not found beside it")
            if template.id in seen:
                raise TemplateError(
                    path.name, "id", f"{template.id!r} is already used by {seen[template.id]}"
                )
        except tomllib.TOMLDecodeError as error:
            errors.append(TemplateError(path.name, "toml", str(error)))
            continue
        except TemplateError as error:
            errors.append(error)
            continue
        seen[template.id] = path.name
        templates.append(template)
    return TemplateLoad(templates, errors)


def sync_templates(database: Database, templates: list[BadgeTemplate]) -> None:
    """Create or update one badge row per template; changed criteria get a new criteria version."""
    now = utcnow()
    with database.write() as session:
        existing = {badge.id: badge for badge in session.scalars(select(Badge))}
        for template in templates:
            badge = existing.get(template.id)
            if badge is None:
                badge = Badge(id=template.id, criteria_version=1, enabled=True, created_at=now)
                session.add(badge)
            elif badge.criteria != dict(template.raw_criteria):
                badge.criteria_version += 1
            badge.name = template.name
            badge.description = template.description
            badge.image = template.image
            badge.narrative = template.narrative
            badge.tags = list(template.tags)
            badge.points = template.points
            badge.criteria = dict(template.raw_criteria)
            badge.updated_at = now


def load_rulebook(session: Session, known_kinds: Collection[str]) -> RuleBook:
    active = []
    for badge in session.scalars(select(Badge).where(Badge.enabled).order_by(Badge.id)):
        try:
            criteria = parse_criteria(badge.criteria, f"badge {badge.id}", known_kinds)
        except TemplateError as error:
            log.error("badge.criteria_invalid", extra={"badge": badge.id, "error": str(error)})
            continue
        active.append(ActiveBadge(badge.id, badge.criteria_version, badge.points, criteria))
    return RuleBook(active)


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
