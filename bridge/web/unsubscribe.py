"""The link in every award email that stops them: ``/notifications/unsubscribe/<token>``.

A mail client's one-click button POSTs ``List-Unsubscribe=One-Click`` (RFC 8058) and is answered at once.
A person who follows the link gets a page with a button: a GET changes nothing, because mail scanners
fetch the links of messages they check. The same page turns the emails back on.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request

from bridge.notify.opt_out import emails_wanted, learner_of, set_emails_wanted
from bridge.web.context import services
from bridge.web.errors import ApiError

unsubscribe = Blueprint("unsubscribe", __name__, url_prefix="/notifications/unsubscribe")
_ACTOR = "learner (email link)"


def _learner(token: str) -> int:
    learner = learner_of(services().publisher.keys.secret, token)
    if learner is None or emails_wanted(services().database, learner) is None:
        raise ApiError(404, "not_found", "this link is not valid: use the one in your latest badge email")
    return learner


@unsubscribe.get("/<token>")
def page(token: str) -> Response:
    learner = _learner(token)
    return _page(token, emails_wanted(services().database, learner) is True, done=False)


@unsubscribe.post("/<token>")
def choose(token: str) -> Response:
    learner = _learner(token)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    wanted = not one_click and request.form.get("emails") == "on"
    set_emails_wanted(services().database, learner, wanted, actor=_ACTOR)
    return _page(token, wanted, done=True)


def _page(token: str, wanted: bool, *, done: bool) -> Response:
    html = render_template("badges/unsubscribe.html", token=token, wanted=wanted, done=done)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the address
    return response
