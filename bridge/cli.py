"""``badge-bridge``: serve, run workers and the scheduler, migrate, operate the queue, run the demo."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bridge import __version__

if TYPE_CHECKING:
    from bridge.settings import Settings

# Nothing heavier than click is imported here or in the cli_* modules at import time: settings
# (pydantic), the database (SQLAlchemy) and the services are imported by the commands that use them,
# so that --version and --help answer at once (benchmarks/startup.py).

DEMO_DATA_DIR = Path("demo-data")  # where `badge-bridge demo` writes by default
DEMO_CONFIG = DEMO_DATA_DIR / "config.toml"  # the settings it writes there (bridge/demo.py)
# Variables that say where the data lives, without a settings file.
_LOCATING_VARIABLES = ("BRIDGE_DATA_DIR", "BRIDGE_DATABASE_URL")
NO_SETTINGS = (
    "error: no settings found: pass --config FILE, set BRIDGE_CONFIG (or BRIDGE_DATA_DIR, "
    "BRIDGE_DATABASE_URL), or run from the folder where `badge-bridge demo` made demo-data/"
)


class _Context:
    def __init__(self, config: Path | None) -> None:
        self.config = config
        self.defaults_only = False  # no settings named or found: the built-in defaults (./data)
        self._settings: Settings | None = None

    def _settings_file(self) -> Path | None:
        """--config or $BRIDGE_CONFIG; else the demo's settings, when it ran in this folder."""
        if self.config is not None or any(os.environ.get(name) for name in _LOCATING_VARIABLES):
            return self.config
        if DEMO_CONFIG.is_file():
            click.echo(
                f"using the demo's settings in {DEMO_CONFIG} (--config or BRIDGE_CONFIG for others)", err=True
            )
            return DEMO_CONFIG
        self.defaults_only = True
        return None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from bridge.settings import SettingsError, load_settings

            try:
                self._settings = load_settings(self._settings_file())
            except SettingsError as error:
                for line in error.lines:
                    click.echo(line, err=True)
                sys.exit(2)
            from bridge.logs import configure_logging

            configure_logging(self._settings.log_level)
        return self._settings

    def require_data(self) -> None:
        """With no settings named or found, stop (one line saying how to name them) rather than make
        ./data for a command that reads what is stored; an existing default data folder is used."""
        settings = self.settings
        if self.defaults_only and not (settings.data_dir / "bridge.sqlite3").is_file():
            click.echo(NO_SETTINGS, err=True)
            sys.exit(2)

    def database(self, *, migrate: bool = True, templates: bool = True) -> Any:
        """The database, its schema checked (SQLite: upgraded). ``templates``: also load the badge
        template files into it, as every process does at start; commands that only read or requeue the
        inbox or the keys pass False and start without the criteria code."""
        from bridge.bootstrap import connect_database, open_database
        from bridge.db.migrate import SchemaOutOfDate, ensure_schema

        self.require_data()
        if not migrate:
            return connect_database(self.settings)
        try:
            if templates:
                return open_database(self.settings)
            database = connect_database(self.settings)
            ensure_schema(database, auto_upgrade=self.settings.is_embedded_database)
            return database
        except SchemaOutOfDate as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)


pass_context = click.make_pass_decorator(_Context)


@click.group()
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    envvar="BRIDGE_CONFIG",
    help="TOML settings file (default: $BRIDGE_CONFIG; BRIDGE_* variables override it).",
)
# The version as bridge/__init__.py states it (tests hold it equal to the installed package's): reading
# the package metadata instead imports importlib.metadata, a tenth of a second on a busy machine.
@click.version_option(version=__version__, package_name="lms-badge-bridge")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """LMS Badge Bridge: learning events from Moodle and Canvas in, verifiable badges out."""
    ctx.obj = _Context(config)


@main.command()
@click.option("--bind", help="host:port to listen on (default: server.bind)")
@click.option("--workers", type=click.IntRange(min=1), help="gunicorn worker processes")
@click.option(
    "--embedded-worker/--no-embedded-worker",
    default=None,
    help="process events and run scheduled jobs inside the web processes",
)
@pass_context
def serve(ctx: _Context, bind: str | None, workers: int | None, embedded_worker: bool | None) -> None:
    """Serve the web app under gunicorn."""
    gc.disable()  # until the server starts (bridge.server.started): the imports make objects that stay
    from bridge.server import serve as run_server

    settings = ctx.settings
    overrides = {k: v for k, v in {"bind": bind, "workers": workers}.items() if v is not None}
    settings.server = settings.server.model_copy(update=overrides)
    embedded = settings.server.embedded_worker if embedded_worker is None else embedded_worker
    run_server(settings, embedded=embedded)


@main.command()
@click.option("--drain", is_flag=True, help="exit once no event is due instead of waiting for more")
@pass_context
def worker(ctx: _Context, drain: bool) -> None:
    """Process events from the inbox, and deliver notifications (run several on PostgreSQL to scale out)."""
    from bridge.notify.channels import make_sender
    from bridge.worker import Worker

    database = ctx.database()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())  # finish the batch in hand, then stop
    sender = threading.Thread(
        target=make_sender(database, ctx.settings).run, args=(stop,), kwargs={"drain": drain}
    )
    sender.start()
    Worker(database, ctx.settings).run(stop, drain=drain)
    sender.join()


@main.command()
@pass_context
def scheduler(ctx: _Context) -> None:
    """Run scheduled jobs (the hourly award sweep); a lease keeps each job to one node."""
    from bridge.scheduler import Scheduler

    database = ctx.database()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    jobs = Scheduler(database, ctx.settings)
    jobs.start()
    stop.wait()
    jobs.shutdown()


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEMO_DATA_DIR, show_default=True)
@click.option("--bind", default="127.0.0.1:8000", show_default=True)
def demo(data_dir: Path, bind: str) -> None:
    """Create a demo data directory with sample events and serve it."""
    from bridge.demo import run_demo

    run_demo(data_dir, bind)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_context
def db_upgrade(ctx: _Context) -> None:
    """Apply all migrations."""
    from bridge.db.migrate import current_revision, upgrade

    database = ctx.database(migrate=False)
    upgrade(database)
    click.echo(f"database at revision {current_revision(database)}")


@db.command("current")
@pass_context
def db_current(ctx: _Context) -> None:
    """Show the database's revision and the code's."""
    from bridge.db.migrate import current_revision, head_revision

    click.echo(
        f"database: {current_revision(ctx.database(migrate=False)) or 'empty'}; code: {head_revision()}"
    )


@main.group()
def events() -> None:
    """The event inbox."""


@events.command("failed")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@pass_context
def events_failed(ctx: _Context, limit: int, as_json: bool) -> None:
    """List events parked as failed, with their last error."""
    from bridge.services.queue import failed_events

    found = failed_events(ctx.database(templates=False), limit)
    for e in found:
        if as_json:
            click.echo(json.dumps({**e.__dict__, "received_at": e.received_at.isoformat()}))
        else:
            click.echo(
                f"{e.id}\t{e.platform}\t{e.event_key}\t{e.kind}\tattempts={e.attempts}\t{e.last_error}"
            )
    if not found and not as_json:
        click.echo("no failed events")


@events.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "retry_all", is_flag=True, help="retry every failed event")
@pass_context
def events_retry(ctx: _Context, ids: tuple[int, ...], retry_all: bool) -> None:
    """Queue failed events again (by id, or --all).

    A webhook follow-up's id is negative: put -- before it (events retry -- -7). Each id not retried
    gets a line on stderr saying why (done, still pending, unknown); the exit status is 1 when ids
    were named and none of them was retried."""
    from bridge.services.queue import retry_failed, retry_named

    if not ids and not retry_all:
        raise click.UsageError("name event ids or pass --all")
    if retry_all:
        click.echo(f"{retry_failed(ctx.database(templates=False))} event(s) queued again")
        return
    outcome = retry_named(ctx.database(templates=False), list(ids))
    for item, reason in outcome.refused:
        click.echo(_not_retried(item, reason), err=True)
    click.echo(f"{len(outcome.queued)} event(s) queued again")
    if not outcome.queued:
        sys.exit(1)


def _not_retried(item: int, reason: str) -> str:
    what = f"event {item}" if item > 0 else f"webhook follow-up {-item} ({item})"
    why = {
        "done": "it is done (processed already; nothing to retry)",
        "pending": "it is still pending (queued for the worker, not failed)",
        "unknown": "no such event" if item > 0 else "no such follow-up (one that succeeded is removed)",
    }[reason]
    return f"{what} not retried: {why}"


@main.group("api-keys")
def api_keys() -> None:
    """Keys for the REST API (Authorization: Bearer <key>)."""


def _register_more_commands() -> None:
    # Imported here: those modules build on this one's context and options.
    from bridge.cli_keys import keys
    from bridge.cli_lti import lti
    from bridge.cli_notify import notifications
    from bridge.cli_reports import analytics, leaderboard
    from bridge.cli_rules import COMMANDS as RULES_COMMANDS
    from bridge.cli_sync import sync

    for command in (*RULES_COMMANDS, leaderboard, analytics, keys, sync, lti, notifications):
        main.add_command(command)


if __name__ == "__main__":  # python -m bridge.cli: run the bridge.cli that the cli_* modules import
    from bridge.cli import main as _main

    _main()
else:
    _register_more_commands()
