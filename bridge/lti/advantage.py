"""LTI Advantage service calls from the tool to a platform: OAuth 2.0 client-credentials tokens, Names and
Role Provisioning Services 2.0 (the roster) and Assignment and Grade Services 2.0 (line items, scores).

Our own client rather than pylti1p3's ``ServiceConnector``, which sets no timeouts, caches tokens per
instance (a token per request, which Canvas rate-limits: dmitry-viskov/pylti1.3 #89) and lower-cases NRPS
next-page URLs (pylti1.3 PR #139). Requests go through :class:`connectors.http.HttpClient`: a timeout on
every call, retries with full-jitter backoff that honour ``Retry-After``.

Only URLs handed in by the caller are called; the caller takes them from a validated launch of the same
registration (reference/lti.md §4.11, SSRF). Paging never leaves the first URL's host. Access tokens and
client assertions are never logged and never put in an exception message.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import jwt
import requests

from bridge.issuing.keys import SigningKey
from connectors.http import HttpClient, HttpPolicy, LmsError, Retryable, retry_after

log = logging.getLogger(__name__)

NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
LINEITEM_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
MEMBERSHIPS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
LINEITEMS_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CUSTOM_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/custom"
ASSERTION_LIFETIME = 300  # seconds; the assertion is used at once
DEFAULT_EXPIRES_IN = 3600.0  # what Moodle and Canvas issue; a 401 refreshes sooner if they revoke
# Interactive callers (an instructor's page) wait for these calls: shorter than the nightly sync's policy.
DEFAULT_POLICY = HttpPolicy(timeout=10.0, attempts=4, backoff_base=0.5, backoff_max=20.0)

ActivityProgress = Literal["Initialized", "Started", "InProgress", "Submitted", "Completed"]
GradingProgress = Literal["FullyGraded", "Pending", "PendingManual", "Failed", "NotReady"]
TokenKey = tuple[str, str, frozenset[str]]  # (issuer, client_id, scopes)
_SEND_LINEITEM = {"Accept": LINEITEM_TYPE, "Content-Type": LINEITEM_TYPE}
_SEND_SCORE = {"Accept": "application/json", "Content-Type": SCORE_TYPE}
_MEMBER_TEXT = ("name", "given_name", "family_name", "email", "lis_person_sourcedid")


class AdvantageError(LmsError):
    """A token or service call failed, or the platform answered something unusable. Never holds a token."""


class ServiceRefused(AdvantageError):
    """The platform answered 3xx/4xx (not 429): not worth retrying. ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TokenRejected(ServiceRefused):
    """401: the bearer token was refused (revoked, expired early, clocks apart); a fresh token may work."""


@dataclass(frozen=True, slots=True)
class ToolRegistration:
    """The tool's registration with one platform, keyed by (issuer, client_id): Canvas shares one issuer
    across all its tenants, so a client id alone tells registrations apart (reference/lti.md §4.3)."""

    issuer: str
    client_id: str
    token_url: str
    audience: str | None = None  # the assertion's ``aud`` if not the token URL (pylti1p3's auth_audience)


@dataclass(frozen=True, slots=True)
class Member:
    """One NRPS 2.0 member. ``user_id`` is the LTI ``sub``: Moodle's user id itself, an opaque id on Canvas,
    whose Canvas user id comes in a custom field of ``message`` (when asked for with ``rlid``)."""

    user_id: str
    roles: tuple[str, ...]
    status: str = "Active"  # NRPS 2.0: a member without a status is Active
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    email: str | None = None
    lis_person_sourcedid: str | None = None
    message: tuple[Mapping[str, Any], ...] = ()  # the launch claims this member would get (NRPS 2.0 "rlid")

    def custom(self, name: str) -> str | None:
        """A custom parameter from the member's message claims, e.g. Canvas's ``canvas_user_id``."""
        for claims in self.message:
            custom = claims.get(CUSTOM_CLAIM)
            if isinstance(custom, Mapping) and custom.get(name) is not None:
                return str(custom[name])
        return None


@dataclass(frozen=True, slots=True)
class LineItem:
    """An AGS 2.0 line item (a gradebook column); ``id`` is its URL."""

    id: str
    label: str
    tag: str | None
    score_maximum: float
    resource_id: str | None = None


@dataclass(slots=True)
class _Cached:
    token: str = field(repr=False)
    good_until: float


class AccessTokenCache:
    """Access tokens per (issuer, client_id, scopes), shared by every client in the process, so a roster and
    a hundred scores cost one token request, not one each. Never shared across client ids: on Canvas every
    tenant's developer key has its own. Thread-safe; one fetch per key at a time, other keys go on."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, margin: float = 60.0) -> None:
        self._clock = clock
        self._margin = margin  # renew this early, so a token does not expire on its way to the platform
        self._entries: dict[TokenKey, _Cached] = {}
        self._locks: dict[TokenKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: TokenKey, fetch: Callable[[], tuple[str, float]]) -> str:
        """The cached token for ``key``, or a new one from ``fetch() -> (token, expires_in seconds)``."""
        with self._key_lock(key):
            entry = self._entries.get(key)
            if entry is None or self._clock() >= entry.good_until:
                token, expires_in = fetch()
                margin = min(self._margin, expires_in / 2)  # a short-lived token is still reused a little
                entry = self._entries[key] = _Cached(token, self._clock() + expires_in - margin)
            return entry.token

    def drop(self, key: TokenKey, token: str) -> None:
        """Forget ``token`` after a 401, unless another thread has already replaced it."""
        with self._key_lock(key):
            entry = self._entries.get(key)
            if entry is not None and entry.token == token:
                del self._entries[key]

    def _key_lock(self, key: TokenKey) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())


class AdvantageClient:
    """NRPS and AGS calls for one registration, with tokens from a shared :class:`AccessTokenCache`."""

    def __init__(
        self,
        registration: ToolRegistration,
        key: SigningKey,
        tokens: AccessTokenCache,
        policy: HttpPolicy = DEFAULT_POLICY,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if key.alg != "RS256":
            raise ValueError("LTI client assertions are signed with RS256 (1EdTech Security Framework §6)")
        self.registration = registration
        self._key, self._tokens, self._clock = key, tokens, clock
        # Service URLs come from launches and the token endpoint is often on another host (Canvas: sso.*).
        self._http = HttpClient(
            registration.token_url, policy, classify=_classify, sleep=sleep, any_origin=True
        )

    def close(self) -> None:
        self._http.close()

    def members(self, url: str, *, resource_link_id: str | None = None) -> Iterator[Member]:
        """Every member of the context at ``url`` (the NRPS claim's ``context_memberships_url``): every page.

        ``resource_link_id`` (NRPS 2.0 ``rlid``) adds each member's ``message`` claims, where Canvas puts
        custom fields such as its own user id.
        """
        params = {"rlid": resource_link_id} if resource_link_id is not None else None
        for body in self._pages(url, NRPS_SCOPE, MEMBERSHIPS_TYPE, params):
            members = body.get("members") if isinstance(body, Mapping) else None
            if not isinstance(members, list):
                raise AdvantageError(f"GET {_path(url)}: the answer is not a membership container")
            yield from (_member(raw, url) for raw in members)

    def find_or_create_line_item(
        self, lineitems_url: str, tag: str, label: str, score_maximum: float, resource_id: str | None = None
    ) -> LineItem:
        """The line item tagged ``tag`` in the AGS ``lineitems`` container, created if there is none.

        Find and create are retried together: after a POST that timed out the platform may have made the
        column, so a retry looks again first (pylti1.3 #69: posting scores needs a known line item).
        """
        if score_maximum <= 0:
            raise ValueError("AGS 2.0: scoreMaximum must be greater than 0")
        return self._http.retrying()(
            self._find_or_create, lineitems_url, tag, label, score_maximum, resource_id
        )

    def post_score(
        self,
        line_item_id: str,
        user_id: str,
        score_given: float,
        score_maximum: float,
        timestamp: datetime,
        activity_progress: ActivityProgress = "Completed",
        grading_progress: GradingProgress = "FullyGraded",
        comment: str | None = None,
    ) -> None:
        """Publish a learner's score (AGS 2.0 "Score publish service") to ``<line item>/scores``.

        Retrying is safe: the platform keeps the result of the newest timestamp, and a repeat carries the same
        timestamp and values. ``user_id`` is the LTI ``sub``.
        """
        if timestamp.tzinfo is None:
            raise ValueError("AGS 2.0: the score timestamp is ISO 8601 with a time zone offset")
        if score_given < 0 or score_maximum <= 0:
            raise ValueError("AGS 2.0: scoreGiven must be >= 0 and scoreMaximum > 0")
        body: dict[str, Any] = {
            "userId": user_id,
            "scoreGiven": score_given,
            "scoreMaximum": score_maximum,
            "activityProgress": activity_progress,
            "gradingProgress": grading_progress,
            "timestamp": timestamp.isoformat(timespec="milliseconds"),  # sub-second precision, as Canvas asks
        }
        if comment is not None:
            body["comment"] = comment
        # decode=False: Moodle answers with an empty body, Canvas with a resultUrl we do not need.
        self._call("POST", scores_url(line_item_id), SCORE_SCOPE, _SEND_SCORE, json=body, decode=False)

    # --- internals ---------------------------------------------------------------------------------------

    def _find_or_create(
        self, url: str, tag: str, label: str, score_maximum: float, resource_id: str | None
    ) -> LineItem:
        for body in self._pages(url, LINEITEM_SCOPE, LINEITEMS_TYPE, {"tag": tag}, retry=False):
            # The tag filter is optional for platforms (AGS 2.0 "Container request filters"): check it here.
            for raw in body if isinstance(body, list) else []:
                if isinstance(raw, Mapping) and raw.get("tag") == tag:
                    return _line_item(raw)
        new: dict[str, Any] = {"label": label, "tag": tag, "scoreMaximum": score_maximum}
        if resource_id is not None:
            new["resourceId"] = resource_id
        created, _ = self._call("POST", url, LINEITEM_SCOPE, _SEND_LINEITEM, json=new, retry=False)
        log.info("lti.line_item_created", extra={"issuer": self.registration.issuer, "tag": tag})
        return _line_item(created)

    def _pages(
        self, url: str, scope: str, accept: str, params: Mapping[str, Any] | None, *, retry: bool = True
    ) -> Iterator[Any]:
        """Bodies of a paged container, following ``Link: rel="next"`` exactly as given (NRPS 2.0 and AGS 2.0
        "paging": case preserved, pylti1.3 PR #139) and never onto another host."""
        next_url: str | None = url
        while next_url is not None:
            if _origin(next_url) != _origin(url):
                raise AdvantageError(
                    f"refusing a next-page link off the platform's host: {_origin(next_url)}"
                )
            body, response = self._call(
                "GET", next_url, scope, {"Accept": accept}, params=params, retry=retry
            )
            params = None  # the next link carries every parameter
            yield body
            link = response.links.get("next", {}).get("url")
            next_url = urljoin(next_url, link) if link else None

    def _call(
        self, method: str, url: str, scope: str, headers: Mapping[str, str], **options: Any
    ) -> tuple[Any, requests.Response]:
        """One service request with a bearer token for ``scope`` (only the scope this call needs, as the
        platform may grant fewer: Moodle "grade sync only"). A 401 drops the token and tries once more."""
        key: TokenKey = (self.registration.issuer, self.registration.client_id, frozenset({scope}))

        def send(token: str) -> tuple[Any, requests.Response]:
            authorized = {**headers, "Authorization": f"Bearer {token}"}
            return self._http.request(method, url, headers=authorized, **options)

        token = self._tokens.get(key, lambda: self._fetch_token(key[2]))
        try:
            return send(token)
        except TokenRejected:
            self._tokens.drop(key, token)
        return send(self._tokens.get(key, lambda: self._fetch_token(key[2])))

    def _fetch_token(self, scopes: frozenset[str]) -> tuple[str, float]:
        """1EdTech Security Framework 1.0 §4.1: client credentials with a JWT bearer assertion (RFC 7523)."""
        return self._http.retrying()(self._fetch_token_once, scopes)

    def _fetch_token_once(self, scopes: frozenset[str]) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self._assertion(),  # a fresh one (new jti) per attempt
            "scope": " ".join(sorted(scopes)),
        }
        where = f"POST {_path(self.registration.token_url)}"
        try:
            _, response = self._http.request(
                "POST", self.registration.token_url, data=form, retry=False, decode=False
            )
        except ServiceRefused as error:  # invalid_client, invalid_scope... (RFC 6749 §5.2)
            raise ServiceRefused(f"access token request refused: {error}", error.status) from None
        try:
            answer = response.json()
        except ValueError:
            raise Retryable(f"{where}: the token endpoint's answer is not JSON") from None  # body unquoted
        token = answer.get("access_token") if isinstance(answer, Mapping) else None
        if not isinstance(token, str) or str(answer.get("token_type", "")).lower() != "bearer":
            raise AdvantageError(f"{where}: the answer holds no bearer access token")
        expires_in = answer.get("expires_in")
        expires_in = float(expires_in) if isinstance(expires_in, int | float) else DEFAULT_EXPIRES_IN
        registration = self.registration
        facts = {"issuer": registration.issuer, "client_id": registration.client_id, "scopes": sorted(scopes)}
        log.info("lti.access_token_issued", extra={**facts, "expires_in": expires_in})
        return token, expires_in

    def _assertion(self) -> str:
        """The signed JWT that authenticates the tool: iss = sub = client_id, aud = the token endpoint."""
        registration, now = self.registration, int(self._clock())
        claims = {
            "iss": registration.client_id,
            "sub": registration.client_id,
            "aud": registration.audience or registration.token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,  # unique, so the platform can refuse a replay
        }
        return jwt.encode(claims, self._key.private_key, algorithm="RS256", headers={"kid": self._key.kid})


def scores_url(line_item_id: str) -> str:
    """AGS 2.0 "Score publish service": the line item URL with ``/scores`` appended to its path, before any
    query (Moodle's line items carry ``?type_id=``)."""
    parts = urlsplit(line_item_id)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/scores"))


def _classify(response: requests.Response) -> None:
    """What a platform's answer means: 429/5xx transient (retried, honouring Retry-After), 401 a token
    the platform refused, any other 3xx/4xx a refusal named by status and the start of the body."""
    status = response.status_code
    if status < 300:
        return
    where = f"{response.request.method} {_path(response.request.url or '')}"
    if status == 429 or status >= 500:
        raise Retryable(f"{where}: HTTP {status}", retry_after(response))
    error = TokenRejected if status == 401 else ServiceRefused
    raise error(f"{where}: HTTP {status}: {_snippet(response)}", status)


def _snippet(response: requests.Response) -> str:
    """The start of the body, with any secret we sent blanked out: a platform may echo the request."""
    text, request = response.text, response.request
    secrets = [request.headers.get("Authorization", "").removeprefix("Bearer ").strip()]
    sent = request.body.decode("latin-1") if isinstance(request.body, bytes) else request.body
    if isinstance(sent, str):
        secrets += [value for name, value in parse_qsl(sent) if name == "client_assertion"]
    for secret in filter(None, secrets):
        text = text.replace(secret, "[redacted]")
    return " ".join(text[:200].split())


def _member(raw: Any, url: str) -> Member:
    if not isinstance(raw, Mapping) or raw.get("user_id") in (None, ""):
        raise AdvantageError(f"GET {_path(url)}: a member without a user_id")
    messages = raw.get("message") if isinstance(raw.get("message"), list) else []
    return Member(
        user_id=str(raw["user_id"]),
        roles=tuple(str(role) for role in raw.get("roles") or ()),
        status=str(raw.get("status") or "Active"),
        message=tuple(claims for claims in messages if isinstance(claims, Mapping)),
        **{name: _text(raw.get(name)) for name in _MEMBER_TEXT},
    )


def _line_item(raw: Any) -> LineItem:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
        raise AdvantageError("the platform answered a line item without an id")
    maximum = raw.get("scoreMaximum")
    maximum = float(maximum) if isinstance(maximum, int | float) else 0.0
    return LineItem(
        raw["id"], str(raw.get("label", "")), _text(raw.get("tag")), maximum, _text(raw.get("resourceId"))
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _path(url: str) -> str:
    """The URL without its query: never echo parameters into an error message."""
    return urlsplit(url).path
