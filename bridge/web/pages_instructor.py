"""The instructor's pages inside the LMS, for the launch's own course: its badges with completion counts
(overview, with the course's last sync, "sync now" and the gradebook switch), the learner-by-badge
matrix with awards and revocations by hand, the approval queue with the evidence of each request, and
analytics as server-rendered SVG with a CSV export.

Like the learner's page they act through the launch token (``lt``), every POST carries the launch's CSRF
token, and only a launch with an instructor's (or administrator's) role in this very course may open
them: any other launch gets a 403 page. A POST that works answers 303 back to its page, which says what
was done; one a service refuses shows the page again with the reason, never a 500.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from flask import Blueprint, Response, redirect, request, url_for

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Lease
from bridge.db.models_lti import LtiContext
from bridge.lti.grades import set_grade_sync
from bridge.lti.launch import LaunchRefused
from bridge.lti.sessions import LaunchContext
from bridge.services import analytics
from bridge.services import instructor_page as course_view
from bridge.services.errors import ServiceError
from bridge.services.sync import SYNCED_KINDS, Connectors, RunRecord, SyncService
from bridge.settings import Settings
from bridge.web import charts
from bridge.web.context import services
from bridge.web.pages import check_csrf, launch_context, register_refusal_pages, render_page
from bridge.web.strings import STRINGS, text

log = logging.getLogger(__name__)
instructor_pages = Blueprint("instructor_pages", __name__, url_prefix="/lti/courses/<path:course>/instructor")
register_refusal_pages(instructor_pages)
PAGE_SIZE = 25  # learners per page of the matrix
QUEUE_SIZE = 50  # approvals shown at once
REASON_CHARACTERS = 1000
DONE = frozenset({"awarded", "revoked", "approved", "rejected", "sync_started", "grades_on", "grades_off"})
MAX_ID = 2**62


def _instructor(course: str) -> LaunchContext:
    """The launch, when it is an instructor's launch of this course; a 403 page otherwise."""
    context = launch_context()
    if context.course != course:
        raise LaunchRefused("wrong_context", text("instructor.other_course"), 403)
    if not context.is_instructor:
        raise LaunchRefused("not_instructor", text("instructor.only"), 403)
    return context


def _scope(context: LaunchContext) -> course_view.CourseScope:
    assert context.course is not None  # _instructor() compared it with the page's course
    return course_view.CourseScope(
        context.platform, context.course, context.registration_id, context.context_id
    )


def _actor(context: LaunchContext) -> str:
    return f"instructor {context.platform}/{context.lms_user_id} (LTI)"


def _reason() -> str:
    return request.form.get("reason", "").strip()[:REASON_CHARACTERS]


def _back(context: LaunchContext, page: str, done: str) -> Response:
    token = services().lti.tokens.token(context.launch_id)
    return redirect(url_for(f"instructor_pages.{page}", course=context.course, lt=token, done=done), 303)


def _message(error: ServiceError) -> str:
    key = f"instructor.error.{error.code}"
    return text(key) if key in STRINGS else text("instructor.error.other", message=error.message)


def _id(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and int(value) < MAX_ID else None


def _name(display_name: str | None, lms_user_id: str) -> str:
    return display_name or text("instructor.learner_name", id=lms_user_id)


def _when(moment: Any) -> str:
    return f"{moment.astimezone(services().settings.zone):%-d %B %Y at %H:%M %Z}"


def _page(template: str, context: LaunchContext, current: str, status: int = 200, **values: Any) -> Response:
    database = services().database
    with database.read() as session:
        lti = session.get(LtiContext, (context.registration_id, context.context_id or ""))
    done = request.args.get("done")
    return render_page(
        template,
        context,
        status,
        t=text,
        when=_when,
        name_of=_name,
        current=current,
        lti_context=lti,
        course_title=lti.title if lti is not None and lti.title else context.course,
        waiting=course_view.waiting_count(database, _scope(context)),
        notice=text(f"instructor.done.{done}") if done in DONE else None,
        **values,
    )


# --- the overview: badges, sync, gradebook ----------------------------------------------------------------


@instructor_pages.get("")
def overview(course: str) -> Response:
    return _overview(_instructor(course))


def _overview(context: LaunchContext, error: str | None = None, status: int = 200) -> Response:
    database, settings, scope = services().database, services().settings, _scope(context)
    reports = analytics.badge_report(database, platform=context.platform, course=context.course)
    columns, rows = course_view.progress_matrix(database, settings, course_view.learners(scope))
    return _page(
        "lti/instructor.html",
        context,
        "overview",
        status,
        error=error,
        learners=len(rows),
        reports=[r for r in reports if r.enabled or r.earned],
        on_the_way=course_view.on_the_way(columns, rows),
        percent=charts.percent,
        last_run=_last_run(context),
        syncable=_syncable(context),
    )


def _syncable(context: LaunchContext) -> bool:
    platform = services().settings.platform(context.platform)
    return platform is not None and platform.kind in SYNCED_KINDS and platform.base_url is not None


def _last_run(context: LaunchContext) -> RunRecord | None:
    """The latest sync that covered this course: of the course alone, or of its whole platform."""
    found = services()
    runs = SyncService(found.database, found.settings, found.connectors).runs(context.platform, 200)
    return next((run for run in runs if run.course in (None, context.course)), None)


@instructor_pages.post("/sync")
def sync_now(course: str) -> Response:
    """Start a sync of this course in the background and answer at once; the page shows its outcome."""
    context = _instructor(course)
    check_csrf(context)
    if not _syncable(context):
        return _overview(context, text("instructor.sync.unavailable"), 422)
    found = services()
    with found.database.read() as session:
        lease = session.get(Lease, f"sync:{context.platform}")  # the lease SyncService.run takes
        if lease is not None and lease.expires_at > utcnow():
            return _overview(context, text("instructor.sync.busy"), 409)
    work = (found.database, found.settings, found.connectors, context.platform, context.course)
    threading.Thread(target=_sync, args=work, name="instructor-sync", daemon=True).start()
    return _back(context, "overview", "sync_started")


def _sync(database: Database, settings: Settings, connectors: Connectors, platform: str, course: str) -> None:
    where = {"platform": platform, "course": course}
    try:
        SyncService(database, settings, connectors).run(platform, course, trigger="instructor")
    except ServiceError as error:  # another node started one meanwhile
        log.warning("sync.not_started", extra={**where, "error": error.message})
    except Exception:  # the run's record says it failed; the thread must not end unheard
        log.exception("sync.crashed", extra=where)


@instructor_pages.post("/grade-sync")
def grade_sync(course: str) -> Response:
    context = _instructor(course)
    check_csrf(context)
    enabled = request.form.get("enabled") == "1"
    try:
        database = services().database
        set_grade_sync(database, context.registration_id, context.context_id or "", enabled, _actor(context))
    except ServiceError as error:
        return _overview(context, _message(error), error.status)
    return _back(context, "overview", "grades_on" if enabled else "grades_off")


# --- learners: the matrix, awards and revocations -----------------------------------------------------------


@instructor_pages.get("/learners")
def learners(course: str) -> Response:
    return _learners_page(_instructor(course))


def _learners_page(context: LaunchContext, error: str | None = None, status: int = 200) -> Response:
    database, settings = services().database, services().settings
    query = request.values.get("q", "").strip()[:100]
    chosen = course_view.learners(_scope(context), query)
    total = course_view.count(database, chosen)
    pages = max(1, -(-total // PAGE_SIZE))
    page = max(1, min(_id(request.values.get("page")) or 1, pages))
    shown = chosen.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    columns, rows = course_view.progress_matrix(database, settings, shown)
    return _page(
        "lti/instructor_learners.html",
        context,
        "learners",
        status,
        error=error,
        query=query,
        page=page,
        pages=pages,
        total=total,
        first=(page - 1) * PAGE_SIZE + 1,
        columns=columns,
        rows=rows,
        badge_names={column.badge_id: column.name for column in columns},
        form=request.form,
    )


@instructor_pages.post("/awards")
def award(course: str) -> Response:
    context = _instructor(course)
    check_csrf(context)
    learner = request.form.get("learner", "")
    badge_id, _, tier = request.form.get("badge", "").rpartition("|")
    if not course_view.is_member(services().database, _scope(context), learner):
        return _learners_page(context, text("instructor.error.unknown_learner"), 422)
    try:
        services().manual_awards.award(
            platform=context.platform,
            learner=learner,
            badge_id=badge_id,
            tier=tier,
            actor=_actor(context),
            reason=_reason(),
        )
    except ServiceError as error:
        return _learners_page(context, _message(error), error.status)
    return _back(context, "learners", "awarded")


@instructor_pages.post("/awards/revoke")
def revoke(course: str) -> Response:
    context = _instructor(course)
    check_csrf(context)
    award_id = _id(request.form.get("award"))
    if award_id is None or not course_view.award_in_course(services().database, _scope(context), award_id):
        return _learners_page(context, text("instructor.error.unknown_award"), 404)
    try:
        services().manual_awards.revoke(award_id=award_id, actor=_actor(context), reason=_reason())
    except ServiceError as error:
        return _learners_page(context, _message(error), error.status)
    return _back(context, "learners", "revoked")


# --- the approval queue -----------------------------------------------------------------------------------


@instructor_pages.get("/approvals")
def approvals(course: str) -> Response:
    return _approvals_page(_instructor(course))


def _approvals_page(context: LaunchContext, error: str | None = None, status: int = 200) -> Response:
    found = services()
    queue = course_view.approval_queue(found.database, found.settings, _scope(context), QUEUE_SIZE)
    return _page("lti/instructor_approvals.html", context, "approvals", status, error=error, queue=queue)


@instructor_pages.post("/approvals/<int(max=4611686018427387903):approval_id>")
def decide(course: str, approval_id: int) -> Response:
    context = _instructor(course)
    check_csrf(context)
    decision = request.form.get("decision")
    if decision not in ("approve", "reject"):
        return _approvals_page(context, text("instructor.error.bad_decision"), 422)
    if not course_view.approval_waiting(services().database, _scope(context), approval_id):
        return _approvals_page(context, text("instructor.error.unknown_approval"), 404)
    try:
        services().manual_awards.decide(
            approval_id=approval_id,
            approve=decision == "approve",
            actor=_actor(context),
            reason=_reason() or None,
        )
    except ServiceError as error:
        return _approvals_page(context, _message(error), error.status)
    return _back(context, "approvals", "approved" if decision == "approve" else "rejected")


# --- analytics --------------------------------------------------------------------------------------------


@instructor_pages.get("/analytics", endpoint="analytics")
def analytics_page(course: str) -> Response:
    context = _instructor(course)
    database, settings = services().database, services().settings
    reports = analytics.badge_report(database, platform=context.platform, course=context.course)
    reports = [r for r in reports if r.enabled or r.earned]
    funnels = analytics.tier_funnel(database, platform=context.platform, course=context.course)
    weeks = course_view.awards_per_week_earned(database, settings, _scope(context))
    return _page(
        "lti/instructor_analytics.html",
        context,
        "analytics",
        reports=reports,
        weeks=weeks,
        funnels=funnels,
        completion=charts.completion_chart(reports),
        per_week=charts.weeks_chart(weeks),
        funnel_charts=[charts.funnel_chart(funnel) for funnel in funnels],
        week_label=charts.week_label,
        percent=charts.percent,
    )


@instructor_pages.get("/analytics.csv")
def analytics_csv(course: str) -> Response:
    """The analytics CSV of the REST API (``/api/v1/analytics/badges.csv``), for this course."""
    context = _instructor(course)
    reports = analytics.badge_report(services().database, platform=context.platform, course=context.course)
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", context.course or "")[:60]
    headers = {
        "Content-Disposition": f'attachment; filename="badges-{name}.csv"',
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }
    return Response(analytics.badges_csv(reports), mimetype="text/csv", headers=headers)
