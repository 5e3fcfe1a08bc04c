"""``badge-bridge sync``: sync LMS platforms now, and ``badge-bridge sync runs``: what past syncs did.

The commands get the CLI's context object (settings and database) through ``click.pass_obj`` rather than
importing ``bridge.cli``, which imports this module to register them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

import click

if TYPE_CHECKING:  # the CLI starts with click alone; settings are loaded by the commands that need them
    from bridge.settings import Settings


class _CliContext(Protocol):
    @property
    def settings(self) -> Settings: ...

    def database(self, *, migrate: bool = True) -> Any: ...


def _summary(run: Any) -> str:
    where = f"course {run.course}" if run.course else f"{run.courses} course(s)"
    return (
        f"sync run {run.id} {run.platform}: {run.status}; {where}, {run.calls} LMS calls, "
        f"{run.events} new events, {run.duplicates} already stored, {run.errors} errors"
    )


@click.group(invoke_without_command=True)
@click.option("--platform", help="the platform to sync (default: every Canvas and Moodle platform)")
@click.option("--course", help="only this course (its LMS id)")
@click.option("--full", is_flag=True, help="read everything again, ignoring cursors and snapshots")
@click.pass_context
def sync(ctx: click.Context, platform: str | None, course: str | None, full: bool) -> None:
    """Sync Canvas and Moodle platforms now (the scheduler does it nightly)."""
    if ctx.invoked_subcommand is not None:
        return
    from bridge.services.errors import ServiceError
    from bridge.services.sync import SyncService

    obj: _CliContext = ctx.obj
    database = obj.database()
    service = SyncService(database, obj.settings)
    platforms = [platform] if platform else service.platforms()
    if not platforms:
        click.echo("no Canvas or Moodle platform is configured", err=True)
        sys.exit(2)
    if course and len(platforms) > 1:
        raise click.BadParameter("name the course's platform too", param_hint="--course")
    clean = True
    for platform_id in platforms:
        try:
            run = service.run(platform_id, course, full=full, trigger="cli")
        except ServiceError as error:
            click.echo(f"{platform_id}: {error.message}", err=True)
            clean = False
            continue
        click.echo(_summary(run))
        for problem in run.problems:
            click.echo(f"  - {problem}")
        clean = clean and run.status == "succeeded"
    if not clean:
        sys.exit(1)


@sync.command("runs")
@click.option("--platform", help="only this platform's runs")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per run")
@click.pass_obj
def runs(obj: _CliContext, platform: str | None, limit: int, as_json: bool) -> None:
    """The latest sync runs: when, how they ended, LMS calls, events found, errors."""
    from bridge.services.sync import SyncService

    records = SyncService(obj.database(), obj.settings).runs(platform, limit)
    if not records:
        click.echo("no sync runs yet")
        return
    for run in records:
        if as_json:
            click.echo(json.dumps(asdict(run), default=str))
            continue
        finished = run.finished_at.isoformat(timespec="seconds") if run.finished_at else "still running"
        click.echo(f"{run.started_at.isoformat(timespec='seconds')} -> {finished}  {_summary(run)}")
