"""The administrator's pages inside the LMS: the platforms, the LTI registrations and their deployments
(approve the pending ones), a badge editor, and the failed events with a retry.

Only a launch with the administrator role opens them; any other launch gets a 403 page. Every change
carries the launch's CSRF token and is made as ``administrator <platform>/<lms user id> (LTI)``, the
actor the audit log records.

The badge editor takes the template document as TOML, as the files in ``badge_templates/`` are written,
checked as ``badge-bridge badges check`` checks a file (``badge_editor``) on submit and as the
administrator types (``admin.js`` posts to ``/badges/validate``), with the badge's SVG image uploaded
beside it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, redirect, request, url_for

from bridge.db.models import Badge
from bridge.domain.templates import TemplateError
from bridge.lti.launch import LaunchRefused
from bridge.lti.registry import DeploymentInfo, RegistrationInfo, list_registrations, set_status
from bridge.lti.sessions import LaunchContext
from bridge.services.badge_admin import list_badges
from bridge.services.errors import ServiceError
from bridge.services.queue import failed_events, retry_failed
from bridge.web.badge_editor import (
    MAX_IMAGE_BYTES,
    check_template,
    problem_line,
    source_of,
    store_image,
    summary,
    svg_problem,
    toml_text,
)
from bridge.web.context import services
from bridge.web.pages import check_csrf, launch_context, register_refusal_pages, render_page
from bridge.web.strings import text

admin_pages = Blueprint("admin_pages", __name__, url_prefix="/lti/admin")
register_refusal_pages(admin_pages)
log = logging.getLogger(__name__)
FAILED_SHOWN = 100
_ID_MAX = 2**63 - 1  # ids are 64-bit in both databases; a follow-up's is negated
_DONE = ("approved", "disabled", "created", "saved", "enabled", "badge_disabled", "retried")
STARTER = """\
id = "new-badge"
name = "New badge"
description = "What earning this badge says about the learner."
image = "new-badge.svg"
narrative = "What to do to earn it."
points = 10

[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["course_completed"]
aggregate = "count"
target = 1
unit = { one = "course completed", other = "courses completed" }
"""


def _admin(*, change: bool = False) -> LaunchContext:
    context = launch_context()
    if not context.is_administrator:
        raise LaunchRefused("not_allowed", text("admin.not_allowed"), 403)
    if change:
        check_csrf(context)
    return context


def _actor(context: LaunchContext) -> str:
    return f"administrator {context.platform}/{context.lms_user_id} (LTI)"


def _page(template: str, context: LaunchContext, status: int = 200, **values: Any) -> Response:
    return render_page(template, context, status, t=text, done=_done_message(), **values)


def _done_message() -> str | None:
    """What the last change did, from the redirect after it (a fixed sentence: nothing a link can inject)."""
    done = request.args.get("done")
    if done not in _DONE:
        return None
    count = request.args.get("count", "")
    return text(f"admin.done.{done}", count=int(count) if count.isdigit() else 0)


def _back(context: LaunchContext, endpoint: str, **values: Any) -> Response:
    """To the page of the change, whose notice (at the top) says what was done."""
    token = services().lti.tokens.token(context.launch_id)
    return redirect(url_for(endpoint, lt=token, **values), 303)


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except ServiceError as error:
        raise LaunchRefused(
            error.code, f"{error.message[:1].upper()}{error.message[1:]}.", error.status
        ) from None


# --- platforms, registrations and deployments ---------------------------------------------------------


@admin_pages.get("")
def platforms_page() -> Response:
    context = _admin()
    registrations = sorted(list_registrations(services().database), key=lambda r: (not _waiting(r), r.id))
    return _page(
        "lti/admin_platforms.html",
        context,
        section="platforms",
        platforms=[_platform(p) for p in services().settings.platforms],
        registrations=[(r, _pending_first(r.deployments)) for r in registrations],
    )


def _platform(platform: Any) -> dict[str, str | None]:
    """What a page may show of a platform: never its token, secrets or a password in its URL."""
    url = None
    if platform.base_url is not None:
        parts = urlsplit(str(platform.base_url))
        url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    return {"id": platform.id, "kind": platform.kind, "name": platform.name or None, "base_url": url}


def _waiting(registration: RegistrationInfo) -> bool:
    return registration.status == "pending" or any(d.status == "pending" for d in registration.deployments)


def _pending_first(deployments: tuple[DeploymentInfo, ...]) -> list[DeploymentInfo]:
    return sorted(deployments, key=lambda d: (d.status != "pending", d.id))


@admin_pages.post("/registrations/<int:registration_id>")
def registration_status(registration_id: int) -> Response:
    """Approve (``status=active``) or disable a registration, or one of its deployments (``deployment``)."""
    context = _admin(change=True)
    status = request.form.get("status")
    if status not in ("active", "disabled"):
        raise LaunchRefused("bad_choice", text("admin.bad_status"), 422)
    deployment = request.form.get("deployment") or None
    with _refusals():
        set_status(
            services().database, registration_id, status, actor=_actor(context), deployment_id=deployment
        )
    done = "approved" if status == "active" else "disabled"
    return _back(context, "admin_pages.platforms_page", done=done)


# --- badges -----------------------------------------------------------------------------------------------


@admin_pages.get("/badges")
def badges_page() -> Response:
    context = _admin()
    return _page("lti/admin_badges.html", context, section="badges", badges=list_badges(services().database))


@admin_pages.post("/badges/edit/<badge_id>/enabled")
def badge_enabled(badge_id: str) -> Response:
    context = _admin(change=True)
    enabled = request.form.get("enabled") == "1"
    with _refusals():
        services().badge_admin.set_enabled(badge_id, enabled, _actor(context))
    done = "enabled" if enabled else "badge_disabled"
    return _back(context, "admin_pages.badges_page", done=done)


@admin_pages.get("/badges/new")
def new_badge() -> Response:
    return _editor(_admin(), None, STARTER)


@admin_pages.get("/badges/edit/<badge_id>")
def edit_badge(badge_id: str) -> Response:
    context = _admin()
    # The document as it was written (tiers = "badge_level_threshold" stays so), not its resolved columns.
    with services().database.read() as session:
        badge = session.get(Badge, badge_id)
        if badge is None:
            raise LaunchRefused("unknown_badge", text("admin.editor.unknown", badge=badge_id), 404)
        document, name = dict(badge.definition), badge.name
    return _editor(context, badge_id, toml_text(document), name=name)


@admin_pages.post("/badges/validate")
def validate_badge() -> Response:
    """The live check: ``{"template", "badge" (the id edited, or null), "image_chosen"}`` → the problems."""
    _admin(change=True)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("template"), str):
        refused = jsonify(error={"code": "bad_request", "message": text("admin.editor.bad_check")})
        refused.status_code = 400
        return refused
    editing = body.get("badge") if isinstance(body.get("badge"), str) else None
    _, problems = check_template(body["template"], editing, image_chosen=body.get("image_chosen") is True)
    return jsonify(
        valid=not problems,
        summary=summary(problems),
        messages=[
            {"file": p.source, "key": p.key, "reason": p.reason, "message": problem_line(p)} for p in problems
        ],
    )


def _editor(
    context: LaunchContext,
    badge_id: str | None,
    template: str,
    problems: list[TemplateError] | None = None,
    *,
    name: str | None = None,
    status: int = 200,
) -> Response:
    images = services().settings.badge_templates_dir
    return _page(
        "lti/admin_badge.html",
        context,
        status,
        section="badges",
        badge_id=badge_id,
        name=name,
        document=template,
        checked=problems is not None,
        problems=[problem_line(p) for p in problems or []],
        summary=summary(problems) if problems is not None else "",
        uploads=images is not None,
        max_kb=MAX_IMAGE_BYTES // 1024,
    )


@admin_pages.post("/badges/new", defaults={"badge_id": None})
@admin_pages.post("/badges/edit/<badge_id>")
def save_badge(badge_id: str | None) -> Response:
    """Create (``/new``) or update a badge from the form: its template, and its image when one is chosen."""
    context = _admin(change=True)
    template = request.form.get("template", "")
    upload = request.files.get("image")
    chosen = upload is not None and bool(upload.filename)
    document, problems = check_template(template, badge_id, image_chosen=chosen)
    image = upload.stream.read(MAX_IMAGE_BYTES + 1) if upload is not None and chosen else None
    if image is not None:
        reason = svg_problem(image)
        if reason is not None:
            source = source_of(badge_id, document)
            problems.append(TemplateError(source, "image", text("admin.image.bad", reason=reason)))
    if document is None or problems:
        return _editor(context, badge_id, template, problems, status=422)
    admin, actor = services().badge_admin, _actor(context)
    if image is not None:
        store_image(services().settings.badge_templates_dir, str(document["image"]), image)
    try:
        saved = admin.create(document, actor) if badge_id is None else admin.update(badge_id, document, actor)
    except ServiceError as error:  # a change made meanwhile (the same id created, a prerequisite gone)
        key, _, reason = error.message.partition(": ")  # "key: reason", or a sentence about the badge
        key, reason = (key, reason) if re.fullmatch(r"[\w.\[\]]+", key) else ("id", error.message)
        problems = [TemplateError(source_of(badge_id, document), key, reason)]
        return _editor(context, badge_id, template, problems, status=error.status)
    done = "created" if badge_id is None else "saved"
    return _back(context, "admin_pages.edit_badge", badge_id=saved.id, done=done)


# --- failed events ------------------------------------------------------------------------------------------


@admin_pages.get("/failed")
def failed_page() -> Response:
    context = _admin()
    found = failed_events(services().database, limit=FAILED_SHOWN)
    return _page("lti/admin_failed.html", context, section="failed", failed=found, shown=FAILED_SHOWN)


@admin_pages.post("/failed/retry", defaults={"item": None})
@admin_pages.post("/failed/<int(signed=True):item>/retry")
def retry(item: int | None) -> Response:
    """All, or one failed event (positive id) or webhook follow-up (negative id, as the queue lists them)."""
    context = _admin(change=True)
    if item is not None and abs(item) > _ID_MAX:
        raise LaunchRefused("http_404", text("admin.failed.unknown"), 404)
    ids = None if item is None else [item]
    count = retry_failed(services().database, ids)
    log.info("admin.retry", extra={"actor": _actor(context), "ids": ids or "all", "count": count})
    return _back(context, "admin_pages.failed_page", done="retried", count=count)
