"""Leaderboards and analytics over the REST API (``/api/v1``): thin views over their services."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, cast

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from bridge.services import analytics
from bridge.services.leaderboards import (
    KEEP,
    METRICS,
    PERIODS,
    Metric,
    Period,
    UnknownLearner,
    leaderboard,
    leaderboard_preference,
    set_leaderboard_preference,
)
from bridge.web.access import actor, needs, platform_filter
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.inputs import json_body, query_choice, query_int, validated
from bridge.web.openapi import documented
from bridge.web.responses import (
    AwardsPerWeekOut,
    BadgeAnalyticsOut,
    Leaderboard,
    LeaderboardPreference,
    TierFunnelsOut,
)
from bridge.web.schemas import AnalyticsQuery, AwardsPerWeekQuery, LeaderboardQuery

reports = Blueprint("reports", __name__, url_prefix="/api/v1")
MAX_WEEKS = 260


class PreferencesIn(BaseModel):
    """A learner's leaderboard preferences: hidden behind their pseudonym or not, and their shown name."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    leaderboard_opt_out: StrictBool
    display_name: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        default=None, description="Leave out to keep the current name; null clears it"
    )


def _text_arg(name: str) -> str | None:
    """An optional query parameter; empty counts as not given."""
    value = request.args.get(name, "").strip()
    if len(value) > 255:
        raise ApiError(422, "invalid_query", f"{name}: expected at most 255 characters")
    return value or None


def _platform_arg(*, required: bool) -> str | None:
    platform = _text_arg("platform")
    if platform is None:
        if required:
            raise ApiError(422, "invalid_query", "platform: required")
        return None
    _known_platform(platform)
    return platform


def _known_platform(platform: str) -> None:
    if services().settings.platform(platform) is None:
        raise ApiError(404, "unknown_platform", f"platform: {platform!r} is not configured")


@reports.get("/leaderboards")
@needs("read")
@documented(answers={200: Leaderboard}, query=LeaderboardQuery)
def get_leaderboard() -> Response:
    settings = services().settings
    platform = cast(str, _platform_arg(required=True))
    course, section = _text_arg("course"), _text_arg("section")
    if section is not None and course is None:
        raise ApiError(422, "invalid_query", "section: only with course")
    period = cast(Period, query_choice("period", "all", PERIODS))
    metric = cast(Metric, query_choice("metric", "points", METRICS))
    limit = query_int("limit", settings.leaderboard.size, maximum=100)
    learner = _text_arg("learner")
    try:
        board = leaderboard(
            services().database,
            settings,
            platform,
            course=course,
            section=section,
            period=period,
            metric=metric,
            limit=limit,
            learner=learner,
        )
    except UnknownLearner:
        raise ApiError(404, "unknown_learner", f"learner: {learner!r} is not known on {platform!r}") from None
    return jsonify(board.as_dict())


@reports.put("/learners/<platform>/<path:lms_user_id>/preferences")
@needs("write")
@documented(answers={200: LeaderboardPreference}, json=PreferencesIn)
def put_preferences(platform: str, lms_user_id: str) -> Response:
    _known_platform(platform)
    body = validated(PreferencesIn, json_body(), "invalid_preferences")
    name = body.display_name if "display_name" in body.model_fields_set else KEEP
    database = services().database
    if not set_leaderboard_preference(
        database, platform, lms_user_id, body.leaderboard_opt_out, actor=actor(), display_name=name
    ):
        raise ApiError(404, "unknown_learner", f"no learner {lms_user_id!r} on {platform!r}")
    return jsonify(asdict(cast(Any, leaderboard_preference(database, platform, lms_user_id))))


def _scope() -> tuple[str | None, str | None]:
    """The optional platform and course narrowing an analytics report (a platform-bound key's platform)."""
    return platform_filter(_platform_arg(required=False)), _text_arg("course")


@reports.get("/analytics/badges")
@needs("read")
@documented(answers={200: BadgeAnalyticsOut}, query=AnalyticsQuery)
def get_badge_analytics() -> Response:
    platform, course = _scope()
    rows = analytics.badge_report(services().database, platform=platform, course=course)
    return jsonify(platform=platform, course=course, badges=[asdict(r) for r in rows])


@reports.get("/analytics/badges.csv")
@needs("read")
@documented(answers={200: None}, query=AnalyticsQuery)
def get_badge_analytics_csv() -> Response:
    platform, course = _scope()
    rows = analytics.badge_report(services().database, platform=platform, course=course)
    return Response(
        analytics.badges_csv(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="badge-analytics.csv"'},
    )


@reports.get("/analytics/awards-per-week")
@needs("read")
@documented(answers={200: AwardsPerWeekOut}, query=AwardsPerWeekQuery)
def get_awards_per_week() -> Response:
    platform, course = _scope()
    weeks = query_int("weeks", 12, maximum=MAX_WEEKS)
    badge = _text_arg("badge")
    database = services().database
    if badge is not None and not analytics.known_badge(database, badge):
        raise ApiError(404, "unknown_badge", f"badge: no badge {badge!r}")
    zone = services().settings.zone
    counts = analytics.awards_per_week(
        database, zone=zone, weeks=weeks, badge=badge, platform=platform, course=course
    )
    return jsonify(
        platform=platform,
        course=course,
        badge=badge,
        timezone=zone.key,
        weeks=[{"week_start": c.week_start.isoformat(), "awards": c.awards} for c in counts],
    )


@reports.get("/analytics/tiers")
@needs("read")
@documented(answers={200: TierFunnelsOut}, query=AnalyticsQuery)
def get_tier_funnels() -> Response:
    platform, course = _scope()
    funnels = analytics.tier_funnel(services().database, platform=platform, course=course)
    return jsonify(platform=platform, course=course, badges=[asdict(f) for f in funnels])
