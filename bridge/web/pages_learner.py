"""The learner's page inside the LMS: earned badges, progress, the course leaderboard, their choices, and
a toast for each badge earned (on arrival, and live while the page is open).

Live toasts are server-sent events: a stream stays open at most ``STREAM_SECONDS`` (the browser's
EventSource reconnects by itself, from the last id it saw), and ends as soon as the server finds its
client gone (``bridge.asgi``), so a server thread is never held for long; the page polls instead where
EventSource is missing or fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, redirect, request, url_for

from bridge.asgi import CLIENT_GONE
from bridge.issuing.records import set_badge_profile
from bridge.lti.launch import LaunchRefused
from bridge.lti.sessions import LaunchContext
from bridge.notify.opt_out import learner_id, set_emails_wanted
from bridge.notify.outbox import InAppNotification, in_app, mark_seen
from bridge.services.leaderboards import set_leaderboard_preference
from bridge.services.learner_page import learner_overview
from bridge.web.context import services
from bridge.web.pages import check_csrf, launch_context, register_refusal_pages, render_page
from bridge.web.strings import text

learner_pages = Blueprint("learner_pages", __name__, url_prefix="/lti")
register_refusal_pages(learner_pages)
STREAM_SECONDS = 25.0
STREAM_POLL_SECONDS = 0.5
PERIODS = ("week", "month", "all")


@learner_pages.get("/courses/<path:course>")
def course_page(course: str) -> Response:
    context = launch_context()
    if context.course != course:
        # A launch's token shows its own course only.
        raise LaunchRefused("wrong_context", "This page belongs to another course.", 403)
    return _learner_page(context)


@learner_pages.get("/me")
def my_page() -> Response:
    return _learner_page(launch_context())


def _learner_page(context: LaunchContext) -> Response:
    period = request.args.get("period", "week")
    if period not in PERIODS:
        period = "week"
    context_services = services()
    overview = learner_overview(
        context_services.database,
        context_services.settings,
        context_services.publisher,
        context.platform,
        context.lms_user_id,
        course=context.course,
        period=period,  # type: ignore[arg-type]
        only_badge=request.args.get("badge"),
    )
    here = _here(context)
    return render_page("lti/learner.html", context, overview=overview, period=period, here=here, t=text)


def _here(context: LaunchContext) -> str:
    """This page's address without its token (forms send the token themselves)."""
    if context.course is not None:
        return url_for("learner_pages.course_page", course=context.course)
    return url_for("learner_pages.my_page")


@learner_pages.post("/me/leaderboard")
def leaderboard_choice() -> Response:
    context = launch_context()
    check_csrf(context)
    opt_out = request.form.get("opt_out") == "1"
    set_leaderboard_preference(
        services().database, context.platform, context.lms_user_id, opt_out, actor=_actor(context)
    )
    return _back(context)


@learner_pages.post("/me/profile")
def profile_choice() -> Response:
    context = launch_context()
    check_csrf(context)
    public = request.form.get("public") == "1"
    set_badge_profile(
        services().database, context.platform, context.lms_user_id, public=public, actor=_actor(context)
    )
    return _back(context)


@learner_pages.post("/me/emails")
def emails_choice() -> Response:
    context = launch_context()
    check_csrf(context)
    wanted = request.form.get("emails") == "on"
    learner = learner_id(services().database, context.platform, context.lms_user_id)
    if learner is not None:  # a launch records its learner: None only if the row was removed meanwhile
        set_emails_wanted(services().database, learner, wanted, actor=_actor(context))
    return _back(context)


def _actor(context: LaunchContext) -> str:
    return f"learner {context.platform}/{context.lms_user_id} (LTI)"


def _back(context: LaunchContext) -> Response:
    token = services().lti.tokens.token(context.launch_id)
    return redirect(f"{_here(context)}?lt={token}", 303)


@learner_pages.get("/notifications")
def notifications() -> Response:
    """The learner's unseen in-app notifications (the page's fallback when it cannot stream)."""
    context = launch_context()
    found = _earned(in_app(services().database, context.learner_id, unseen_only=True, limit=20))
    return Response(json.dumps({"notifications": [_toast(n) for n in found]}), mimetype="application/json")


@learner_pages.post("/notifications/seen")
def notifications_seen() -> Response:
    context = launch_context()
    check_csrf(context)
    ids = [int(i) for i in (request.get_json(silent=True) or {}).get("ids", []) if str(i).isdigit()][:100]
    marked = mark_seen(services().database, context.learner_id, ids)
    return Response(json.dumps({"marked": marked}), mimetype="application/json")


@learner_pages.get("/notifications/stream")
def notification_stream() -> Response:
    context = launch_context()
    database = services().database
    after = _last_event_id()
    client_gone = request.environ.get(CLIENT_GONE, lambda: False)

    def events() -> Iterator[str]:
        seen = after
        deadline = time.monotonic() + STREAM_SECONDS
        yield "retry: 1000\n\n"  # reconnect within a second when the stream ends
        while time.monotonic() < deadline and not client_gone():
            unseen = in_app(database, context.learner_id, unseen_only=True, limit=20)
            for notification in _earned([n for n in unseen if n.id > seen]):
                seen = max(seen, notification.id)
                yield f"id: {notification.id}\ndata: {json.dumps(_toast(notification))}\n\n"
            time.sleep(STREAM_POLL_SECONDS)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # no proxy may hold events back
    return Response(events(), mimetype="text/event-stream", headers=headers)


def _last_event_id() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    return int(raw) if raw.isdigit() else 0


def _earned(notifications: list[InAppNotification]) -> list[InAppNotification]:
    """The badges earned, oldest first: what a toast tells."""
    return [n for n in reversed(notifications) if n.kind == "award.made"]


def _toast(notification: InAppNotification) -> dict[str, Any]:
    badge = notification.badge_name or notification.badge_id or ""
    if notification.tier:
        message = text("toast.earned_tier", badge=badge, tier=notification.tier)
    else:
        message = text("toast.earned", badge=badge)
    return {
        "id": notification.id,
        "kind": notification.kind,
        "badge": notification.badge_id,
        "message": message,
    }
