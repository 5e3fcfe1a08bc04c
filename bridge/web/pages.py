"""What every page inside the LMS shares: the launch it acts for (from its launch token, not a cookie,
which browsers block in a third-party frame), CSRF on every change, and the headers of a page that may
be framed only by the platform that launched it."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, make_response, render_template, request
from pylti1p3.exception import LtiException, OIDCException
from werkzeug.exceptions import HTTPException

from bridge import metrics
from bridge.lti.launch import LaunchRefused, origin
from bridge.lti.sessions import LaunchContext
from bridge.web.context import services

log = logging.getLogger(__name__)
TOKEN_HEADER = "X-Launch-Token"
CSRF_HEADER = "X-CSRF-Token"


def launch_context() -> LaunchContext:
    """The launch this request acts for; a readable 401 page when its token is missing or expired."""
    token = request.values.get("lt") or request.headers.get(TOKEN_HEADER)
    context = services().lti.context(token)
    if context is None:
        raise LaunchRefused(
            "session_expired", "This page has expired. Open the tool again from your course.", 401
        )
    return context


def check_csrf(context: LaunchContext) -> None:
    given = request.form.get("csrf") or request.headers.get(CSRF_HEADER)
    if not services().lti.tokens.csrf_matches(context.launch_id, given):
        raise LaunchRefused("bad_csrf", "The form was not sent from the tool's own page.", 403)


def frame_ancestors(context: LaunchContext) -> str:
    """The launching platform's origins: its issuer and the LMS host the settings name (Canvas's issuer
    is canvas.instructure.com while it frames the tool from the school's own host)."""
    origins = {"'self'"}
    for url in (context.claims.get("iss"), _base_url(context.platform)):
        if isinstance(url, str) and urlsplit(url).scheme in ("https", "http") and urlsplit(url).netloc:
            origins.add(origin(url))
    return " ".join(sorted(origins))


def _base_url(platform_id: str) -> str | None:
    platform = services().settings.platform(platform_id)
    return str(platform.base_url) if platform is not None and platform.base_url else None


def render_page(template: str, context: LaunchContext, status: int = 200, **values: Any) -> Response:
    tokens = services().lti.tokens
    values |= {
        "context": context,
        "token": tokens.token(context.launch_id),
        "csrf": tokens.csrf(context.launch_id),
    }
    response = make_response(render_template(template, **values), status)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        f"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors(context)}"
    )
    # The launch token is in the page's URL: never send it on to another site.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def refusal_page(error: LaunchRefused) -> Response:
    """A refused launch or page: readable, fits in the LMS frame, logged with its reason and counted."""
    metrics.LTI_REFUSALS.labels(error.reason).inc()
    log.warning("lti.refused", extra={"reason": error.reason, "status": error.status, "path": request.path})
    response = make_response(
        render_template("lti/error.html", message=error.message, reason=error.reason), error.status
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def register_refusal_pages(blueprint: Blueprint) -> None:
    """Every refusal of the blueprint's views as a page, never a 500 or a JSON body."""
    blueprint.register_error_handler(LaunchRefused, refusal_page)

    def library(error: Exception) -> Response:
        return refusal_page(LaunchRefused("bad_message", f"The launch request is not valid: {error}."))

    def http(error: HTTPException) -> Response:
        status = error.code or 400
        if status >= 500:
            raise error
        return refusal_page(LaunchRefused(f"http_{status}", error.description or error.name, status))

    blueprint.register_error_handler(LtiException, library)
    blueprint.register_error_handler(OIDCException, library)
    blueprint.register_error_handler(HTTPException, http)
