"""The LTI 1.3 tool's protocol endpoints: login, launch, keys, configuration, Dynamic Registration,
Deep Linking. Thin: each parses, calls ``bridge.lti``, and renders.

Every refusal is a readable page that fits in the LMS's iframe (never a 500), logged with its reason and
counted in ``bridge_lti_refusals``. Pages after a launch carry the launch token (``lt``) instead of a
cookie, which browsers block in third-party iframes, and every POST carries the launch's CSRF token.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import requests
from flask import (
    Blueprint,
    Response,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from pylti1p3.contrib.flask import FlaskRequest

from bridge.lti.dynamic_registration import RegistrationRefused, fetch_platform_configuration
from bridge.lti.dynamic_registration import register as register_tool
from bridge.lti.launch import LaunchRefused
from bridge.lti.registry import store_dynamic_registration
from bridge.lti.tool import DeepLinkItem, LtiTool
from bridge.lti.tool_config import canvas_developer_key
from bridge.services.badge_admin import list_badges
from bridge.web.context import services
from bridge.web.pages import check_csrf, launch_context, register_refusal_pages

lti = Blueprint("lti", __name__, url_prefix="/lti")
_STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


def tool() -> LtiTool:
    return services().lti


def _page(template: str, status: int = 200, **values: Any) -> Response:
    response = make_response(render_template(template, **values), status)
    # The launch token is in the URL: never send it on to another site.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


register_refusal_pages(lti)


@lti.route("/login", methods=["GET", "POST"])
def login() -> Any:
    return tool().login(FlaskRequest())


@lti.post("/launch")
def launch() -> Any:
    context, validated = tool().launch(FlaskRequest())
    token = tool().tokens.token(context.launch_id)
    if validated.is_deep_link_launch():
        return _page(
            "lti/deep_linking.html",
            context=context,
            token=token,
            csrf=tool().tokens.csrf(context.launch_id),
            badges=list_badges(services().database),
        )
    # A link placed by Deep Linking for one badge carries it as a custom parameter.
    custom = context.claims.get("https://purl.imsglobal.org/spec/lti/claim/custom") or {}
    badge = custom.get("bridge_badge") if isinstance(custom, dict) else None
    if context.course is not None:
        page = url_for(
            "learner_pages.course_page", course=context.course, lt=token, badge=badge, _external=True
        )
        return redirect(page, 303)
    return redirect(url_for("learner_pages.my_page", lt=token, _external=True), 303)


@lti.post("/deep-link")
def deep_link() -> Response:
    context = launch_context()
    check_csrf(context)
    if not context.is_instructor:
        raise LaunchRefused("not_allowed", "Only instructors can place badges in a course.", 403)
    choice = request.form.get("item", "")
    launch_url = tool().description.launch_url
    if choice == "board":
        items = [DeepLinkItem("Course badges", launch_url, {"bridge_view": "board"})]
    else:
        badges = {b.id: b for b in list_badges(services().database)}
        if choice not in badges:
            raise LaunchRefused("bad_choice", "Choose the course badges or one of the badges.", 422)
        items = [DeepLinkItem(badges[choice].name, launch_url, {"bridge_badge": choice})]
    jwt_value, return_url = tool().deep_linking_response(context, items)
    return _page("lti/deep_linking_response.html", jwt=jwt_value, return_url=return_url)


@lti.get("/register")
def dynamic_registration() -> Response:
    """LTI Dynamic Registration: the platform opens this URL (from ``badge-bridge lti invite``) with
    ``openid_configuration`` and ``registration_token``; the registration is stored pending."""
    platform_id = tool().invited_platform(request.args.get("invite"))
    if platform_id is None:
        raise LaunchRefused(
            "bad_invite", "This registration link is not valid or has expired: ask for a new one.", 403
        )
    configuration_url = request.args.get("openid_configuration")
    if not configuration_url:
        raise LaunchRefused("bad_registration", "The platform did not send its openid_configuration.")
    token = request.args.get("registration_token")
    try:
        with requests.Session() as http:
            platform = fetch_platform_configuration(configuration_url, token, http)
            registered = register_tool(tool().description, platform, token, http)
    except RegistrationRefused as error:
        raise LaunchRefused(
            "bad_registration", f"The registration failed: {error}.", 502 if error.status else 400
        ) from None
    stored = store_dynamic_registration(services().database, registered, platform_id)
    log.info(
        "lti.registered", extra={"registration": stored.id, "issuer": stored.issuer, "platform": platform_id}
    )
    message = (
        f"The badges tool is registered (number {stored.id}). An administrator of the badge service must "
        "approve it before it can be launched."
    )
    return _page("lti/registered.html", message=message)


@lti.get("/jwks.json")
def jwks() -> Response:
    response = jsonify(tool().jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@lti.get("/canvas.json")
def canvas_json() -> Response:
    return jsonify(canvas_developer_key(tool().description))


@lti.get("/icon.svg")
def icon() -> Response:
    return send_from_directory(_STATIC, "lti-icon.svg", mimetype="image/svg+xml", max_age=86400)


@lti.get("/scripts/<any(admin, autosubmit, registered, toasts):name>.js")
def static_script(name: str) -> Response:
    # Served by the tool itself (no CDN), a file rather than inline script so a strict CSP can hold.
    return send_from_directory(_STATIC, f"{name}.js", mimetype="text/javascript", max_age=3600)
