"""The OIDC login and the launch, over pylti1p3, with the checks it leaves out (see reference/lti.md).

pylti1p3 2.0.0 parses the request, finds the registration, runs the LTI message validators, builds
the redirect and the Deep Linking response. Our subclasses close its gaps:
- state is bound to the browser (a cookie) *and* to a server-side row that is deleted when used, so a
  launch POST replayed, from the same browser or another, finds nothing;
- the nonce is the one issued with that state, so it is single-use too (pylti1p3 only checks presence);
- ``aud`` is checked, and ``azp`` required when ``aud`` is a list (OpenID Connect Core §3.1.3.7);
- ``exp``, ``iat`` and ``nonce`` are required, with a small leeway for clock skew, and a token issued
  longer ago than ``max_token_age`` is refused;
- RS256 only, the key chosen by ``kid`` from the registration's JWKS (refetched once on an unknown kid);
- the deployment must be approved; an unknown one is recorded as pending;
- the LTI version and message type are checked, and so is ``target_link_uri``: login never redirects
  anywhere but our own launch URL.
Every refusal is a :class:`LaunchRefused` with a reason from a small fixed set (a metric label).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from jwt.algorithms import RSAAlgorithm
from jwt.utils import base64url_decode
from pylti1p3.contrib.flask import FlaskCookieService, FlaskMessageLaunch, FlaskOIDCLogin, FlaskRequest
from pylti1p3.deployment import Deployment
from pylti1p3.exception import LtiException, OIDCException
from pylti1p3.registration import Registration
from pylti1p3.tool_config import ToolConfAbstract

from bridge.clock import utcnow
from bridge.issuing.keys import SigningKey
from bridge.lti.platform_keys import KeyUnavailable, PlatformKeys
from bridge.lti.store import IssuedState, LaunchStore, RegistrationRow

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
MESSAGE_TYPES = ("LtiResourceLinkRequest", "LtiDeepLinkingRequest")
STATE_LIFETIME = timedelta(minutes=5)


class LaunchRefused(Exception):
    """A login or launch the tool will not accept; ``reason`` is a metric label, the message for people."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason, self.message, self.status = reason, message, status


class DeploymentPending(LaunchRefused):
    def __init__(self, deployment_id: str) -> None:
        super().__init__(
            "deployment_pending",
            f"This installation of the tool (deployment {deployment_id}) is waiting for an administrator "
            "of the badge service to approve it.",
            403,
        )


@dataclass(frozen=True)
class LaunchPolicy:
    launch_url: str  # the one redirect_uri we ever ask the platform to post to
    tool_origin: str  # scheme://host[:port] a target_link_uri must be on
    leeway_seconds: float = 30.0
    max_token_age_seconds: float = 600.0


class DatabaseToolConf(ToolConfAbstract):  # type: ignore[misc]
    """pylti1p3's tool configuration, read from our registrations (active ones only)."""

    def __init__(self, store: LaunchStore, tool_key: SigningKey, private_pem: str) -> None:
        super().__init__()
        self._store = store
        self._tool_key = tool_key
        self._private_pem = private_pem

    def check_iss_has_one_client(self, iss: str) -> bool:
        # The base class keeps this in a dict shared by every instance; ask the database instead.
        return len(self._store.registrations_of(iss)) == 1

    def check_iss_has_many_clients(self, iss: str) -> bool:
        return not self.check_iss_has_one_client(iss)

    def find_registration_by_issuer(self, iss: str, *args: Any, **kwargs: Any) -> Registration | None:
        found = self._store.registrations_of(iss)
        return self.to_registration(found[0]) if len(found) == 1 and found[0].status == "active" else None

    def find_registration_by_params(
        self, iss: str, client_id: str | None, *args: Any, **kwargs: Any
    ) -> Registration | None:
        found = self._store.registration(iss, client_id) if client_id else None
        return self.to_registration(found) if found is not None and found.status == "active" else None

    # pylti1p3's own lookups; a launch checks its deployment in StrictLaunch.validate_deployment, which
    # also records an unknown one as pending.
    def find_deployment(self, iss: str, deployment_id: str) -> Deployment | None:
        found = self._store.registrations_of(iss)
        return self._approved(found[0], deployment_id) if len(found) == 1 else None

    def find_deployment_by_params(
        self, iss: str, deployment_id: str, client_id: str | None
    ) -> Deployment | None:
        found = self._store.registration(iss, client_id) if client_id else None
        return self._approved(found, deployment_id) if found is not None else None

    def _approved(self, registration: RegistrationRow, deployment_id: str) -> Deployment | None:
        if registration.status != "active":
            return None
        status = self._store.deployment_status(registration.id, deployment_id)
        return Deployment().set_deployment_id(deployment_id) if status == "active" else None

    def to_registration(self, row: RegistrationRow) -> Registration:
        registration = (
            Registration()
            .set_issuer(row.issuer)
            .set_client_id(row.client_id)
            .set_auth_login_url(row.auth_login_url)
            .set_auth_token_url(row.auth_token_url)
            .set_key_set_url(row.key_set_url)
            .set_tool_private_key(self._private_pem)
            .set_tool_public_key(self._tool_key.public_pem())
        )
        if row.auth_audience:
            registration.set_auth_audience(row.auth_audience)
        registration.bridge_id = row.id  # type: ignore[attr-defined]
        registration.bridge_platform = row.platform  # type: ignore[attr-defined]
        return registration


class ToolCookies(FlaskCookieService):  # type: ignore[misc]
    """The state cookie: in an iframe on another site it is a third-party cookie, so over HTTPS it is
    ``Secure; SameSite=None`` and ``Partitioned`` (CHIPS: kept per top-level site, as browsers that block
    third-party cookies still allow); ``HttpOnly`` always."""

    def update_response(self, response: Any) -> None:
        secure = bool(self._request.is_secure())
        for key, cookie in self._cookie_data_to_set.items():
            response.set_cookie(
                key,
                cookie["value"],
                max_age=cookie["exp"],
                path="/lti/",
                secure=secure,
                httponly=True,
                samesite="None" if secure else "Lax",
                partitioned=secure,
            )


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


class StrictLogin(FlaskOIDCLogin):  # type: ignore[misc]
    def __init__(
        self, request: FlaskRequest, tool_conf: DatabaseToolConf, store: LaunchStore, policy: LaunchPolicy
    ) -> None:
        super().__init__(request, tool_conf, cookie_service=ToolCookies(request))
        self._store = store
        self._policy = policy

    def _prepare_redirect_url(self, launch_url: str) -> str:
        try:
            registration = self.validate_oidc_login()
        except OIDCException as error:
            if "registration" in str(error):
                raise LaunchRefused(
                    "unknown_registration", "The tool is not registered for this platform and client id.", 403
                ) from None
            raise LaunchRefused("bad_login", f"The login request is incomplete: {error}.") from None
        target = self._get_request_param("target_link_uri")
        if not target or origin(target) != self._policy.tool_origin:
            # Never redirect to a target_link_uri elsewhere: the login would be an open redirect.
            raise LaunchRefused("bad_target", "The login names a target that is not this tool.")
        state = "state-" + secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        self._store.issue_state(_state_hash(state), nonce, registration.bridge_id, utcnow() + STATE_LIFETIME)
        self._cookie_service.set_cookie(state, state, int(STATE_LIFETIME.total_seconds()))
        params = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
            "client_id": registration.get_client_id(),
            "redirect_uri": launch_url,
            "state": state,
            "nonce": nonce,
            "login_hint": self._get_request_param("login_hint"),
        }
        hint = self._get_request_param("lti_message_hint")
        if hint:
            params["lti_message_hint"] = hint
        return f"{registration.get_auth_login_url()}?{urlencode(params)}"


_RS256 = RSAAlgorithm(RSAAlgorithm.SHA256)


def _claims_problem(claims: dict[str, Any], issuer: str, policy: LaunchPolicy, now: float) -> str | None:
    """Why a signed token's claims are not acceptable now, or None (1EdTech Security Framework §5.1.3).

    ``aud``/``azp`` are checked where the client id is read (StrictLaunch.get_client_id), the nonce
    against the login's (StrictLaunch.validate_nonce)."""
    for name in ("iss", "aud", "exp", "iat", "nonce"):
        if name not in claims:
            return f'the "{name}" claim is missing'
    if claims["iss"] != issuer:
        return "it was issued by another platform"
    times = {name: claims.get(name) for name in ("exp", "iat", "nbf") if name in claims}
    if any(isinstance(value, bool) or not isinstance(value, int | float) for value in times.values()):
        return "a time claim is not a number"
    leeway = policy.leeway_seconds
    if claims["exp"] <= now - leeway:
        return "it has expired"
    if claims["iat"] > now + leeway or claims.get("nbf", 0) > now + leeway:
        return "it is not valid yet (iat or nbf in the future)"
    if claims["iat"] < now - policy.max_token_age_seconds:
        return "it was issued too long ago"
    return None


def origin(url: str) -> str:
    """``scheme://host[:port]``, lower-cased: what a URL must share with the tool to be the tool's."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class StrictLaunch(FlaskMessageLaunch):  # type: ignore[misc]
    def __init__(
        self,
        request: FlaskRequest,
        tool_conf: DatabaseToolConf,
        store: LaunchStore,
        policy: LaunchPolicy,
        platform_keys: PlatformKeys,
    ) -> None:
        super().__init__(request, tool_conf, cookie_service=ToolCookies(request))
        self._store = store
        self._policy = policy
        self._platform_keys = platform_keys
        self._issued: IssuedState | None = None
        self.state_hash: str | None = None
        self._found: RegistrationRow | None = None
        self._deployment_status: str | None = None
        self.set_jwt_verify_options({})  # never pylti1p3's verify_aud=False; see validate_jwt_signature

    def validate(self) -> StrictLaunch:
        """Every check; a refused launch's state is deleted here (a valid one's when it is recorded)."""
        try:
            super().validate()
        except LtiException as error:  # one of pylti1p3's own checks (the message validators)
            self._discard_state()
            raise LaunchRefused("bad_message", f"The launch message is not valid: {error}.") from None
        except BaseException:
            self._discard_state()
            raise
        return self

    def _discard_state(self) -> None:
        if self.state_hash is not None:  # set once the browser's cookie matched it
            self._store.discard_state(self.state_hash)

    def validate_state(self) -> StrictLaunch:
        state = self._get_request_param("state")
        if not state:
            raise LaunchRefused("missing_state", "The launch has no state.")
        if self._cookie_service.get_cookie(state) != state:
            # Not the browser that started the login (or it refuses cookies in this frame).
            raise LaunchRefused(
                "state_mismatch",
                "This launch did not start in this browser. Open the tool again from the course; if it "
                "keeps happening, allow cookies for this site or open the tool in a new window.",
                401,
            )
        # From here on, whatever the outcome, the state is used up. It is read with the registration,
        # once the token names one (validate_nonce).
        self.state_hash = _state_hash(state)
        return self

    def validate_jwt_format(self) -> StrictLaunch:
        try:
            super().validate_jwt_format()
        except LtiException:
            raise LaunchRefused("malformed_token", "The launch token cannot be read.") from None
        header = self._jwt["header"]
        if header.get("alg") != "RS256":
            raise LaunchRefused("bad_algorithm", "The launch token is not signed with RS256.", 401)
        if not isinstance(header.get("kid"), str):
            raise LaunchRefused("unknown_key", "The launch token names no key.", 401)
        if not isinstance(self._jwt.get("body"), dict):
            raise LaunchRefused("malformed_token", "The launch token cannot be read.")
        return self

    def validate_nonce(self) -> StrictLaunch:
        assert self.state_hash is not None
        body = self._get_jwt_body()
        iss, deployment_id = body.get("iss"), body.get(f"{LTI}deployment_id")
        if not isinstance(iss, str) or not isinstance(deployment_id, str) or not deployment_id:
            raise LaunchRefused("bad_message", "The launch has no issuer or no deployment id.")
        facts = self._store.launch_facts(self.state_hash, iss, self.get_client_id(), deployment_id)
        if facts is None or facts[0].expires_at < utcnow():
            raise LaunchRefused("state_unknown", "This launch was used already or has expired.", 401)
        self._issued, self._found, self._deployment_status = facts
        nonce = body.get("nonce")
        if not isinstance(nonce, str) or not secrets.compare_digest(nonce, self._issued.nonce):
            raise LaunchRefused("bad_nonce", "The launch token was not issued for this login.", 401)
        return self

    def get_client_id(self) -> str:
        body = self._get_jwt_body()
        aud, azp = body.get("aud"), body.get("azp")
        if isinstance(aud, str):
            client_id = aud
        elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
            # Several audiences: azp names ours and must be among them (OIDC Core §3.1.3.7, 1EdTech
            # Security Framework §5.1.3).
            if not isinstance(azp, str) or azp not in aud:
                raise LaunchRefused("bad_audience", "The launch token has several audiences and no azp.", 401)
            client_id = azp
        else:
            raise LaunchRefused("bad_audience", "The launch token has no audience.", 401)
        if azp is not None and azp != client_id:
            raise LaunchRefused("bad_audience", "The launch token's azp is not its audience.", 401)
        return client_id

    def validate_registration(self) -> StrictLaunch:
        # Read with the state (validate_nonce); the deployment's status is used once the token is verified.
        found, issued = self._found, self._issued
        if found is None or issued is None or found.status != "active" or found.id != issued.registration_id:
            # Unknown, disabled, or not the registration this login was started for.
            raise LaunchRefused(
                "unknown_registration", "The launch comes from an unregistered platform.", 403
            )
        self._registration = self._tool_config.to_registration(found)
        return self

    def get_public_key(self) -> Any:
        assert self._registration is not None
        try:
            return self._platform_keys.key(self._registration.get_key_set_url(), self._jwt["header"]["kid"])
        except KeyUnavailable as error:
            raise LaunchRefused(
                "unknown_key", f"The launch token cannot be verified: {error}.", 401
            ) from None

    def validate_jwt_signature(self) -> StrictLaunch:
        """The RS256 signature over the token's first two segments, then its claims.

        pylti1p3 has already decoded the header and body from those same segments; ``jwt.decode`` would
        decode them again with a per-character check in Python that cost 170 µs of a 1.3 ms launch
        (benchmarks/lti_launch.py). The signature is checked by PyJWT's RS256 algorithm all the same.
        """
        key = self.get_public_key().key
        signing_input, _, signature = self._get_id_token().rpartition(".")
        try:
            valid = _RS256.verify(signing_input.encode("ascii"), key, base64url_decode(signature))
        except (ValueError, UnicodeEncodeError):  # not base64url, or not ASCII: not a signature
            valid = False
        if not valid:
            raise LaunchRefused("bad_signature", "The launch token's signature is not valid.", 401)
        problem = _claims_problem(
            self._get_jwt_body(), self._registration.get_issuer(), self._policy, time.time()
        )
        if problem is not None:
            raise LaunchRefused("bad_claims", f"The launch token is not valid: {problem}.", 401)
        return self

    def validate_deployment(self) -> StrictLaunch:
        deployment_id = self._get_jwt_body()[f"{LTI}deployment_id"]  # checked with the registration
        status = self._deployment_status
        if status is None:  # first seen: recorded for an administrator, now that the token is verified
            self._store.add_pending_deployment(self._registration.bridge_id, deployment_id)
        if status in (None, "pending"):
            raise DeploymentPending(deployment_id)
        if status != "active":
            raise LaunchRefused("deployment_disabled", "This installation of the tool is disabled.", 403)
        return self

    def validate_message(self) -> StrictLaunch:
        body = self._get_jwt_body()
        if body.get(f"{LTI}version") != "1.3.0":
            raise LaunchRefused("bad_message", "The launch is not LTI 1.3.0.")
        if body.get(f"{LTI}message_type") not in MESSAGE_TYPES:
            raise LaunchRefused("bad_message", "The tool does not handle this kind of launch.")
        target = body.get(f"{LTI}target_link_uri")
        if not isinstance(target, str) or origin(target) != self._policy.tool_origin:
            raise LaunchRefused("bad_target", "The launch targets another tool.")
        super().validate_message()
        return self

    def save_launch_data(self) -> StrictLaunch:
        return self  # the launch is stored by bridge.lti.sessions, bound to what it may do

    @property
    def registration(self) -> Registration:
        return self._registration

    @property
    def claims(self) -> dict[str, Any]:
        return dict(self._get_jwt_body())
