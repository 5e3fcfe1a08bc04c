"""What the LTI 1.3 tool says about itself: its URLs, the scopes and claims it asks for, where each
platform family should show it, and the Canvas developer-key JSON built from them.

One frozen :class:`ToolDescription` is the single source for both ways a platform learns about the tool:
Dynamic Registration (``bridge.lti.dynamic_registration``) and Canvas's "Paste JSON / Enter URL"
developer key (instructure/canvas-lms ``doc/api/lti_dev_key_config.md``, "Anatomy of a JSON
configuration"). Plain data, no Flask: the view serves :func:`canvas_developer_key` as JSON as it stands.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

RESOURCE_LINK = "LtiResourceLinkRequest"
DEEP_LINKING = "LtiDeepLinkingRequest"

NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
AGS_LINEITEM_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
AGS_LINEITEM_READONLY_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
AGS_SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
AGS_RESULT_READONLY_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"

# The roster (NRPS 2.0) and the optional "Badge points" grade column (AGS 2.0).
TOOL_SCOPES: tuple[str, ...] = (
    NRPS_SCOPE,
    AGS_LINEITEM_SCOPE,
    AGS_LINEITEM_READONLY_SCOPE,
    AGS_SCORE_SCOPE,
    AGS_RESULT_READONLY_SCOPE,
)
# OpenID Connect claims wanted in every id_token (LTI-DR 1.0 tool configuration "claims"; LTI Core 1.3
# §5.3.6 user identity claims): the name and email are shown on badge pages and put in assertions.
TOOL_CLAIMS: tuple[str, ...] = ("iss", "sub", "name", "given_name", "family_name", "email")

# Canvas variable substitutions (instructure/canvas-lms doc/api/tools_variable_substitutions.md): a Canvas
# `sub` is an opaque LTI id, so the learner is found by the Canvas user id the connectors use (DESIGN.md,
# "Identity"). No login id: the bridge does not need it and it is personal data.
CANVAS_CUSTOM_FIELDS: dict[str, str] = {
    "canvas_user_id": "$Canvas.user.id",
    "canvas_course_id": "$Canvas.course.id",
}
CANVAS_EXTENSION_PLATFORM = "canvas.instructure.com"
# "public" sends name, email and picture (lti_dev_key_config.md, privacy_level); the default, "anonymous",
# would leave the learner without a name on their badge.
CANVAS_PRIVACY_LEVEL = "public"
CANVAS_PRIVACY_LEVEL_KEY = "https://canvas.instructure.com/lti/privacy_level"
CANVAS_TOOL_ID_KEY = "https://canvas.instructure.com/lti/tool_id"

_LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses: the only hosts plain http is accepted for (tests)."""
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ToolDescription:
    """The tool as platforms see it. Every URL is derived from ``base_url`` so they cannot drift apart.

    ``base_url`` is https (plain http only on a loopback host, for tests), with no query or fragment;
    a trailing slash is dropped.
    """

    title: str
    description: str
    base_url: str
    tool_id: str = "lms-badge-bridge"  # Canvas's tool_id: correlates our installs across accounts
    icon_path: str = "/lti/icon.svg"
    course_navigation_label: str = "Badges"
    user_navigation_label: str = "My badges"
    deep_linking_label: str = "Badges"
    scopes: tuple[str, ...] = TOOL_SCOPES
    claims: tuple[str, ...] = TOOL_CLAIMS

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise ValueError("ToolDescription.title must not be empty")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"ToolDescription.base_url must be an absolute https URL: {self.base_url!r}")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError("ToolDescription.base_url must use https (plain http only on a loopback host)")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("ToolDescription.base_url must have no query, fragment or credentials")
        if not self.icon_path.startswith("/"):
            raise ValueError("ToolDescription.icon_path must start with '/'")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @property
    def login_url(self) -> str:
        """OIDC third-party login initiation (Security Framework 1.0 §5.1.1.1)."""
        return self._url("/lti/login")

    @property
    def launch_url(self) -> str:
        """Where id_tokens are posted: the one redirect URI and every message's target_link_uri."""
        return self._url("/lti/launch")

    @property
    def deep_linking_url(self) -> str:
        """Deep Linking requests arrive at the launch URL too; the message type tells them apart."""
        return self.launch_url

    @property
    def jwks_url(self) -> str:
        return self._url("/lti/jwks.json")

    @property
    def icon_url(self) -> str:
        return self._url(self.icon_path)

    @property
    def registration_url(self) -> str:
        """The Dynamic Registration initiation URL an administrator pastes into the platform."""
        return self._url("/lti/register")

    @property
    def redirect_uris(self) -> tuple[str, ...]:
        # Platforms compare redirect_uri exactly (reference/lti.md §4.7): one, spelled one way.
        return (self.launch_url,)

    @property
    def domain(self) -> str:
        """Host, with the port when it is not the scheme's default (LTI-DR tool configuration ``domain``)."""
        parts = urlsplit(self.base_url)
        host = (parts.hostname or "").lower()
        if ":" in host:  # an IPv6 literal keeps its brackets
            host = f"[{host}]"
        default = 443 if parts.scheme == "https" else 80
        return host if parts.port in (None, default) else f"{host}:{parts.port}"


@dataclass(frozen=True, slots=True)
class PlatformProfile:
    """Where one platform family (LTI-DR ``product_family_code``) shows the tool, and what else it is told.

    ``messages`` are (message type, ToolDescription label attribute, placements); one message per label.
    """

    messages: tuple[tuple[str, str, tuple[str, ...]], ...]
    custom_fields: Mapping[str, str] = field(default_factory=dict)
    registration_extras: Callable[[ToolDescription], dict[str, str]] = lambda _tool: {}


# Canvas's placement names and extension keys: instructure/canvas-lms doc/api/registration.md ("LTI
# Message schema", "LTI Tool Configuration schema") and lti_dev_key_config.md. editor_button shows only an
# icon in the rich content editor's toolbar, so every message carries one.
CANVAS_PROFILE = PlatformProfile(
    messages=(
        (RESOURCE_LINK, "course_navigation_label", ("course_navigation",)),
        (RESOURCE_LINK, "user_navigation_label", ("user_navigation",)),
        (DEEP_LINKING, "deep_linking_label", ("link_selection", "editor_button")),
    ),
    custom_fields=CANVAS_CUSTOM_FIELDS,
    registration_extras=lambda tool: {
        CANVAS_PRIVACY_LEVEL_KEY: CANVAS_PRIVACY_LEVEL,
        CANVAS_TOOL_ID_KEY: tool.tool_id,
    },
)
# Everyone else: LTI-DR's generic placement names, and none for the resource link, which Moodle places
# itself (an activity in a course).
STANDARD_PROFILE = PlatformProfile(
    messages=(
        (RESOURCE_LINK, "course_navigation_label", ()),
        (DEEP_LINKING, "deep_linking_label", ("ContentArea", "RichTextEditor")),
    )
)
PROFILES: Mapping[str, PlatformProfile] = {"canvas": CANVAS_PROFILE}


def platform_profile(product_family_code: str) -> PlatformProfile:
    return PROFILES.get(product_family_code, STANDARD_PROFILE)


def canvas_developer_key(tool: ToolDescription) -> dict[str, Any]:
    """The Canvas developer-key JSON configuration of the tool.

    Shape and field names from instructure/canvas-lms ``doc/api/lti_dev_key_config.md`` ("Anatomy of a
    JSON configuration"): ``public_jwk_url`` rather than a pasted key so key rotation needs no Canvas
    change; every placement launches the one launch URL (the message type and our own state say what to
    show), and ``custom_fields`` at the tool level reach every placement.
    """
    placements = [
        {
            "placement": placement,
            "message_type": message_type,
            "text": getattr(tool, label),
            "icon_url": tool.icon_url,
            "target_link_uri": tool.launch_url,
        }
        for message_type, label, names in CANVAS_PROFILE.messages
        for placement in names
    ]
    return {
        "title": tool.title,
        "description": tool.description,
        "oidc_initiation_url": tool.login_url,
        "target_link_uri": tool.launch_url,
        "scopes": list(tool.scopes),
        "extensions": [
            {
                "domain": tool.domain,
                "tool_id": tool.tool_id,
                "platform": CANVAS_EXTENSION_PLATFORM,
                "privacy_level": CANVAS_PRIVACY_LEVEL,
                "settings": {"text": tool.title, "icon_url": tool.icon_url, "placements": placements},
            }
        ],
        "public_jwk_url": tool.jwks_url,
        "custom_fields": dict(CANVAS_PROFILE.custom_fields),
    }
