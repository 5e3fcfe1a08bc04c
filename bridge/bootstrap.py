"""Opening the database for any process: schema checked (or upgraded), badge templates loaded."""

from __future__ import annotations

import logging

from bridge.db.engine import Database
from bridge.db.migrate import ensure_schema
from bridge.services.badges import load_template_files, shipped_templates_dir, sync_templates
from bridge.settings import Settings

log = logging.getLogger(__name__)


def open_database(settings: Settings) -> Database:
    """The embedded SQLite default upgrades itself; PostgreSQL must be upgraded with ``db upgrade``."""
    database = Database(settings.effective_database_url)
    ensure_schema(database, auto_upgrade=settings.is_embedded_database)
    directory = settings.badge_templates_dir or shipped_templates_dir()
    loaded = load_template_files(directory, settings.track_event_types, settings.badge_level_threshold)
    for error in loaded.errors:
        log.error(
            "badge_template.rejected", extra={"file": error.source, "key": error.key, "reason": error.reason}
        )
    sync_templates(database, loaded.templates)
    return database
