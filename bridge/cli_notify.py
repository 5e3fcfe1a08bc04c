"""``badge-bridge notifications failed|retry``: notifications parked after their last attempt."""

from __future__ import annotations

import json

import click

from bridge.cli import _Context, pass_context


@click.group()
def notifications() -> None:
    """Notifications (email, webhooks, xAPI) that could not be delivered."""


@notifications.command("failed")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@pass_context
def notifications_failed(ctx: _Context, as_json: bool) -> None:
    """List parked notifications with their last error."""
    from bridge.notify.outbox import parked

    found = parked(ctx.database(templates=False))
    for n in found:
        if as_json:
            click.echo(json.dumps({**n.__dict__, "created_at": n.created_at.isoformat()}))
        else:
            target = f" {n.target}" if n.target else ""
            click.echo(f"{n.id}\t{n.kind}\t{n.channel}{target}\tattempts={n.attempts}\t{n.last_error}")
    if not found and not as_json:
        click.echo("no failed notifications")


@notifications.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "retry_all", is_flag=True, help="retry every parked notification")
@pass_context
def notifications_retry(ctx: _Context, ids: tuple[int, ...], retry_all: bool) -> None:
    """Queue parked notifications again (by id, or --all), their attempts counted afresh."""
    from bridge.notify.outbox import retry_parked

    if not ids and not retry_all:
        raise click.UsageError("name notification ids or pass --all")
    count = retry_parked(ctx.database(templates=False), None if retry_all else list(ids))
    click.echo(f"{count} notification(s) queued again")
