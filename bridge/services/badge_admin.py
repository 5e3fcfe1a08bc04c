"""Badges changed at run time (REST API, CLI): created, edited, enabled, disabled — no restart.

Running workers pick the change up within ``worker.rules_refresh_seconds``. Edited criteria make a new
criteria version; awards already made keep theirs.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Badge
from bridge.domain.templates import BadgeTemplate, TemplateError, parse_template
from bridge.services.audit import record_audit
from bridge.services.badges import apply_template, shipped_templates_dir
from bridge.services.errors import Conflict, Invalid, NotFound
from bridge.settings import Settings


@dataclass(frozen=True)
class BadgeView:
    id: str
    name: str
    description: str
    image: str
    narrative: str
    tags: list[str]
    points: int
    criteria: dict[str, Any]
    tiers: list[dict[str, Any]]
    prerequisites: list[str]
    requires_approval: bool
    expires_after_days: int | None
    expires_on: date | None
    criteria_version: int
    enabled: bool
    source: str
    updated_at: datetime


def _view(badge: Badge) -> BadgeView:
    return BadgeView(
        badge.id, badge.name, badge.description, badge.image, badge.narrative, list(badge.tags), badge.points,
        dict(badge.criteria), list(badge.tiers), list(badge.prerequisites), badge.requires_approval,
        badge.expires_after_days, badge.expires_on, badge.criteria_version, badge.enabled, badge.source,
        badge.updated_at,
    )  # fmt: skip


def list_badges(database: Database) -> list[BadgeView]:
    with database.read() as session:
        return [_view(b) for b in session.scalars(select(Badge).order_by(Badge.id))]


def get_badge(database: Database, badge_id: str) -> BadgeView:
    with database.read() as session:
        badge = session.get(Badge, badge_id)
        if badge is None:
            raise NotFound(f"no badge with id {badge_id!r}", "unknown_badge")
        return _view(badge)


class BadgeAdmin:
    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        self._images = settings.badge_templates_dir or shipped_templates_dir()

    def create(self, document: Mapping[str, Any], actor: str, *, beside: Path | None = None) -> BadgeView:
        """``beside``: the folder of the template's file (CLI); an image found there is copied into
        ``badge_templates_dir``, where badge images are read from."""
        template = self._parse(document)
        copy = self._image_to_copy(template.image, beside)
        with self._database.write() as session:
            if session.get(Badge, template.id) is not None:
                raise Conflict(f"badge {template.id!r} already exists: update it instead", "badge_exists")
            self._check_prerequisites(session, template)
            if copy is not None:
                _copy_image(copy, self._images)
            badge = Badge(id=template.id, enabled=True, source="api", created_at=utcnow())
            apply_template(badge, template)
            session.add(badge)
            record_audit(session, actor, "badge.create", badge_id=template.id, details={"version": 1})
            session.flush()
            return _view(badge)

    def update(
        self, badge_id: str, document: Mapping[str, Any], actor: str, *, beside: Path | None = None
    ) -> BadgeView:
        if document.get("id", badge_id) != badge_id:
            raise Invalid(
                f"id: the document says {document.get('id')!r} but the badge is {badge_id!r}", "invalid_badge"
            )
        template = self._parse({**document, "id": badge_id})
        copy = self._image_to_copy(template.image, beside)
        with self._database.write() as session:
            badge = session.get(Badge, badge_id)
            if badge is None:
                raise NotFound(f"no badge with id {badge_id!r}", "unknown_badge")
            self._check_prerequisites(session, template)
            if copy is not None:
                _copy_image(copy, self._images)
            before = badge.criteria_version
            apply_template(badge, template)
            badge.source = "api"  # from now on the database owns it: its file no longer overwrites it
            record_audit(
                session,
                actor,
                "badge.update",
                badge_id=badge_id,
                details={"version_before": before, "version": badge.criteria_version},
            )
            return _view(badge)

    def set_enabled(self, badge_id: str, enabled: bool, actor: str) -> BadgeView:
        with self._database.write() as session:
            badge = session.get(Badge, badge_id)
            if badge is None:
                raise NotFound(f"no badge with id {badge_id!r}", "unknown_badge")
            if badge.enabled != enabled:
                badge.enabled = enabled
                badge.updated_at = utcnow()
                record_audit(
                    session, actor, "badge.enable" if enabled else "badge.disable", badge_id=badge_id
                )
            return _view(badge)

    def _parse(self, document: Mapping[str, Any]) -> BadgeTemplate:
        if not isinstance(document, Mapping):
            raise Invalid("body: expected a badge document (a JSON object)", "invalid_badge")
        source = f"badge {document.get('id', '?')}"
        try:
            template = parse_template(
                document, source, self._settings.track_event_types, self._settings.badge_level_threshold
            )
        except TemplateError as error:
            raise Invalid(f"{error.key}: {error.reason}", "invalid_badge") from None
        return template

    def _image_to_copy(self, name: str, beside: Path | None) -> Path | None:
        """The image file beside the template to copy into the badge templates folder, or None when the
        folder has it already; refused when it is in neither place, or cannot be copied."""
        in_folder = _image_exists(self._images, name)
        if beside is None or not _image_exists(beside, name):
            if in_folder:
                return None
            if beside is None:
                raise Invalid(f"image: {name!r} is not a file in the badge templates folder", "invalid_badge")
            raise Invalid(
                f"image: {name!r} is neither beside the template ({beside}) nor in the badge templates "
                f"folder ({self._images})",
                "invalid_badge",
            )
        found = beside / name
        if in_folder and (self._images / name).read_bytes() == found.read_bytes():
            return None  # the same image (or the very file): nothing to copy
        if self._settings.badge_templates_dir is None:
            raise Invalid(
                f"image: {name!r} is beside the template, but images are read from the shipped templates "
                "folder: set badge_templates_dir in the settings to have it copied there",
                "invalid_badge",
            )
        if in_folder:
            raise Invalid(
                f"image: {name!r} beside the template differs from the file of that name in the badge "
                f"templates folder ({self._images}), which other badges may show: rename one",
                "invalid_badge",
            )
        return found

    @staticmethod
    def _check_prerequisites(session: Session, template: BadgeTemplate) -> None:
        graph = {badge.id: list(badge.prerequisites) for badge in session.scalars(select(Badge))}
        for needed in template.prerequisites:
            if needed not in graph and needed != template.id:
                raise Invalid(f"prerequisites: {needed!r} is not a badge", "invalid_badge")
        graph[template.id] = list(template.prerequisites)
        # A cycle through the changed badge: can it reach itself?
        stack, seen = list(template.prerequisites), set()
        while stack:
            current = stack.pop()
            if current == template.id:
                raise Invalid(f"prerequisites: a cycle leads back to {template.id!r}", "invalid_badge")
            if current not in seen:
                seen.add(current)
                stack.extend(graph.get(current, []))


def _copy_image(source: Path, directory: Path) -> None:
    """Copied under a temporary name and renamed: a badge page never reads half a file."""
    temporary = directory / f".copy-{uuid.uuid4().hex}{source.suffix}"
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, directory / source.name)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        reason = error.strerror or type(error).__name__
        raise Invalid(
            f"image: cannot copy {source.name!r} into {directory} ({reason})", "invalid_badge"
        ) from None


def _image_exists(directory: Path, name: str) -> bool:
    try:
        path = (directory / name).resolve()
        return path.is_file() and path.parent == directory.resolve()
    except OSError:  # a name this file system cannot hold (some allow fewer than 255 bytes)
        return False
