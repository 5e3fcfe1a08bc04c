"""Opening the database for any process: reached, schema checked (or upgraded), badge templates loaded."""

from __future__ import annotations

import logging
from typing import IO, Any

import click
from sqlalchemy import make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError

from bridge.db.engine import Database
from bridge.db.migrate import ensure_schema
from bridge.parser_tables import import_rule_engine
from bridge.services.badges import load_template_files, shipped_templates_dir, sync_templates
from bridge.settings import Settings

log = logging.getLogger(__name__)


class DatabaseUnreachable(click.ClickException):
    """The database cannot be opened at start-up: one line naming the setting, the process stops.

    A ``click.ClickException`` so that every CLI command reports it as it does a bad setting: the line
    alone on stderr (no traceback, no "Error:" prefix), exit status 2.
    """

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.format_message(), err=True, file=file)


def connect_database(settings: Settings) -> Database:
    """The settings' database, with one connection made to prove it can be reached."""
    url = settings.effective_database_url
    try:
        database = Database(url)
    except (OSError, ArgumentError) as error:  # SQLite's directory cannot be made; a URL we cannot use
        raise DatabaseUnreachable(_line(settings, "cannot open", _reason(error))) from None
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (DBAPIError, OSError) as error:
        database.dispose()
        verb = "cannot open" if database.is_sqlite else "cannot connect"
        raise DatabaseUnreachable(_line(settings, verb, _reason(error))) from None
    return database


def open_database(settings: Settings) -> Database:
    """The embedded SQLite default upgrades itself; PostgreSQL must be upgraded with ``db upgrade``."""
    database = connect_database(settings)
    ensure_schema(database, auto_upgrade=settings.is_embedded_database)
    import_rule_engine(settings.data_dir)  # the templates' filters are rule-engine expressions
    directory = settings.badge_templates_dir or shipped_templates_dir()
    loaded = load_template_files(directory, settings.track_event_types, settings.badge_level_threshold)
    for error in loaded.errors:
        log.error(
            "badge_template.rejected", extra={"file": error.source, "key": error.key, "reason": error.reason}
        )
    sync_templates(database, loaded.templates)
    return database


def _line(settings: Settings, verb: str, reason: str) -> str:
    """``config: database_url = '<URL, password hidden>': cannot connect (<reason>)``, one line.

    With no database_url, the default database in data_dir: the line names data_dir.
    """
    if settings.database_url is None:
        return f"config: data_dir = {str(settings.data_dir)!r}: {verb} the database in it ({reason})"
    try:
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
    except ArgumentError:
        shown = "<unparsable URL>"
    return f"config: database_url = {shown!r}: {verb} ({reason})"


def _reason(error: BaseException) -> str:
    """The driver's own reason, on one line, without the connection details the line shows already."""
    cause = getattr(error, "orig", None) or error
    if isinstance(cause, OSError) and cause.strerror:
        first = cause.strerror
    else:
        lines = str(cause).strip().splitlines()
        first = lines[0].strip() if lines else type(cause).__name__
    # libpq: 'connection failed: connection to server at "h", port 1 failed: Connection refused'
    first = first.rsplit(" failed: ", 1)[-1].removeprefix("connection failed: ")
    first = first.removeprefix("FATAL:").strip()
    return (first[:1].lower() + first[1:]) if first else type(cause).__name__
