"""The fake platform's LTI Advantage services: OAuth2 token endpoint, NRPS, AGS and Dynamic Registration.

``PlatformServices`` is a mixin of ``tests.lti.platform.FakePlatform``; it holds no state of its own and
reads the platform's attributes. Behaviour follows Moodle's mod/lti (token.php, ltiservice_memberships,
ltiservice_gradebookservices, openid-configuration.php, openid-registration.php) or Canvas's docs
(names_and_roles_serializer.rb, registration.md) according to ``platform.kind``, within the LTI Advantage
specs (NRPS 2.0, AGS 2.0, LTI-DR 1.0, 1EdTech Security Framework 1.0 client credentials).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any
from urllib.parse import urlencode

import jwt
import requests

from tests.lti.platform_support import (
    CLAIMS,
    MEDIA_LINEITEM,
    MEDIA_LINEITEMS,
    MEDIA_NRPS,
    MEDIA_RESULTS,
    MEDIA_SCORE,
    SCOPE_LINEITEM,
    SCOPE_LINEITEM_RO,
    SCOPE_NRPS,
    SCOPE_RESULT_RO,
    SCOPE_SCORE,
    TOOL_CONFIGURATION,
    AccessToken,
    DeepLinkingError,
    RecordedRequest,
    Reply,
    accepts,
    content_type,
    error_reply,
    fetch_jwks,
    json_reply,
    key_from_jwks,
    lineitem_problem,
    load_fixture,
    registration_problem,
    score_problem,
    substitute,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
NRPS_PAGE_SIZE = 2
NRPS_CURSOR = "AbC"  # the second page's cursor: case-sensitive, so a lower-cased next URL gets a 400
_READ, _WRITE = {SCOPE_LINEITEM, SCOPE_LINEITEM_RO}, {SCOPE_LINEITEM}
AGS_SCOPES = {  # (method, target) -> the scopes of which the bearer token needs one
    ("GET", "container"): _READ,
    ("POST", "container"): _WRITE,
    ("GET", "item"): _READ,
    ("PUT", "item"): _WRITE,
    ("DELETE", "item"): _WRITE,
    ("POST", "scores"): {SCOPE_SCORE},
    ("GET", "results"): {SCOPE_RESULT_RO},
}


class PlatformServices:
    """Token, NRPS, AGS and Dynamic Registration endpoints; mixed into FakePlatform."""

    kind: str
    client_id: str
    deployment_id: str
    base_url: str
    issuer: str
    token_url: str
    auth_url: str
    jwks_url: str
    registration_url: str
    token_audience: str | None
    tool_jwks_url: str | None
    tool_jwks: dict[str, Any] | None
    ca_bundle: str | None
    allowed_scopes: set[str]
    registration_token: str | None
    registration_client_id: str
    registrations: list[dict[str, Any]]
    scores: list[dict[str, Any]]
    tokens_issued: int
    _lock: threading.Lock
    _tokens: dict[str, AccessToken]
    _used_jti: set[str]
    _used_registration_tokens: set[str]
    _lineitems: dict[str, dict[int, dict[str, Any]]]
    _deep_linking: dict[str, Any] | None
    deep_linking_responses: list[dict[str, Any]]

    # --- OAuth2 client credentials (Security Framework 1.0 §4.1; Moodle mod/lti/token.php) ----------------

    def tool_public_key(
        self, kid: str | None, jwks_url: str | None = None, ca_bundle: str | None = None
    ) -> Any:
        if self.tool_jwks is not None and jwks_url is None:
            return key_from_jwks(self.tool_jwks, kid)
        url = jwks_url or self.tool_jwks_url
        if not url:
            raise LookupError("the harness has neither tool_jwks_url nor tool_jwks to check tool signatures")
        return key_from_jwks(fetch_jwks(url, ca_bundle or self.ca_bundle), kid)

    def _handle_token(self, request: RecordedRequest) -> Reply:
        if request.method != "POST":
            return error_reply(405, "invalid_request", "POST only", Allow="POST")
        if content_type(request) != "application/x-www-form-urlencoded":
            return error_reply(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return error_reply(400, "unsupported_grant_type")
        assertion, scope = form.get("client_assertion", ""), form.get("scope", "")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion or not scope:
            return error_reply(400, "invalid_request", "client_assertion, its type and scope are required")
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
            claimed = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            return error_reply(400, "invalid_request", f"client_assertion is not a JWT: {exc}")
        if claimed.get("sub") != self.client_id:
            return error_reply(401, "invalid_client", "unknown client")
        try:
            claims = jwt.decode(
                assertion,
                self.tool_public_key(kid),
                algorithms=["RS256"],
                audience=[self.token_url, *([self.token_audience] if self.token_audience else [])],
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
                leeway=5,
            )
        except (jwt.PyJWTError, LookupError, ValueError, requests.RequestException) as exc:
            return error_reply(401, "invalid_client", f"client_assertion rejected: {exc}")
        if claims["iss"] != self.client_id:
            return error_reply(401, "invalid_client", "iss and sub must both be the client_id")
        requested = scope.split()
        granted = [item for item in requested if item in self.allowed_scopes]
        # Moodle grants the permitted part of the request; Canvas refuses a request naming any scope its
        # developer key lacks.
        if not granted or (self.kind == "canvas" and len(granted) != len(requested)):
            return error_reply(400, "invalid_scope", f"allowed: {' '.join(sorted(self.allowed_scopes))}")
        token = AccessToken(secrets.token_urlsafe(24), self.client_id, tuple(granted), time.time() + 3600)
        with self._lock:
            if claims["jti"] in self._used_jti:
                return error_reply(400, "invalid_grant", "jti already used")
            self._used_jti.add(claims["jti"])
            self._tokens[token.token] = token
            self.tokens_issued += 1
        body = {
            "access_token": token.token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": " ".join(granted),
        }
        return json_reply(200, body, **{"Cache-Control": "no-store"})

    def revoke_tokens(self) -> None:
        """Forget every access token issued (the next service call answers 401)."""
        with self._lock:
            self._tokens.clear()

    def _bearer(self, request: RecordedRequest, any_of: set[str]) -> AccessToken | Reply:
        scheme, _, value = request.header("Authorization").partition(" ")
        with self._lock:
            token = self._tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or token.expires_at < time.time():
            return error_reply(401, "invalid_token", **{"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if not any_of & set(token.scopes):
            return error_reply(403, "insufficient_scope", f"needs one of {sorted(any_of)}")
        return token

    # --- NRPS 2.0 ---------------------------------------------------------------------------------------

    def context_meta(self, context: str) -> dict[str, str]:
        claims = load_fixture(self.kind)
        if claims[CLAIMS["nrps"]]["context_memberships_url"].rsplit("/", 1)[-1] == context:
            return {key: claims[CLAIMS["context"]][key] for key in ("id", "label", "title")}
        return {"id": context, "label": f"COURSE{context}", "title": f"Course {context}"}

    def members(self, rlid: str | None = None) -> list[dict[str, Any]]:
        """The roster as the platform serialises it (fixture ``_nrps_members``); ``message`` if rlid."""
        people = substitute(load_fixture(self.kind)["_nrps_members"], self.base_url)
        return people if rlid else [{k: v for k, v in person.items() if k != "message"} for person in people]

    def _handle_nrps(self, request: RecordedRequest, context: str) -> Reply:
        if request.method != "GET":
            return error_reply(405, "invalid_request", "GET only", Allow="GET")
        token = self._bearer(request, {SCOPE_NRPS})
        if isinstance(token, Reply):
            return token
        if not accepts(request, MEDIA_NRPS):
            return error_reply(406, "not_acceptable", f"this endpoint serves {MEDIA_NRPS}")
        query = request.query
        rlid = query.get("rlid", [""])[-1]
        members = self.members(rlid)
        keep = [("rlid", rlid)] if rlid else []
        first = f"{self.base_url}/nrps/{context}" + (f"?{urlencode(keep)}" if keep else "")
        second = (
            f"{self.base_url}/nrps/{context}?{urlencode([*keep, ('page', '2'), ('cursor', NRPS_CURSOR)])}"
        )
        if "page" not in query and "cursor" not in query:
            page, rels = members[:NRPS_PAGE_SIZE], [(first, "current"), (second, "next")]
        elif query.get("page") == ["2"] and query.get("cursor") == [NRPS_CURSOR]:
            page, rels = members[NRPS_PAGE_SIZE:], [(second, "current")]
        else:
            return error_reply(400, "invalid_request", "unknown page or cursor (cursors are case-sensitive)")
        if self.kind == "canvas":  # Api.paginate: current, next, first, last
            rels += [(first, "first"), (second, "last")]
        else:  # Moodle: only rel="next"
            rels = [(url, rel) for url, rel in rels if rel == "next"]
        link = ",".join(f'<{url}>; rel="{rel}"' for url, rel in rels)
        body = {"id": self.base_url + request.path, "context": self.context_meta(context), "members": page}
        return json_reply(200, body, MEDIA_NRPS, **({"Link": link} if link else {}))

    # --- AGS 2.0 ----------------------------------------------------------------------------------------

    def lineitem_url(self, context: str, item: int) -> str:
        if self.kind == "moodle":  # gradebookservices: .../lineitems/{id}/lineitem?type_id={typeid}
            return f"{self.base_url}/ags/{context}/lineitems/{item}/lineitem?type_id={self.deployment_id}"
        return f"{self.base_url}/ags/{context}/lineitems/{item}"

    def lineitems(self, context: str) -> dict[int, dict[str, Any]]:
        """A context's line items by number; number 1 (the launch's ``lineitem``) exists from the start."""
        link = load_fixture(self.kind).get(CLAIMS["resource_link"], {})
        first = {
            "label": link.get("title", "Badges"),
            "scoreMaximum": 100,
            "resourceLinkId": link.get("id", ""),
        }
        with self._lock:
            return self._lineitems.setdefault(context, {1: first})

    def _show_lineitem(self, context: str, item: int) -> dict[str, Any]:
        return {"id": self.lineitem_url(context, item), **self.lineitems(context)[item]}

    def _handle_ags(self, request: RecordedRequest, context: str, item: int | None, sub: str | None) -> Reply:
        target = "container" if item is None else sub or "item"
        scopes = AGS_SCOPES.get((request.method, target))
        if scopes is None:
            return error_reply(405, "invalid_request", f"{request.method} not allowed here")
        token = self._bearer(request, scopes)
        if isinstance(token, Reply):
            return token
        items = self.lineitems(context)
        number = item or 0
        if item is not None and item not in items:
            return error_reply(404, "not_found", f"no line item {item}")
        if request.method == "GET" and target in ("container", "item"):
            media = MEDIA_LINEITEMS if target == "container" else MEDIA_LINEITEM
            if not accepts(request, media):
                return error_reply(406, "not_acceptable", media)
            if target == "item":
                return json_reply(200, self._show_lineitem(context, number), media)
            shown = [self._show_lineitem(context, each) for each in sorted(items)]
            for param, key in (
                ("tag", "tag"),
                ("resource_link_id", "resourceLinkId"),
                ("resource_id", "resourceId"),
            ):
                if param in request.query:
                    shown = [line for line in shown if line.get(key) == request.query[param][-1]]
            return json_reply(200, shown, media)
        if request.method in ("POST", "PUT") and target in ("container", "item"):
            if content_type(request) != MEDIA_LINEITEM:
                return error_reply(415, "unsupported_media_type", f"send {MEDIA_LINEITEM}")
            problem, line = lineitem_problem(request)
            if problem:
                return error_reply(400, "invalid_request", problem)
            with self._lock:
                number = number or max(items, default=0) + 1
                items[number] = line
            return json_reply(
                201 if item is None else 200, self._show_lineitem(context, number), MEDIA_LINEITEM
            )
        if request.method == "DELETE":
            with self._lock:
                items.pop(number, None)
            return Reply(204)
        if target == "scores":
            return self._score(request, context, number)
        return self._results(request, self.lineitem_url(context, number))

    def _score(self, request: RecordedRequest, context: str, item: int) -> Reply:
        if content_type(request) != MEDIA_SCORE:
            return error_reply(415, "unsupported_media_type", f"send {MEDIA_SCORE}")
        try:
            score = request.json()
        except ValueError:
            return error_reply(400, "invalid_request", "the body is not JSON")
        problem = score_problem(score)
        if problem:
            return error_reply(400, "invalid_request", problem)
        url = self.lineitem_url(context, item)
        with self._lock:
            self.scores.append({"context": context, "lineitem": item, "lineitem_url": url, "score": score})
        if self.kind == "canvas":  # Canvas answers with the result's URL
            return json_reply(200, {"resultUrl": f"{url}/results/{score['userId']}"})
        return Reply(200)

    def _results(self, request: RecordedRequest, url: str) -> Reply:
        if not accepts(request, MEDIA_RESULTS):
            return error_reply(406, "not_acceptable", MEDIA_RESULTS)
        latest = {row["score"]["userId"]: row["score"] for row in self.scores if row["lineitem_url"] == url}
        wanted = request.query.get("user_id", [None])[-1]
        results = []
        for user, score in latest.items():
            if wanted in (None, user):
                result = {"id": f"{url.split('?')[0]}/results/{user}", "scoreOf": url, "userId": user}
                result |= {"resultScore": score.get("scoreGiven"), "resultMaximum": score.get("scoreMaximum")}
                results.append({key: value for key, value in result.items() if value is not None})
        return json_reply(200, results, MEDIA_RESULTS)

    # --- Dynamic Registration (LTI-DR 1.0) --------------------------------------------------------------

    def openid_configuration(self) -> dict[str, Any]:
        """The platform's OpenID configuration (the fixture's ``_openid_configuration``) with this issuer."""
        return {
            **substitute(load_fixture(self.kind)["_openid_configuration"], self.base_url),
            "issuer": self.issuer,
        }

    def _registration_bearer(self, request: RecordedRequest) -> Reply | None:
        scheme, _, value = request.header("Authorization").partition(" ")
        if scheme.lower() != "bearer" or not value.strip() or value.strip() != self.registration_token:
            return error_reply(401, "invalid_token", "missing or wrong registration token")
        return None

    def _handle_openid_configuration(self, request: RecordedRequest) -> Reply:
        if request.method != "GET":
            return error_reply(405, "invalid_request", "GET only", Allow="GET")
        return self._registration_bearer(request) or json_reply(200, self.openid_configuration())

    def _handle_register(self, request: RecordedRequest) -> Reply:
        if request.method != "POST":
            return error_reply(405, "invalid_request", "POST only", Allow="POST")
        refused = self._registration_bearer(request)
        if refused:
            return refused
        if self.registration_token in self._used_registration_tokens:
            return error_reply(401, "token_already_used")
        try:
            metadata = request.json()
        except ValueError:
            return error_reply(400, "invalid_client_metadata", "the body is not JSON")
        problem = registration_problem(metadata, self.kind)
        if problem:
            return error_reply(400, "invalid_client_metadata", problem)
        with self._lock:
            self._used_registration_tokens.add(self.registration_token or "")
            self.registrations.append(metadata)
            number = len(self.registrations)
        if self.kind == "moodle":  # the token's sub is the client id; the new tool type id the deployment id
            client_id, deployment_id = self.registration_client_id, str(int(self.deployment_id) + number)
        else:
            client_id, deployment_id = f"1000000000{number:04d}", f"{12653 + number}:{secrets.token_hex(20)}"
        configuration = {**metadata[TOOL_CONFIGURATION], "deployment_id": deployment_id}
        return json_reply(200, {**metadata, "client_id": client_id, TOOL_CONFIGURATION: configuration})

    # --- Deep Linking 2.0 response ---------------------------------------------------------------------

    def verify_deep_linking_response(
        self, token: str, tool_jwks_url: str | None = None, ca_bundle: str | None = None
    ) -> dict[str, Any]:
        """Check an LtiDeepLinkingResponse as the platform does; return its claims or raise DeepLinkingError.

        Checked against the last deep linking request minted: RS256 signature by the tool's key (JWKS fetched
        from ``tool_jwks_url`` or the harness's), iss = client_id, aud = the platform issuer, exp/iat/nonce
        present, message_type, version, deployment_id, ``data`` echoed, item types accepted, multiplicity.
        """
        request = self._deep_linking or {"iss": self.issuer, "deployment_id": self.deployment_id}
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "RS256":
                raise DeepLinkingError(f"alg {header.get('alg')!r} refused: RS256 only")
            claims = jwt.decode(
                token,
                self.tool_public_key(header.get("kid"), tool_jwks_url, ca_bundle),
                algorithms=["RS256"],
                audience=request["iss"],
                issuer=self.client_id,
                options={"require": ["iss", "aud", "exp", "iat", "nonce"]},
                leeway=5,
            )
        except (jwt.PyJWTError, LookupError, ValueError, OSError) as exc:
            raise DeepLinkingError(f"JWT refused: {exc}") from exc
        items = claims.get(CLAIMS["content_items"], [])
        accepted = request.get("accept_types", ["ltiResourceLink"])
        listed = items if isinstance(items, list) else [None]
        typed = all(isinstance(item, dict) and item.get("type") in accepted for item in listed)
        single = request.get("accept_multiple") in (False, "false")  # Moodle sends "true"/"false" strings
        for passed, what in [
            (claims.get(CLAIMS["message_type"]) == "LtiDeepLinkingResponse", "message_type"),
            (claims.get(CLAIMS["version"]) == "1.3.0", "version"),
            (claims.get(CLAIMS["deployment_id"]) == request["deployment_id"], "deployment_id"),
            ("data" not in request or claims.get(CLAIMS["data"]) == request["data"], "data (not echoed)"),
            (typed, f"content_items (types accepted: {accepted})"),
            (len(listed) <= 1 or not single, "content_items (one only)"),
        ]:
            if not passed:
                raise DeepLinkingError(f"wrong {what}")
        return claims

    def _handle_deep_linking_return(self, request: RecordedRequest) -> Reply:
        if request.method != "POST":
            return error_reply(405, "invalid_request", "POST only", Allow="POST")
        try:
            claims = self.verify_deep_linking_response(request.form().get("JWT", ""))
        except DeepLinkingError as exc:
            return Reply(400, str(exc).encode(), {"Content-Type": "text/plain; charset=utf-8"})
        with self._lock:
            self.deep_linking_responses.append(claims)
        return Reply(200, b"<!DOCTYPE html><p>Content added.</p>", {"Content-Type": "text/html"})
