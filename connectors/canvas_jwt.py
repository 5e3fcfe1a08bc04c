"""Verifying Canvas Live Events: an RS256 JWT whose claims hold ``metadata`` and ``body``, or plain JSON
where the platform is configured unsigned.

Canvas Data Services, "Sign Payload" (instructure/canvas-lms doc/api/data_services/md/static/
data_service_setup.md): the body is a JWT signed with a key from Instructure's JWKS, "rotated monthly;
that endpoint returns the previous, current, and next (future) JWK used ... match the kid in the JWT
header". So the JWKS is cached, and fetched again when a token names an unknown kid, at most once per
``refetch_seconds`` so that forged kids cannot make us hammer the endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import requests

from connectors import BadSignature, ConnectorConfig, Malformed, read_json
from connectors.http import USER_AGENT

# Clock skew tolerated on exp/iat/nbf.
LEEWAY_SECONDS = 60


class JwksCache:
    def __init__(self, url: str, refetch_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.refetch_seconds = refetch_seconds
        self.fetches = 0
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._loaded = False
        self._refetched_at: float | None = None
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT

    def key(self, kid: str) -> Any:
        """The public key named ``kid``, or None when the JWKS (even fetched afresh) does not have it."""
        with self._lock:
            if kid in self._keys:
                return self._keys[kid]
            now = self._clock()
            if self._refetched_at is not None and now - self._refetched_at < self.refetch_seconds:
                return None  # asked again too recently: an unknown kid may be forged
            first_load = not self._loaded
            loaded = self._fetch()
            # The first successful load is not a refetch: a key rotated just after it is still found.
            if not (first_load and loaded):
                self._refetched_at = now
            return self._keys.get(kid)

    def _fetch(self) -> bool:
        self.fetches += 1
        try:
            response = self._session.get(self.url, timeout=5)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (requests.RequestException, ValueError, jwt.PyJWKSetError):
            return False  # keep the keys we have; an unknown kid is then refused as a bad signature
        self._keys = {key.key_id: key.key for key in keys if key.key_id}
        self._loaded = True
        return True

    def close(self) -> None:
        self._session.close()


def verify_live_event(body: bytes, config: ConnectorConfig, jwks: JwksCache) -> dict[str, Any]:
    """The Live Event ``{"metadata", "body"}`` a request carries, verified as the platform requires."""
    text = body.decode("utf-8", errors="replace").strip()
    if config.webhook_auth == "unsigned":
        return _envelope(read_json(text))
    if text.startswith("{"):
        raise BadSignature("this platform accepts only signed Live Events (an RS256 JWT)")
    try:
        header = jwt.get_unverified_header(text)
    except jwt.DecodeError:
        raise Malformed("the body is neither a JWT nor JSON") from None
    if header.get("alg") != "RS256":
        raise BadSignature(f"unexpected JWT algorithm {header.get('alg')!r} (Canvas signs with RS256)")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise BadSignature("the JWT header names no key (kid)")
    key = jwks.key(kid)
    if key is None:
        raise BadSignature(f"no key {kid!r} in the platform's JWKS")
    options: dict[str, Any] = {"verify_aud": False, "require": []}
    try:
        claims = jwt.decode(
            text,
            key,
            algorithms=["RS256"],
            issuer=config.jwt_issuer,  # the issuer is undocumented: checked only when configured
            options=options,
            leeway=LEEWAY_SECONDS,
        )
    except jwt.InvalidIssuerError:
        raise BadSignature("the JWT's issuer is not the configured jwt_issuer") from None
    except jwt.ExpiredSignatureError:
        raise BadSignature("the JWT has expired") from None
    except jwt.InvalidTokenError as error:
        raise BadSignature(f"the JWT does not verify ({type(error).__name__})") from None
    return _envelope(claims)


def _envelope(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("metadata"), dict):
        raise Malformed("expected a Canvas Live Event: 'metadata' and 'body' objects")
    if not isinstance(payload.get("body"), dict):
        raise Malformed("expected a Canvas Live Event: 'metadata' and 'body' objects")
    return {"metadata": payload["metadata"], "body": payload["body"]}
