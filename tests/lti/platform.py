"""A fake LTI 1.3 platform, Moodle- or Canvas-flavoured, served on 127.0.0.1 for certification-style tests.

``FakePlatform`` is a real HTTP server (``ThreadingHTTPServer`` in a daemon thread, an OS-chosen port) that
plays the platform side of LTI 1.3 and LTI Advantage against a tool under test:

* ``/jwks`` — its signing keys (requests counted; rotate, add, remove keys, or make it hang);
* ``/auth`` — the OIDC authorization endpoint (form_post page); tests usually call ``authorize()`` directly;
* ``/token``, ``/nrps/<context>``, ``/ags/<context>/lineitems...`` — services (platform_services.py);
* ``/.well-known/openid-configuration``, ``/register`` — Dynamic Registration (registration token required);
* the deep linking return URL of each flavour, which checks the tool's ``LtiDeepLinkingResponse``.

id_tokens start from ``tests/fixtures/lti/<kind>_<message>_launch.json`` (the claims as Moodle or Canvas
send them), with ``PLATFORM`` replaced by the harness's base URL. A launch through the whole OIDC flow::

    with FakePlatform("canvas", redirect_uris=[launch_url]) as platform:
        login = platform.login_params(target_link_uri=launch_url)  # step 1, sent to the tool's login URL
        location = browser.post(login_url, data=login).headers["Location"]
        action, fields = platform.authorize(location)  # steps 2-3: {"id_token": ..., "state": ...}
        browser.post(action, data=fields)  # the launch

Attacks are options of ``id_token()`` (and of ``authorize()``, which passes them on):
``key=platform.foreign_key()`` (a foreign key under the real kid), ``kid="unknown"``, ``alg="none"``,
``alg="HS256"`` (HMAC keyed with the public PEM), ``{"aud": [client_id, "other"]}`` with ``drop=("azp",)``,
``{"exp": past}``, ``{"iat": future}``, ``{"version": "1.2.0"}``, ``{"message_type": "Other"}``,
``drop=(("resource_link", "id"),)``. Every request received is kept in ``platform.requests``.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypedDict, Unpack
from urllib.parse import parse_qs, urlsplit

from bridge.lti.registry import NewRegistration
from tests.lti.platform_services import PlatformServices
from tests.lti.platform_support import (
    CANVAS_ISSUER,
    CLAIMS,
    SCOPE_NRPS,
    AuthorizationError,
    DeepLinkingError,
    PlatformKey,
    RecordedRequest,
    Reply,
    claim_name,
    encode_jwt,
    error_reply,
    form_post_page,
    json_reply,
    load_fixture,
    make_handler,
    substitute,
)

__all__ = [
    "CANVAS_ISSUER",
    "CLAIMS",
    "AuthorizationError",
    "ClaimOptions",
    "DeepLinkingError",
    "FakePlatform",
    "PlatformKey",
    "RecordedRequest",
]


class ClaimOptions(TypedDict, total=False):
    kind: str  # "moodle" | "canvas" (default: the harness's kind)
    message: str  # "resource" | "deep_linking"
    roles: str | Sequence[str]  # "learner" | "instructor" | "administrator" (fixture ``_roles``) or role URIs
    nonce: str
    drop: Iterable[str | tuple[str, str]]  # claims to remove; (claim, key) removes a key inside a claim


@dataclass
class _LaunchPlan:  # what a login_params() call promised, found again by its lti_message_hint
    login_hint: str
    target_link_uri: str
    claims_overrides: dict[str, Any]
    options: ClaimOptions = field(default_factory=ClaimOptions)
    storage_target: str | None = None


class FakePlatform(PlatformServices):
    """The platform. ``kind`` picks the flavour; the other arguments override what the fixtures say."""

    def __init__(
        self,
        kind: str = "moodle",
        *,
        issuer: str | None = None,
        client_id: str | None = None,
        deployment_id: str | None = None,
        redirect_uris: Iterable[str] = (),
        target_link_uri: str | None = None,
        tool_jwks_url: str | None = None,
        tool_jwks: dict[str, Any] | None = None,
        ca_bundle: str | None = None,
        registration_token: str | None = None,
        token_audience: str | None = None,
        allowed_scopes: Iterable[str] | None = None,
    ) -> None:
        if kind not in ("moodle", "canvas"):
            raise ValueError(f"kind must be 'moodle' or 'canvas', not {kind!r}")
        fixture = load_fixture(kind)
        self.kind = kind
        self.client_id: str = client_id or fixture["aud"]
        self.deployment_id: str = deployment_id or fixture[CLAIMS["deployment_id"]]
        self.redirect_uris = list(redirect_uris)  # exact matches, as both platforms require
        self.target_link_uri = target_link_uri
        self.tool_jwks_url, self.tool_jwks, self.ca_bundle = tool_jwks_url, tool_jwks, ca_bundle
        self.token_audience = token_audience  # accepted as client_assertion aud besides token_url
        self.allowed_scopes = set(allowed_scopes or [*fixture[CLAIMS["ags"]]["scope"], SCOPE_NRPS])
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[RecordedRequest] = []
        self.jwks_requests = 0
        self.jwks_delay = 0.0
        self.tokens_issued = 0
        self._tokens, self._used_jti, self._used_registration_tokens = {}, set(), set()
        self._lineitems = {}
        self.scores: list[dict[str, Any]] = []
        self.registrations: list[dict[str, Any]] = []
        self.deep_linking_responses: list[dict[str, Any]] = []
        self._plans: dict[str, _LaunchPlan] = {}
        self._deep_linking: dict[str, Any] | None = None
        self._published: list[PlatformKey] = []
        self.key = PlatformKey.generate(self._new_kid())
        self._published.append(self.key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self._receive))
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = issuer or (CANVAS_ISSUER if kind == "canvas" else self.base_url)
        self.jwks_url, self.auth_url, self.token_url = (
            self.base_url + path for path in ("/jwks", "/auth", "/token")
        )
        self.registration_url = self.base_url + "/register"
        self.openid_configuration_url = self.base_url + "/.well-known/openid-configuration"
        self._thread: threading.Thread | None = None
        # Moodle's registration token is a platform-signed JWT whose sub is the client id to be issued.
        self.registration_client_id = secrets.token_urlsafe(12)[:15]
        now = int(time.time())
        reg = {"sub": self.registration_client_id, "scope": "reg", "iat": now, "exp": now + 3600}
        self.registration_token = registration_token or self.sign(reg)

    # --- life cycle and addresses -------------------------------------------------------------------------

    def start(self) -> FakePlatform:
        if self._thread is None:
            serve = self._server.serve_forever
            self._thread = threading.Thread(target=serve, args=(0.05,), name="fake-platform", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases a hanging /jwks
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakePlatform:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def registration_params(self) -> dict[str, str]:
        """The query a platform adds to the tool's registration URL to start Dynamic Registration."""
        return {
            "openid_configuration": self.openid_configuration_url,
            "registration_token": self.registration_token,
        }

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path (query excluded) starts with ``path``."""
        with self._lock:
            return [r for r in self.requests if r.url_path.startswith(path) and method in (None, r.method)]

    # --- keys ---------------------------------------------------------------------------------------------

    def _new_kid(self) -> str:
        taken = {key.kid for key in self._published}
        if self.kind == "moodle":  # Moodle: random_string(15)
            return next(kid for kid in iter(lambda: secrets.token_urlsafe(12)[:15], "") if kid not in taken)
        now = datetime.now(UTC)  # Canvas: the key's creation time, ISO 8601
        stamp = f"{now:%Y-%m-%dT%H:%M:%S}Z"
        return stamp if stamp not in taken else f"{now.isoformat()[:26]}Z"

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [key.public_jwk() for key in self._published]}

    def rotate_key(self, *, keep_old: bool = True) -> PlatformKey:
        """Sign with a new key from now on; the old one stays published unless ``keep_old=False``."""
        new = PlatformKey.generate(self._new_kid())
        with self._lock:
            self._published = [*(self._published if keep_old else []), new]
            self.key = new
        return new

    def add_key(self, key: PlatformKey | None = None) -> PlatformKey:
        """Publish one more key (not used for signing)."""
        key = key or PlatformKey.generate(self._new_kid())
        with self._lock:
            self._published.append(key)
        return key

    def remove_key(self, kid: str) -> None:
        with self._lock:
            self._published = [key for key in self._published if key.kid != kid]

    def foreign_key(self, kid: str | None = None) -> PlatformKey:
        """An unpublished key, by default carrying the real signing key's kid."""
        return PlatformKey.generate(kid or self.key.kid)

    def hang_jwks(self, seconds: float) -> None:
        """Make each /jwks request wait ``seconds`` before answering (0 to stop); stop() releases them."""
        self.jwks_delay = seconds

    # --- messages -----------------------------------------------------------------------------------------

    def _issuer_for(self, kind: str, fixture: Mapping[str, Any]) -> str:
        return self.issuer if kind == self.kind else substitute(fixture["iss"], self.base_url)

    def _deployment_for(self, kind: str, fixture: Mapping[str, Any]) -> str:
        return self.deployment_id if kind == self.kind else fixture[CLAIMS["deployment_id"]]

    def claims(
        self, claims_overrides: Mapping[str, Any] | None = None, **options: Unpack[ClaimOptions]
    ) -> dict[str, Any]:
        """An id_token's claims: the fixture, now-based iat/exp, this registration, then the overrides."""
        kind = options.get("kind") or self.kind
        raw = load_fixture(kind, options.get("message", "resource"))
        claims = substitute(
            {key: value for key, value in raw.items() if not key.startswith("_")}, self.base_url
        )
        now, nonce = int(time.time()), options.get("nonce") or secrets.token_hex(16)
        claims |= {"iss": self._issuer_for(kind, raw), "aud": self.client_id, "iat": now, "nonce": nonce}
        claims["exp"] = now + raw["exp"] - raw["iat"]  # Moodle: 60 s, Canvas: 1 h
        if "azp" in claims:  # Canvas sends azp even with a single audience
            claims["azp"] = self.client_id
        claims[CLAIMS["deployment_id"]] = self._deployment_for(kind, raw)
        if self.target_link_uri or self.redirect_uris:
            claims[CLAIMS["target_link_uri"]] = self.target_link_uri or self.redirect_uris[0]
        roles = options.get("roles")
        if isinstance(roles, str) and roles not in raw["_roles"]:
            raise ValueError(f"roles must be one of {sorted(raw['_roles'])} or a list of role URIs")
        if roles is not None:
            claims[CLAIMS["roles"]] = list(raw["_roles"][roles] if isinstance(roles, str) else roles)
        claims |= {claim_name(name): value for name, value in (claims_overrides or {}).items()}
        for item in options.get("drop", ()):
            if isinstance(item, tuple) and isinstance(claims.get(claim_name(item[0])), dict):
                claims[claim_name(item[0])].pop(item[1], None)
            elif isinstance(item, str):
                claims.pop(claim_name(item), None)
        settings = claims.get(CLAIMS["deep_linking_settings"])
        if claims.get(CLAIMS["message_type"]) == "LtiDeepLinkingRequest" and isinstance(settings, dict):
            deployment = claims.get(CLAIMS["deployment_id"])
            self._deep_linking = {"iss": claims.get("iss"), "deployment_id": deployment, **settings}
        return claims

    def id_token(
        self,
        claims_overrides: Mapping[str, Any] | None = None,
        *,
        key: PlatformKey | None = None,
        kid: str | None = None,
        alg: str = "RS256",
        headers: Mapping[str, Any] | None = None,
        **options: Unpack[ClaimOptions],
    ) -> str:
        """A signed (or deliberately broken) id_token; see the module docstring for the attacks."""
        return self.sign(self.claims(claims_overrides, **options), key=key, kid=kid, alg=alg, headers=headers)

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        key: PlatformKey | None = None,
        kid: str | None = None,
        alg: str = "RS256",
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign ``claims`` with ``key`` (default: the current key); ``headers={"kid": None}`` drops kid."""
        key = key or self.key
        header = {"kid": key.kid if kid is None else kid, **(headers or {})}
        return encode_jwt(
            claims, key, alg, {name: value for name, value in header.items() if value is not None}
        )

    def login_params(
        self,
        claims_overrides: Mapping[str, Any] | None = None,
        *,
        target_link_uri: str | None = None,
        lti_storage_target: str | None = None,
        **options: Unpack[ClaimOptions],
    ) -> dict[str, str]:
        """The third-party login initiation the platform sends the tool (OIDC step 1); ``authorize()`` later
        mints the launch these parameters announce (same user, message, overrides and options)."""
        kind = options.get("kind") or self.kind
        overrides = {claim_name(name): value for name, value in (claims_overrides or {}).items()}
        fixture = load_fixture(kind, options.get("message", "resource"))
        target = target_link_uri or overrides.get(CLAIMS["target_link_uri"]) or self.target_link_uri
        target = target or (
            self.redirect_uris[0] if self.redirect_uris else fixture[CLAIMS["target_link_uri"]]
        )
        params = {
            "iss": overrides.get("iss", self._issuer_for(kind, fixture)),
            "target_link_uri": target,
            "client_id": self.client_id,
            "lti_deployment_id": overrides.get(CLAIMS["deployment_id"], self._deployment_for(kind, fixture)),
        }
        if kind == "moodle":  # lti_build_login_request(): login_hint = user id, lti_message_hint = cm id
            with self._lock:
                message_hint = str(40 + len(self._plans))
            login_hint = str(overrides.get("sub", fixture["sub"]))
        else:  # Canvas: opaque hints (lti_message_hint is a signed JWT there), region and environment
            message_hint = secrets.token_urlsafe(48)
            legacy = CLAIMS["lti11_legacy_user_id"]
            login_hint = str(overrides.get(legacy, fixture[legacy]))
            params |= {"canvas_environment": "prod", "canvas_region": "not_configured"}
            params |= {"lti_storage_target": lti_storage_target} if lti_storage_target else {}
        params |= {"login_hint": login_hint, "lti_message_hint": message_hint}
        with self._lock:
            plan = _LaunchPlan(login_hint, target, overrides, options, lti_storage_target)
            self._plans[message_hint] = plan
        return params

    def authorize(
        self, login_redirect_url: str, claims_overrides: Mapping[str, Any] | None = None, **token_options: Any
    ) -> tuple[str, dict[str, str]]:
        """Answer the authentication request the tool redirected the browser to, as the platform would.

        Returns the form_post target (the redirect_uri) and its fields ``{"id_token", "state"}``; raises
        ``AuthorizationError`` where the platform refuses. ``token_options`` go to ``id_token()``.
        """
        parts = urlsplit(login_redirect_url)
        if f"{parts.scheme}://{parts.netloc}{parts.path}" != self.auth_url:
            message = f"{login_redirect_url} is not {self.auth_url}"
            raise AuthorizationError("invalid_request", message, redirect_allowed=False)
        params = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        return self.authorize_params(params, claims_overrides, **token_options)

    def authorize_params(
        self,
        params: Mapping[str, str],
        claims_overrides: Mapping[str, Any] | None = None,
        **token_options: Any,
    ) -> tuple[str, dict[str, str]]:
        """``authorize()`` for parameters already parsed (the HTTP endpoint's query or form)."""
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") != self.client_id:
            raise AuthorizationError("unauthorized_client", "unknown client_id", redirect_allowed=False)
        if redirect_uri not in self.redirect_uris:
            message = f"redirect_uri {redirect_uri!r} is not registered"
            raise AuthorizationError("invalid_request", message, redirect_allowed=False)
        missing = [name for name in ("scope", "response_type", "login_hint", "nonce") if not params.get(name)]
        for passed, error, description in [
            (not missing, "invalid_request", f"missing {', '.join(missing)}"),
            (params.get("scope") == "openid", "invalid_scope", "scope: openid"),
            (params.get("response_type") == "id_token", "unsupported_response_type", "id_token only"),
            (params.get("response_mode") == "form_post", "invalid_request", "response_mode: form_post"),
            (params.get("prompt", "none") in ("", "none"), "invalid_request", "prompt: none"),
        ]:
            if not passed:
                raise AuthorizationError(error, description)
        plan = None
        if params.get("lti_message_hint"):
            with self._lock:
                plan = self._plans.get(params["lti_message_hint"])
            if plan is None:
                raise AuthorizationError("invalid_request", "unknown lti_message_hint")
            if params["login_hint"] != plan.login_hint:
                raise AuthorizationError("access_denied", "login_hint is not the user who started the launch")
        target = plan.target_link_uri if plan else self.target_link_uri or redirect_uri
        merged = {CLAIMS["target_link_uri"]: target, **(plan.claims_overrides if plan else {})}
        merged |= {claim_name(name): value for name, value in (claims_overrides or {}).items()}
        options = {**(plan.options if plan else {}), "nonce": params["nonce"], **token_options}
        fields = {"id_token": self.id_token(merged, **options)}
        fields |= {"state": params["state"]} if "state" in params else {}
        if plan and plan.storage_target:
            fields["lti_storage_target"] = plan.storage_target
        return redirect_uri, fields

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _receive(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
        try:
            return self._dispatch(request)
        except Exception as exc:  # a harness bug must show in the test, not hang it
            return error_reply(500, "harness_error", repr(exc))

    def _dispatch(self, request: RecordedRequest) -> Reply:
        path = request.url_path
        if path == "/jwks":
            with self._lock:
                self.jwks_requests += 1
            if self.jwks_delay:
                self._stopping.wait(self.jwks_delay)
            return json_reply(200, self.jwks())
        routes = {
            "/auth": self._handle_auth,
            "/token": self._handle_token,
            "/.well-known/openid-configuration": self._handle_openid_configuration,
            "/register": self._handle_register,
            "/mod/lti/contentitem_return.php": self._handle_deep_linking_return,
        }
        if path in routes:
            return routes[path](request)
        if match := re.fullmatch(r"/nrps/([^/]+)", path):
            return self._handle_nrps(request, match[1])
        if match := re.fullmatch(
            r"/ags/([^/]+)/lineitems(?:/(\d+)(?:/lineitem)?(?:/(scores|results))?)?", path
        ):
            return self._handle_ags(request, match[1], int(match[2]) if match[2] else None, match[3])
        if re.fullmatch(r"/courses/[^/]+/deep_linking_response", path):
            return self._handle_deep_linking_return(request)
        return error_reply(404, "not_found", path)

    def _handle_auth(self, request: RecordedRequest) -> Reply:
        params = request.form() if request.method == "POST" else {k: v[-1] for k, v in request.query.items()}
        try:
            action, fields = self.authorize_params(params)
        except AuthorizationError as exc:
            if not exc.redirect_allowed:  # never post to an unverified redirect_uri
                return Reply(400, exc.description.encode(), {"Content-Type": "text/plain; charset=utf-8"})
            action = params["redirect_uri"]
            fields = {"error": exc.error, "error_description": exc.description}
            fields |= {"state": params["state"]} if "state" in params else {}
        return Reply(200, form_post_page(action, fields), {"Content-Type": "text/html; charset=utf-8"})


def registration_of(platform: FakePlatform, platform_id: str) -> NewRegistration:
    """The registration an administrator makes of ``platform`` for the bridge platform ``platform_id``
    (``badge-bridge lti register``), with its deployment."""
    return NewRegistration(
        platform_id,
        platform.issuer,
        platform.client_id,
        platform.auth_url,
        platform.token_url,
        platform.jwks_url,
        deployment_ids=(platform.deployment_id,),
        product=platform.kind,
    )
