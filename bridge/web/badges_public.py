"""Public Open Badges URLs under ``/ob``: JSON-LD for verifiers, HTML pages for people.

Thin views over :class:`bridge.issuing.publisher.Publisher`. Content negotiation on the assertion URL:
a client that prefers ``text/html`` (a browser) gets the badge page, anyone else the JSON-LD. These URLs
need no API key: verifiers and backpacks anywhere must be able to read them.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast
from urllib.parse import urlencode

from flask import Blueprint, Response, render_template, request

from bridge.domain import ob2, ob3
from bridge.issuing.keys import ALGORITHMS, Algorithm
from bridge.issuing.publisher import Publisher
from bridge.issuing.records import AwardRecord, public_profile
from bridge.issuing.signing import VC_JWT_MEDIA_TYPE
from bridge.web.context import services
from bridge.web.errors import ApiError

badges_public = Blueprint(
    "badges_public",
    __name__,
    url_prefix="/ob",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
_JSON_TYPES = ["application/ld+json", "application/json"]
_VC_JWT = "application/vc+jwt"
# Award ids are 64-bit: both databases refuse a larger integer outright (a 500). The last status list is
# the last whose id range ends within 64 bits (the one after it would hold only the top 2^17 ids).
_LAST_STATUS_LIST = (2**63 - 1) // ob3.STATUS_LIST_BITS - 1
# What Publisher.public_id writes: the award id and a MAC in lower-case hex. Anything else is no award
# (and some of it, non-ASCII text, hmac.compare_digest refuses with a TypeError).
_PUBLIC_ID = re.compile(r"[0-9]{1,18}-[0-9a-f]{20}")


@badges_public.url_value_preprocessor
def _nothing_stored_has_nul(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """A path value with NUL names nothing stored (PostgreSQL refuses NUL in text: it was a 500)."""
    if values and any(isinstance(value, str) and "\x00" in value for value in values.values()):
        raise ApiError(404, "not_found", "nothing is published at this address")


def _publisher() -> Publisher:
    return services().publisher


def _wants_html() -> bool:
    return request.accept_mimetypes.best_match([*_JSON_TYPES, "text/html"]) == "text/html"


def _document(document: dict[str, Any] | None, what: str, status: int = 200) -> Response:
    if document is None:
        raise ApiError(404, "not_found", f"no such {what}")
    mimetype = request.accept_mimetypes.best_match(_JSON_TYPES) or _JSON_TYPES[0]
    response = Response(json.dumps(document, ensure_ascii=False), status, mimetype=mimetype)
    # Verifiers and backpacks running in browsers on other origins read these documents.
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _html(template: str, status: int, /, **context: Any) -> Response:
    response = Response(render_template(template, **context), status, mimetype="text/html")
    # Pages carry only our own stylesheet and images (badge and issuer images may live elsewhere).
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src * data:; style-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return response


def _file(content: bytes | str | None, mimetype: str, what: str) -> Response:
    if content is None:
        raise ApiError(404, "not_found", f"no such {what}")
    response = Response(content, mimetype=mimetype)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _award(public_id: str, *, live: bool = False) -> AwardRecord:
    """The award behind ``public_id``; ``live``: a revoked one answers 410 (no downloads of it)."""
    record = _publisher().record(public_id) if _PUBLIC_ID.fullmatch(public_id) else None
    if record is None:
        raise ApiError(404, "unknown_assertion", "no badge at this address")
    if live and record.revoked_at is not None:
        raise ApiError(
            410, "revoked", f"this badge was revoked: {record.revoked_reason or 'no reason given'}"
        )
    return record


@badges_public.get("/issuers/<iid>")
def issuer(iid: str) -> Response:
    found = _publisher().issuer(iid)
    return _document(None if found is None else ob2.issuer_profile(found), "issuer")


@badges_public.get("/issuers/<iid>/revocations")
def revocation_list(iid: str) -> Response:
    return _document(_publisher().revocation_list(iid), "issuer")


@badges_public.get("/issuers/<iid>/keys/<kid>")
def issuer_key(iid: str, kid: str) -> Response:
    return _document(_publisher().ob2_key(iid, kid), "key")


@badges_public.get("/issuers/<iid>/badges/<badge_id>", defaults={"tier": ""})
@badges_public.get("/issuers/<iid>/badges/<badge_id>/tiers/<tier>")
def badge_class(iid: str, badge_id: str, tier: str) -> Response:
    return _document(_publisher().badge_class(iid, badge_id, tier), "badge")


@badges_public.get(f"/issuers/<iid>/status/<int(max={_LAST_STATUS_LIST}):number>")
def status_list(iid: str, number: int) -> Response:
    """The status list credential: JSON, or signed as a VC-JWT for ``Accept: application/vc+jwt``."""
    if request.accept_mimetypes.best_match([*_JSON_TYPES, _VC_JWT]) == _VC_JWT:
        token = _publisher().status_list_jwt(iid, number)
        response = _file(token, _VC_JWT, "status list")
    else:
        response = _document(_publisher().status_list(iid, number), "status list")
    response.vary.add("Accept")
    # Verifiers may cache a status list; a revocation must reach them within minutes.
    response.cache_control.max_age = 300
    return response


@badges_public.get("/images/<badge_id>.png")
def image_png(badge_id: str) -> Response:
    return _file(_publisher().image_png(badge_id), "image/png", "badge image")


@badges_public.get("/images/<badge_id>.svg")
def image_svg(badge_id: str) -> Response:
    return _file(_publisher().image_svg(badge_id), "image/svg+xml", "badge image")


@badges_public.get("/jwks.json")
def jwks() -> Response:
    return _document(_publisher().jwks(), "key set")


@badges_public.get("/keys/<kid>")
def jwk(kid: str) -> Response:
    return _document(_publisher().jwk(kid), "key")


@badges_public.get("/assertions/<public_id>")
def assertion(public_id: str) -> Response:
    publisher = _publisher()
    record = _award(public_id)
    revoked = record.revoked_at is not None
    if _wants_html():
        response = _html("badges/assertion.html", 410 if revoked else 200, **_page(publisher, record))
    elif revoked:  # hosted revocation (OB 2.0 §Revocation): 410 Gone with the stripped assertion
        stripped = ob2.revoked_assertion(publisher.issued(record).id, record.revoked_reason)
        response = _document(stripped, "assertion", 410)
    else:
        response = _document(publisher.assertion(record), "assertion")
    response.vary.add("Accept")  # one URL, two representations: caches must keep them apart
    return response


@badges_public.get("/assertions/<public_id>/assertion.jws")
def assertion_jws(public_id: str) -> Response:
    record = _award(public_id, live=True)
    if not _publisher().is_signed(record):
        raise ApiError(404, "not_signed", "this issuer publishes hosted assertions, not signed ones")
    return _file(_publisher().signed_assertion(record), "text/plain", "assertion")


@badges_public.get("/assertions/<public_id>/badge.png")
def baked_png(public_id: str) -> Response:
    return _file(_publisher().baked_png(_award(public_id, live=True), 2), "image/png", "badge image")


@badges_public.get("/assertions/<public_id>/badge.svg")
def baked_svg(public_id: str) -> Response:
    return _file(_publisher().baked_svg(_award(public_id, live=True), 2), "image/svg+xml", "badge image")


@badges_public.get("/assertions/<public_id>/credential")
def credential(public_id: str) -> Response:
    return _document(_publisher().credential(_award(public_id)), "credential")


@badges_public.get("/assertions/<public_id>/credential.jwt")
def credential_jwt(public_id: str) -> Response:
    alg = request.args.get("alg", "RS256")
    if alg not in ALGORITHMS:
        raise ApiError(422, "invalid_query", f"alg: expected one of {', '.join(ALGORITHMS)}, got {alg!r}")
    record = _award(public_id, live=True)
    return _file(_publisher().credential_jwt(record, cast(Algorithm, alg)), VC_JWT_MEDIA_TYPE, "credential")


@badges_public.get("/assertions/<public_id>/credential.png")
def credential_png(public_id: str) -> Response:
    return _file(_publisher().baked_png(_award(public_id, live=True), 3), "image/png", "badge image")


@badges_public.get("/assertions/<public_id>/credential.svg")
def credential_svg(public_id: str) -> Response:
    return _file(_publisher().baked_svg(_award(public_id, live=True), 3), "image/svg+xml", "badge image")


@badges_public.get("/profiles/<token>")
def profile(token: str) -> Response:
    found = public_profile(services().database, token)
    if found is None:
        raise ApiError(404, "unknown_profile", "no public badge profile at this address")
    publisher = _publisher()
    badges = [_page(publisher, record) for record in found.awards]
    return _html("badges/profile.html", 200, name=found.name, badges=badges)


def _page(publisher: Publisher, record: AwardRecord) -> dict[str, Any]:
    """What the badge page shows (also each entry of a public profile)."""
    iid = publisher.issuer_key(record.platform)
    issuer = publisher.issuer(iid)
    assert issuer is not None
    badge = publisher.achievement(iid, record.badge, record.tier)
    page_url = publisher.assertion_url(record.award_id)
    status = publisher.status_of(record)
    linkedin = "https://www.linkedin.com/profile/add?" + urlencode(
        {
            "startTask": "CERTIFICATION_NAME",
            "name": badge.name,
            "organizationName": issuer.name,
            "issueYear": record.awarded_at.year,
            "issueMonth": record.awarded_at.month,
            **(
                {"expirationYear": record.expires_at.year, "expirationMonth": record.expires_at.month}
                if record.expires_at
                else {}
            ),
            "certUrl": page_url,
            "certId": publisher.public_id(record.award_id),
        }
    )
    return {
        "badge": badge,
        "issuer": issuer,
        "record": record,
        "page_url": page_url,
        "status": status,
        "signed": publisher.is_signed(record),
        "linkedin_url": linkedin,
        "evidence": record.evidence,
    }
