"""``badge-bridge badges|awards|approvals|audit|progress``: running the rules from a terminal."""

from __future__ import annotations

import getpass
import json
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from bridge.cli import _Context, pass_context
from bridge.services.errors import ServiceError

_AS = click.option(
    "--as",
    "actor",
    default=lambda: f"cli:{getpass.getuser()}",
    show_default="cli:$USER",
    help="who is acting, for the audit log",
)


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused action prints its reason and exits 1, as the REST API answers 4xx."""
    try:
        yield
    except ServiceError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, indent=2))


def _document(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        loaded = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        click.echo(f"error: {path.name}: not valid {path.suffix.lstrip('.') or 'TOML'}: {error}", err=True)
        sys.exit(1)
    if not isinstance(loaded, dict):
        click.echo(f"error: {path.name}: expected a badge document", err=True)
        sys.exit(1)
    return loaded


@click.group()
def badges() -> None:
    """Badge definitions: check template files, list, create, update, enable, disable."""


@badges.command("check")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@pass_context
def badges_check(ctx: _Context, directory: Path) -> None:
    """Validate every template in DIRECTORY; exit 1 if any is bad."""
    from bridge.parser_tables import import_rule_engine
    from bridge.services.badges import load_template_files

    settings = ctx.settings
    import_rule_engine(settings.data_dir)
    loaded = load_template_files(directory, settings.track_event_types, settings.badge_level_threshold)
    for error in loaded.errors:
        click.echo(f"{error.source}: {error.key}: {error.reason}", err=True)
    click.echo(f"{len(loaded.templates)} template(s) valid, {len(loaded.errors)} error(s)")
    if loaded.errors:
        sys.exit(1)


@badges.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def badges_list(ctx: _Context, as_json: bool) -> None:
    from bridge.services.badge_admin import list_badges

    found = list_badges(ctx.database())
    if as_json:
        _print_json([asdict(b) for b in found])
        return
    for b in found:
        state = "enabled" if b.enabled else "disabled"
        click.echo(f"{b.id:24} v{b.criteria_version:<3} {state:8} {b.source:4} {b.name}")


@badges.command("show")
@click.argument("badge_id")
@pass_context
def badges_show(ctx: _Context, badge_id: str) -> None:
    from bridge.services.badge_admin import get_badge

    with _refusals():
        _print_json(asdict(get_badge(ctx.database(), badge_id)))


@badges.command("create")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_AS
@pass_context
def badges_create(ctx: _Context, file: Path, actor: str) -> None:
    """Create a badge from a template FILE (TOML, or JSON by its .json suffix).

    Its image is looked for in the badge templates folder, then beside FILE (copied from there into
    badge_templates_dir, where badge images are read from)."""
    _admin_call(
        ctx, lambda admin: admin.create(_document(file), actor, beside=file.absolute().parent), "created"
    )


@badges.command("update")
@click.argument("badge_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_AS
@pass_context
def badges_update(ctx: _Context, badge_id: str, file: Path, actor: str) -> None:
    """Replace a badge's definition; changed criteria make a new criteria version. The image is found
    as for create."""
    _admin_call(
        ctx,
        lambda admin: admin.update(badge_id, _document(file), actor, beside=file.absolute().parent),
        "updated",
    )


@badges.command("enable")
@click.argument("badge_id")
@_AS
@pass_context
def badges_enable(ctx: _Context, badge_id: str, actor: str) -> None:
    _admin_call(ctx, lambda admin: admin.set_enabled(badge_id, True, actor), "enabled")


@badges.command("disable")
@click.argument("badge_id")
@_AS
@pass_context
def badges_disable(ctx: _Context, badge_id: str, actor: str) -> None:
    _admin_call(ctx, lambda admin: admin.set_enabled(badge_id, False, actor), "disabled")


def _admin_call(ctx: _Context, action: Callable[[Any], Any], done: str) -> None:
    from bridge.services.badge_admin import BadgeAdmin

    with _refusals():
        badge = action(BadgeAdmin(ctx.database(), ctx.settings))
    click.echo(f"{badge.id} {done} (criteria version {badge.criteria_version})")


@click.group()
def awards() -> None:
    """Award and revoke by hand (recorded in the audit log)."""


@awards.command("grant")
@click.argument("platform")
@click.argument("learner")
@click.argument("badge_id")
@click.option("--tier", default="", help="for a badge with tiers")
@click.option("--reason", required=True)
@_AS
@pass_context
def awards_grant(
    ctx: _Context, platform: str, learner: str, badge_id: str, tier: str, reason: str, actor: str
) -> None:
    from bridge.services.manual_awards import ManualAwards

    with _refusals():
        made = ManualAwards(ctx.database(), ctx.settings).award(
            platform=platform, learner=learner, badge_id=badge_id, tier=tier, actor=actor, reason=reason
        )
    click.echo(f"award {made.award_id}: {badge_id}{'/' + tier if tier else ''} to {platform}/{learner}")


@awards.command("revoke")
@click.argument("award_id", type=int)
@click.option("--reason", required=True)
@_AS
@pass_context
def awards_revoke(ctx: _Context, award_id: int, reason: str, actor: str) -> None:
    from bridge.services.manual_awards import ManualAwards

    with _refusals():
        ManualAwards(ctx.database(), ctx.settings).revoke(award_id=award_id, actor=actor, reason=reason)
    click.echo(f"award {award_id} revoked")


@click.group()
def approvals() -> None:
    """Badges waiting for an instructor's approval."""


@approvals.command("list")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "all"]), default="pending")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def approvals_list(ctx: _Context, status: str, as_json: bool) -> None:
    from bridge.services.manual_awards import list_approvals

    found = list_approvals(ctx.database(), None if status == "all" else status)
    if as_json:
        _print_json([asdict(a) for a in found])
        return
    for a in found:
        click.echo(
            f"{a.id:6} {a.status:9} {a.badge_id}{'/' + a.tier if a.tier else ''} {a.platform}/{a.learner}"
        )


@approvals.command("approve")
@click.argument("approval_id", type=int)
@click.option("--reason", default=None)
@_AS
@pass_context
def approvals_approve(ctx: _Context, approval_id: int, reason: str | None, actor: str) -> None:
    from bridge.services.manual_awards import ManualAwards

    with _refusals():
        award_id = ManualAwards(ctx.database(), ctx.settings).decide(
            approval_id=approval_id, approve=True, actor=actor, reason=reason
        )
    click.echo(f"approval {approval_id} approved: award {award_id}")


@approvals.command("reject")
@click.argument("approval_id", type=int)
@click.option("--reason", required=True)
@_AS
@pass_context
def approvals_reject(ctx: _Context, approval_id: int, reason: str, actor: str) -> None:
    from bridge.services.manual_awards import ManualAwards

    with _refusals():
        ManualAwards(ctx.database(), ctx.settings).decide(
            approval_id=approval_id, approve=False, actor=actor, reason=reason
        )
    click.echo(f"approval {approval_id} rejected")


@click.command()
@click.option("--platform")
@click.option("--learner")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit(ctx: _Context, platform: str | None, learner: str | None, limit: int, as_json: bool) -> None:
    """The latest manual actions and rule changes: who, what, when, why."""
    from bridge.services.audit import audit_log

    entries = audit_log(ctx.database(), platform=platform, learner=learner, limit=limit)
    if as_json:
        _print_json([asdict(e) for e in entries])
        return
    for e in entries:
        whom = f" {e.platform}/{e.learner}" if e.learner else ""
        what = f"{e.badge_id or ''}{'/' + e.tier if e.tier else ''}"
        click.echo(
            f"{e.at:%Y-%m-%d %H:%M} {e.actor} {e.action} {what}{whom}{': ' + e.reason if e.reason else ''}"
        )


@click.command()
@click.argument("platform")
@click.argument("learner")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def progress(ctx: _Context, platform: str, learner: str, as_json: bool) -> None:
    """A learner's progress on every badge."""
    from bridge.services.progress import learner_progress

    with _refusals():
        views = learner_progress(ctx.database(), ctx.settings, platform, learner)
    if as_json:
        _print_json([asdict(v) for v in views])
        return
    for v in views:
        mark = "✓" if v.awarded_tiers else " "
        click.echo(f"{mark} {v.badge_id:24} {v.fraction:6.0%}  {v.sentence}")


COMMANDS = (badges, awards, approvals, audit, progress)
