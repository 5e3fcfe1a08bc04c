"""``badge-bridge``: serve, run workers and the scheduler, migrate, operate the queue, run the demo."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from bridge.settings import Settings, SettingsError, load_settings


class _Context:
    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config)
            except SettingsError as error:
                for line in error.lines:
                    click.echo(line, err=True)
                sys.exit(2)
            from bridge.logs import configure_logging

            configure_logging(self._settings.log_level)
        return self._settings

    def database(self, *, migrate: bool = True) -> Any:
        from bridge.bootstrap import connect_database, open_database
        from bridge.db.migrate import SchemaOutOfDate

        if not migrate:
            return connect_database(self.settings)
        try:
            return open_database(self.settings)
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
@click.version_option(package_name="lms-badge-bridge")
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
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("demo-data"), show_default=True)
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

    found = failed_events(ctx.database(), limit)
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
    """Queue failed events again (by id, or --all)."""
    from bridge.services.queue import retry_failed

    if not ids and not retry_all:
        raise click.UsageError("name event ids or pass --all")
    count = retry_failed(ctx.database(), None if retry_all else list(ids))
    click.echo(f"{count} event(s) queued again")


@main.group("api-keys")
def api_keys() -> None:
    """Keys for the REST API (Authorization: Bearer <key>)."""


@api_keys.command("create")
@click.argument("name")
@pass_context
def api_keys_create(ctx: _Context, name: str) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    from bridge.services.api_keys import ApiKeyExists, create_key

    try:
        click.echo(create_key(ctx.database(), name))
    except ApiKeyExists as error:
        raise click.ClickException(str(error)) from None


@api_keys.command("list")
@pass_context
def api_keys_list(ctx: _Context) -> None:
    from bridge.services.api_keys import list_keys

    for key in list_keys(ctx.database()):
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        click.echo(f"{key.name}\tcreated {key.created_at:%Y-%m-%d}\t{state}")


@api_keys.command("revoke")
@click.argument("name")
@pass_context
def api_keys_revoke(ctx: _Context, name: str) -> None:
    from bridge.services.api_keys import revoke_key

    if not revoke_key(ctx.database(), name):
        raise click.ClickException(f"no active API key named {name!r}")
    click.echo(f"revoked {name}")


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


_register_more_commands()
