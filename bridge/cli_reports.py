"""``badge-bridge leaderboard`` and ``badge-bridge analytics ...``: the reports, on the command line.

The commands get the CLI's context object (settings and database) through ``click.pass_obj`` rather than
importing ``bridge.cli``, which imports this module to register them.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol, cast

import click

if TYPE_CHECKING:  # imported by the commands that use them: the CLI starts with click alone
    from bridge.services.leaderboards import Metric, Period
    from bridge.settings import Settings

_PERIOD_WORDS = {"all": "all time", "week": "this week", "month": "this month"}
# bridge.services.leaderboards' PERIODS and METRICS, written out so that --help needs no database code.
PERIODS = tuple(_PERIOD_WORDS)
METRICS = ("points", "badges")


class _CliContext(Protocol):
    @property
    def settings(self) -> Settings: ...

    def database(self, *, migrate: bool = True) -> Any: ...


def _platform(settings: Settings, platform: str | None) -> str:
    """The platform named, or the only one configured."""
    configured = [p.id for p in settings.platforms]
    if platform is None:
        if len(configured) == 1:
            return configured[0]
        raise click.BadParameter(
            f"name one of: {', '.join(configured) or '(none configured)'}", param_hint="--platform"
        )
    if settings.platform(platform) is None:
        raise click.BadParameter(f"{platform!r} is not configured", param_hint="--platform")
    return platform


def _known(settings: Settings, platform: str | None) -> str | None:
    return None if platform is None else _platform(settings, platform)


@click.command()
@click.option("--platform", help="platform id (default: the only one configured)")
@click.option("--course", help="rank the members of this course by its awards only")
@click.option("--section", help="only this section of the course")
@click.option("--period", type=click.Choice(PERIODS), default="all", show_default=True)
@click.option("--metric", type=click.Choice(METRICS), default="points", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="entries (default: leaderboard.size)")
@click.option("--learner", help="the asking learner's LMS user id: shown by name, with their rank")
@click.option("--json", "as_json", is_flag=True, help="print the leaderboard as JSON")
@click.pass_obj
def leaderboard(
    ctx: _CliContext,
    platform: str | None,
    course: str | None,
    section: str | None,
    period: str,
    metric: str,
    limit: int | None,
    learner: str | None,
    as_json: bool,
) -> None:
    """Rank learners by the points or badges of a period, per platform or per course."""
    from bridge.services.leaderboards import UnknownLearner
    from bridge.services.leaderboards import leaderboard as make_leaderboard

    settings = ctx.settings
    if section is not None and course is None:
        raise click.BadParameter("only with --course", param_hint="--section")
    platform = _platform(settings, platform)
    try:
        board = make_leaderboard(
            ctx.database(),
            settings,
            platform,
            course=course,
            section=section,
            period=cast("Period", period),
            metric=cast("Metric", metric),
            limit=limit,
            learner=learner,
        )
    except UnknownLearner as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(board.as_dict(), indent=2))
        return
    scope = platform + (f" course {course}" if course else "") + (f" section {section}" if section else "")
    click.echo(f"{scope}: {metric}, {_PERIOD_WORDS[period]} ({board.total} learners)")
    shown = list(board.entries)
    if board.you is not None and board.you not in shown:
        shown.append(board.you)
    for s in shown:
        click.echo(f"{s.rank:>4}  {s.score:>6}  {s.name}{'  (you)' if s.you else ''}")
    if not shown:
        click.echo("no learners")


@click.group()
def analytics() -> None:
    """Badge analytics: completion, time to earn, awards per week."""


@analytics.command("badges")
@click.option("--platform", help="only this platform's learners")
@click.option("--course", help="only this course's members")
@click.option("--csv", "as_csv", is_flag=True, help="print CSV (header row first)")
@click.pass_obj
def analytics_badges(ctx: _CliContext, platform: str | None, course: str | None, as_csv: bool) -> None:
    """Per badge: eligible and earned learners, completion rate, time to earn, recent awards."""
    from bridge.services.analytics import badge_report, badges_csv

    rows = badge_report(ctx.database(), platform=_known(ctx.settings, platform), course=course)
    if as_csv:
        click.echo(badges_csv(rows), nl=False)
        return
    click.echo("badge\teligible\tearned\trate\tmedian_hours\tlast_4_weeks")
    for r in rows:
        rate = "-" if r.completion_rate is None else f"{r.completion_rate:.1%}"
        median = "-" if r.time_to_earn.median_hours is None else f"{r.time_to_earn.median_hours:g}"
        click.echo(f"{r.badge_id}\t{r.eligible}\t{r.earned}\t{rate}\t{median}\t{r.awards_last_4_weeks}")


@analytics.command("weekly")
@click.option("--weeks", type=click.IntRange(min=1, max=260), default=12, show_default=True)
@click.option("--badge", help="only this badge's awards")
@click.option("--platform", help="only this platform's learners")
@click.option("--course", help="only this course's members")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per week")
@click.pass_obj
def analytics_weekly(
    ctx: _CliContext, weeks: int, badge: str | None, platform: str | None, course: str | None, as_json: bool
) -> None:
    """Awards per calendar week (weeks start on Monday in the timezone setting), oldest first."""
    from bridge.services.analytics import awards_per_week, known_badge

    database = ctx.database()
    if badge is not None and not known_badge(database, badge):
        raise click.BadParameter(f"no badge {badge!r}", param_hint="--badge")
    counts = awards_per_week(
        database,
        zone=ctx.settings.zone,
        weeks=weeks,
        badge=badge,
        platform=_known(ctx.settings, platform),
        course=course,
    )
    for c in counts:
        if as_json:
            click.echo(json.dumps({**asdict(c), "week_start": c.week_start.isoformat()}))
        else:
            click.echo(f"{c.week_start.isoformat()}\t{c.awards}")
