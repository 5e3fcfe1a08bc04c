"""The tool's side of 1EdTech LTI Dynamic Registration 1.0 (LTI-DR), as Moodle 4.x and Canvas run it.

The platform opens ``/lti/register?openid_configuration=URL&registration_token=TOKEN``. The view (behind
an administrator's login: it makes this server fetch a URL a stranger could choose) calls
:func:`fetch_platform_configuration` (LTI-DR Step 2), then :func:`register` (Step 3, §3.5), stores the
:class:`RegisteredTool`, and renders a page whose script (``static/registered.js``) posts
``org.imsglobal.lti.close`` to the platform's window (Step 4).

Read from: moodle/moodle ``mod/lti/openid-configuration.php`` and ``classes/local/ltiopenid/
registration_helper.php`` (bare message names; a ``domain`` must match ``target_link_uri``'s host; errors
in plain text); instructure/canvas-lms ``doc/api/registration.md``, ``app/controllers/security_controller.rb``
(the token also rides in the configuration URL's query; that URL is on the issuer's host, the other
endpoints on the account and SSO hosts) and ``lti/ims/dynamic_registration_controller.rb``.

The registration token is a credential: sent as ``Authorization: Bearer`` only, never in an error message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from bridge.lti.tool_config import (
    DEEP_LINKING,
    RESOURCE_LINK,
    PlatformProfile,
    ToolDescription,
    is_loopback,
    platform_profile,
)
from connectors.http import USER_AGENT

PLATFORM_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-platform-configuration"
TOOL_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-tool-configuration"
DEFAULT_TIMEOUT = 10.0  # seconds; an administrator is waiting on the page
MAX_ANSWER_BYTES = 1 << 20
_BEARER = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1 b64token
_CONFIG = "the platform's OpenID configuration"
_ANSWER = "the platform's registration answer"


class RegistrationRefused(Exception):
    """The registration cannot go on; the message names the problem and never holds the token."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the platform's HTTP status, when it answered one


class HttpSession(Protocol):
    """What is used of a ``requests.Session``; every call passes ``timeout=`` and no redirects."""

    def get(self, url: str, **kwargs: Any) -> requests.Response: ...
    def post(self, url: str, **kwargs: Any) -> requests.Response: ...


@dataclass(frozen=True, slots=True)
class PlatformMessage:
    type: str
    placements: tuple[str, ...] = ()  # empty: the platform named none (Moodle lists bare type names)


@dataclass(frozen=True, slots=True)
class PlatformConfiguration:
    """The validated parts of the platform's OpenID configuration (LTI-DR "Platform Configuration")."""

    issuer: str
    authorization_endpoint: str
    registration_endpoint: str
    jwks_uri: str
    token_endpoint: str
    authorization_server: str | None  # the ``aud`` of token requests when given (Canvas: a host name)
    scopes_supported: tuple[str, ...] | None  # None: the platform did not say
    claims_supported: tuple[str, ...]
    product_family_code: str
    version: str | None
    messages_supported: tuple[PlatformMessage, ...]
    variables: tuple[str, ...]

    def message(self, message_type: str) -> PlatformMessage | None:
        return next((m for m in self.messages_supported if m.type == message_type), None)


@dataclass(frozen=True, slots=True)
class RegisteredTool:
    """What the tool stores once registered: one ``lti_registrations`` row (and a deployment if given)."""

    issuer: str
    client_id: str
    deployment_id: str | None  # Canvas makes deployments later, when an admin installs the tool
    auth_login_url: str
    auth_token_url: str
    auth_audience: str | None
    key_set_url: str
    product_family_code: str
    scopes: tuple[str, ...] = ()  # as the platform granted them; empty when its answer did not say


def fetch_platform_configuration(
    openid_configuration_url: str,
    registration_token: str | None,
    http: HttpSession,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> PlatformConfiguration:
    """GET the platform's configuration with the token as bearer (LTI-DR Step 2) and validate it."""
    url = openid_configuration_url
    with _token_kept_out(registration_token):
        _check_url("openid_configuration", url, "the registration request")
        if urlsplit(url).fragment:
            raise RegistrationRefused("the openid_configuration URL must not have a fragment")
        headers = _headers(registration_token)
        try:  # no redirects: the bearer token goes to the URL we were given and nowhere else
            response = http.get(url, headers=headers, timeout=timeout, allow_redirects=False)
        except requests.RequestException as error:  # its text may quote our headers: name the kind only
            where = _safe_url(url)
            raise RegistrationRefused(
                f"could not fetch {_CONFIG} from {where}: {type(error).__name__}"
            ) from None
        return parse_platform_configuration(_json_object(response, _CONFIG), url)


def parse_platform_configuration(document: Mapping[str, Any], url: str) -> PlatformConfiguration:
    """Validate a configuration document fetched from ``url``; errors name the field."""
    issuer = _check_url("issuer", document.get("issuer"), _CONFIG)
    if urlsplit(issuer).query or urlsplit(issuer).fragment:  # OpenID Connect Discovery 1.0 §3
        raise RegistrationRefused(f"{_CONFIG}: 'issuer' must have no query or fragment")
    if not _is_under(url, issuer):
        # LTI-DR 1.0 §3.5.1 "Issuer and OpenID Configuration URL Match": the document must come from
        # the issuer it names, or any site could pass itself off as a school's Moodle.
        raise RegistrationRefused(
            f"{_CONFIG}: the issuer {issuer} does not match the openid_configuration URL "
            f"{_safe_url(url)} (LTI-DR 1.0 §3.5.1)"
        )
    keys = ("authorization_endpoint", "registration_endpoint", "jwks_uri", "token_endpoint")
    endpoints = {key: _check_url(key, document.get(key), _CONFIG) for key in keys}
    methods = _strings(document, "token_endpoint_auth_methods_supported", _CONFIG)
    if methods is not None and "private_key_jwt" not in methods:  # LTI Advantage token requests use it
        raise RegistrationRefused(f"{_CONFIG}: 'token_endpoint_auth_methods_supported' lacks private_key_jwt")
    algorithms = _strings(document, "id_token_signing_alg_values_supported", _CONFIG)
    if algorithms is not None and "RS256" not in algorithms:  # Security Framework 1.0 §6.1
        raise RegistrationRefused(f"{_CONFIG}: 'id_token_signing_alg_values_supported' lacks RS256")
    audience = document.get("authorization_server")
    if audience is not None and (not isinstance(audience, str) or not audience):
        raise RegistrationRefused(f"{_CONFIG}: 'authorization_server' must be a non-empty string")
    lti = document.get(PLATFORM_CONFIGURATION)
    if not isinstance(lti, Mapping):
        raise RegistrationRefused(f"{_CONFIG}: '{PLATFORM_CONFIGURATION}' is missing")
    where = f"{_CONFIG}, {PLATFORM_CONFIGURATION}"
    product = lti.get("product_family_code")
    if not isinstance(product, str) or not product:
        raise RegistrationRefused(f"{where}: 'product_family_code' is missing")
    messages = _messages(lti.get("messages_supported"), where)
    if not any(message.type == RESOURCE_LINK for message in messages):
        raise RegistrationRefused(f"{where}: 'messages_supported' lacks {RESOURCE_LINK}")
    version = lti.get("version")
    return PlatformConfiguration(
        issuer=issuer,
        **endpoints,
        authorization_server=audience,
        scopes_supported=_strings(document, "scopes_supported", _CONFIG),
        claims_supported=_strings(document, "claims_supported", _CONFIG) or (),
        product_family_code=product,
        version=str(version) if isinstance(version, str | int | float) else None,
        messages_supported=messages,
        variables=_strings(lti, "variables", where) or (),
    )


def registration_request(tool: ToolDescription, platform: PlatformConfiguration) -> dict[str, Any]:
    """The client metadata to POST (LTI-DR §3.5.2 on OpenID Connect Dynamic Client Registration 1.0 §2)."""
    profile = platform_profile(platform.product_family_code)
    configuration: dict[str, Any] = {
        "domain": tool.domain,  # Moodle refuses a domain other than target_link_uri's host
        "target_link_uri": tool.launch_url,
        "description": tool.description,
        "claims": list(tool.claims),
        "messages": _messages_for(tool, platform, profile),
    }
    custom = {  # only variables the platform says it can substitute, when it says
        name: value
        for name, value in profile.custom_fields.items()
        if not platform.variables or value.removeprefix("$") in platform.variables
    }
    if custom:
        configuration["custom_parameters"] = custom
    configuration.update(profile.registration_extras(tool))  # Canvas's privacy level and tool id
    supported = platform.scopes_supported
    return {
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": tool.login_url,
        "redirect_uris": list(tool.redirect_uris),
        "client_name": tool.title,
        "jwks_uri": tool.jwks_url,
        "logo_uri": tool.icon_url,
        "token_endpoint_auth_method": "private_key_jwt",
        # Always present, maybe empty: Canvas splits it unchecked. A platform silent on its scopes is
        # asked for all of ours; its administrator can still trim them.
        "scope": " ".join(s for s in tool.scopes if supported is None or s in supported),
        TOOL_CONFIGURATION: configuration,
    }


def register(
    tool: ToolDescription,
    platform: PlatformConfiguration,
    registration_token: str | None,
    http: HttpSession,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> RegisteredTool:
    """POST the registration with the token as bearer (LTI-DR §3.5) and read the answer (§3.6)."""
    body = registration_request(tool, platform)
    endpoint = platform.registration_endpoint
    with _token_kept_out(registration_token):
        headers = _headers(registration_token)
        try:
            response = http.post(endpoint, json=body, headers=headers, timeout=timeout, allow_redirects=False)
        except requests.RequestException as error:
            raise RegistrationRefused(
                f"could not reach {_safe_url(endpoint)}: {type(error).__name__}"
            ) from None
        return parse_registration_answer(_json_object(response, _ANSWER), platform)


def parse_registration_answer(answer: Mapping[str, Any], platform: PlatformConfiguration) -> RegisteredTool:
    """client_id is required; deployment_id, in the tool configuration, may be absent (Canvas)."""
    client_id = _identifier(answer.get("client_id"))
    if client_id is None:
        raise RegistrationRefused(f"{_ANSWER}: 'client_id' is missing")
    configuration = answer.get(TOOL_CONFIGURATION) or {}
    if not isinstance(configuration, Mapping):
        raise RegistrationRefused(f"{_ANSWER}: '{TOOL_CONFIGURATION}' is not an object")
    deployment = configuration.get("deployment_id")
    if deployment not in (None, "") and _identifier(deployment) is None:
        raise RegistrationRefused(f"{_ANSWER}: 'deployment_id' is not a string")
    scope = answer.get("scope")
    return RegisteredTool(
        issuer=platform.issuer,
        client_id=client_id,
        deployment_id=_identifier(deployment),
        auth_login_url=platform.authorization_endpoint,
        auth_token_url=platform.token_endpoint,
        auth_audience=platform.authorization_server,
        key_set_url=platform.jwks_uri,
        product_family_code=platform.product_family_code,
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
    )


def _messages_for(
    tool: ToolDescription, platform: PlatformConfiguration, profile: PlatformProfile
) -> list[dict[str, Any]]:
    """Our messages of the types the platform supports, on those of our placements it lists (if it lists)."""
    messages = []
    for message_type, label, placements in profile.messages:
        offered = platform.message(message_type)
        if offered is None:
            continue  # e.g. no deep linking message unless messages_supported lists it
        kept = [p for p in placements if not offered.placements or p in offered.placements]
        if placements and not kept:
            continue
        target = tool.deep_linking_url if message_type == DEEP_LINKING else tool.launch_url
        message = {"type": message_type, "target_link_uri": target, "label": getattr(tool, label)}
        message |= {"icon_uri": tool.icon_url, **({"placements": kept} if kept else {})}
        messages.append(message)
    return messages


def _messages(value: Any, where: str) -> tuple[PlatformMessage, ...]:
    # LTI-DR lists objects {"type", "placements"}; Moodle's openid-configuration.php lists bare names.
    if not isinstance(value, list) or not value:
        raise RegistrationRefused(f"{where}: 'messages_supported' is missing")
    messages = []
    for index, item in enumerate(value):
        item = {"type": item} if isinstance(item, str) else item
        kind = item.get("type") if isinstance(item, Mapping) else None
        placements = (item.get("placements") or []) if isinstance(item, Mapping) else None
        if not isinstance(kind, str) or not isinstance(placements, list) or not _all_str(placements):
            raise RegistrationRefused(f"{where}: 'messages_supported'[{index}] is not a message type")
        messages.append(PlatformMessage(kind, tuple(placements)))
    return tuple(messages)


def _strings(document: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = document.get(key)
    if value is not None and (not isinstance(value, list) or not _all_str(value)):
        raise RegistrationRefused(f"{where}: '{key}' must be a list of strings")
    return None if value is None else tuple(value)


def _all_str(values: list[Any]) -> bool:
    return all(isinstance(value, str) for value in values)


def _check_url(key: str, value: Any, where: str) -> str:
    """An absolute https URL; plain http only on a loopback host, so tests can run a fake platform."""
    if not isinstance(value, str) or not value:
        raise RegistrationRefused(f"{where}: '{key}' is missing")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise RegistrationRefused(f"{where}: '{key}' is not a URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise RegistrationRefused(f"{where}: '{key}' is not an absolute https URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise RegistrationRefused(f"{where}: '{key}' must use https")
    return value


def _is_under(url: str, issuer: str) -> bool:
    """Same scheme, host and port, and the issuer's path a whole-segment prefix of the URL's path:
    ``https://lms.edu`` does not cover ``https://lms.edu.evil.example``, nor ``/moodle`` ``/moodle2``."""
    a, b = urlsplit(url), urlsplit(issuer)

    def origin(parts: Any) -> tuple[str, str | None, int]:
        scheme = parts.scheme.lower()
        return scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80)

    base = b.path.rstrip("/")
    return origin(a) == origin(b) and (not base or a.path == base or a.path.startswith(base + "/"))


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if token:
        if not _BEARER.fullmatch(token):
            raise RegistrationRefused("the registration token is not a bearer token (RFC 6750 §2.1)")
        headers["Authorization"] = f"Bearer {token}"
    return headers


@contextmanager
def _token_kept_out(token: str | None) -> Iterator[None]:
    """Whatever a platform echoes back (its error text, an issuer), the token leaves no message."""
    try:
        yield
    except RegistrationRefused as error:
        if not token or token not in str(error):
            raise
        raise RegistrationRefused(str(error).replace(token, "[registration token]"), error.status) from None


def _json_object(response: requests.Response, what: str) -> Mapping[str, Any]:
    status = response.status_code
    if not 200 <= status < 300:  # a redirect too: we follow none
        raise RegistrationRefused(f"{what}: HTTP {status}: {_error_detail(response)}", status=status)
    if len(response.content) > MAX_ANSWER_BYTES:
        raise RegistrationRefused(f"{what}: the answer is larger than {MAX_ANSWER_BYTES} bytes")
    try:
        body = response.json()
    except ValueError:
        raise RegistrationRefused(f"{what}: the answer is not JSON") from None
    if not isinstance(body, Mapping):
        raise RegistrationRefused(f"{what}: the answer is not a JSON object")
    return body


def _error_detail(response: requests.Response) -> str:
    """The platform's reason: OAuth's error/error_description, Canvas's errorMessage, or Moodle's text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        keys = ("error", "error_description", "errorMessage", "message")
        text = ": ".join(body[key] for key in keys if isinstance(body.get(key), str) and body[key])
        if text:
            return text[:300]
    return " ".join(response.text.split())[:300] or "(no reason given)"


def _safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (Canvas puts the registration token in the query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _identifier(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None
