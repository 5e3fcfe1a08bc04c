"""The LTI tool as the views use it: its keys, its description, and login, launch and deep linking
run against the database's registrations. Made once by the composition root."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pylti1p3.contrib.flask import FlaskRequest
from pylti1p3.deep_link_resource import DeepLinkResource

from bridge import metrics
from bridge.db.engine import Database
from bridge.db.models_lti import LtiRegistration
from bridge.issuing.keys import KeyRing, SigningKey
from bridge.lti.jobs import lti_services
from bridge.lti.launch import (
    DatabaseToolConf,
    LaunchPolicy,
    LaunchRefused,
    StrictLaunch,
    StrictLogin,
    origin,
)
from bridge.lti.platform_keys import PlatformKeys
from bridge.lti.sessions import LaunchContext, LaunchTokens, find_launch, record_launch
from bridge.lti.store import LaunchStore
from bridge.lti.tool_config import ToolDescription
from bridge.settings import Settings

log = logging.getLogger(__name__)
INVITE_DAYS = 7  # how long a Dynamic Registration URL from `badge-bridge lti invite` works
DEEP_LINKING_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"


@dataclass(frozen=True, slots=True)
class DeepLinkItem:
    title: str
    url: str  # where the placed link launches: one of the tool's own URLs
    custom: dict[str, str]


class LtiTool:
    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        self.store = LaunchStore(database)
        self.services = lti_services(database, settings)
        self._pem: tuple[str, str] | None = None
        lti = settings.lti
        base = str(settings.public_base_url).rstrip("/")
        self.description = ToolDescription(lti.title, lti.description, base)
        # The tool's own key pair, beside the badge keys; its secret signs the launch tokens.
        self.keys = KeyRing.open_directory(settings.data_dir / "keys" / "lti", ("RS256",))
        self.platform_keys = PlatformKeys(
            timeout=lti.timeout_seconds,
            cache_seconds=lti.jwks_cache_seconds,
            refetch_seconds=lti.jwks_refetch_seconds,
        )
        self.tokens = LaunchTokens(self.keys.secret, timedelta(minutes=lti.session_minutes))
        self.policy = LaunchPolicy(
            launch_url=self.description.launch_url,
            tool_origin=origin(base),
            leeway_seconds=lti.clock_leeway_seconds,
            max_token_age_seconds=lti.max_token_age_seconds,
        )

    @property
    def signing_key(self) -> SigningKey:
        return self.keys.active("RS256")

    def jwks(self) -> dict[str, Any]:
        """The active key and keys retired within ``retired_key_days``: platforms that cached the old
        one still verify what it signed while they catch up."""
        cutoff = time.time() - self._settings.lti.retired_key_days * 86400
        keys = [
            key.public_jwk()
            for key in self.keys.all_keys()
            if key.active or (key.retired_at is not None and key.retired_at.timestamp() >= cutoff)
        ]
        return {"keys": keys}

    def registration_invite(self, platform_id: str) -> str:
        """The Dynamic Registration URL an administrator gives a platform to register as ``platform_id``.

        Signed and expiring: the view fetches whatever openid_configuration URL it is handed, so only
        someone the operator invited may make it do so, and the registration lands pending anyway."""
        invite = URLSafeTimedSerializer(self.keys.secret, salt="lti-register").dumps(platform_id)
        return f"{self.description.registration_url}?{urlencode({'invite': invite})}"

    def invited_platform(self, invite: str | None) -> str | None:
        if not invite:
            return None
        try:
            platform = URLSafeTimedSerializer(self.keys.secret, salt="lti-register").loads(
                invite, max_age=INVITE_DAYS * 86400
            )
        except BadSignature:
            return None
        return platform if isinstance(platform, str) and self._settings.platform(platform) else None

    def _tool_conf(self) -> DatabaseToolConf:
        key = self.signing_key
        if self._pem is None or self._pem[0] != key.kid:  # exported once per key, not per launch
            pem = key.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            self._pem = (key.kid, pem.decode("ascii"))
        return DatabaseToolConf(self.store, key, self._pem[1])

    def login(self, request: FlaskRequest) -> Any:
        """The redirect to the platform's authorization endpoint (a Flask response)."""
        login = StrictLogin(request, self._tool_conf(), self.store, self.policy)
        return login.redirect(self.description.launch_url)

    def launch(self, request: FlaskRequest) -> tuple[LaunchContext, StrictLaunch]:
        launch = StrictLaunch(request, self._tool_conf(), self.store, self.policy, self.platform_keys)
        launch.validate()
        registration = launch.registration
        platform = self._settings.platform(registration.bridge_platform)
        if platform is None:
            raise LaunchRefused(
                "unknown_registration",
                "The platform this tool is registered for is no longer configured.",
                403,
            )
        assert launch.state_hash is not None
        context = record_launch(
            self.store,
            launch.state_hash,
            launch.claims,
            registration.bridge_id,
            platform.id,
            platform.kind,
            self.tokens.lifetime,
        )
        metrics.LTI_LAUNCHES.labels(platform.id, context.message_type).inc()
        if context.is_instructor and context.context_id is not None:
            # The course's roster (names, emails), read off the request; at most every few minutes.
            self.services.rosters.refresh_in_background(context.registration_id, context.context_id)
        return context, launch

    def context(self, token: str | None) -> LaunchContext | None:
        """The launch a page's token stands for, while it is valid."""
        launch_id = self.tokens.launch_id(token) if token else None
        return find_launch(self._database, launch_id) if launch_id else None

    def deep_linking_response(self, context: LaunchContext, items: Sequence[DeepLinkItem]) -> tuple[str, str]:
        """The signed LtiDeepLinkingResponse for a deep linking launch and where to post it."""
        settings = context.claims.get(DEEP_LINKING_SETTINGS)
        if context.message_type != "LtiDeepLinkingRequest" or not isinstance(settings, dict):
            raise LaunchRefused("bad_message", "This launch cannot place content in the course.", 403)
        with self._database.read() as session:
            row = session.get(LtiRegistration, context.registration_id)
        if row is None or row.status != "active":
            raise LaunchRefused("unknown_registration", "The tool's registration is no longer active.", 403)
        key = self.signing_key
        now = int(time.time())
        resources = [
            DeepLinkResource().set_url(item.url).set_title(item.title).set_custom_params(item.custom)
            for item in items
        ]
        claims = {
            "iss": row.client_id,
            "aud": row.issuer,
            "iat": now,
            "exp": now + 300,
            "nonce": secrets.token_urlsafe(16),
            "https://purl.imsglobal.org/spec/lti/claim/deployment_id": context.deployment_id,
            "https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiDeepLinkingResponse",
            "https://purl.imsglobal.org/spec/lti/claim/version": "1.3.0",
            "https://purl.imsglobal.org/spec/lti-dl/claim/content_items": [r.to_dict() for r in resources],
        }
        if "data" in settings:  # echoed as given (LTI Deep Linking 2.0 §4.4.5)
            claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"] = settings["data"]
        token = jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})
        return token, settings["deep_link_return_url"]
