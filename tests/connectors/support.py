"""Fixtures of real payload shapes, a test RSA key with its JWKS, and signed Canvas Live Events."""

from __future__ import annotations

import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors import ConnectorConfig, HttpPolicy

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CANVAS_URL = "https://canvas.example.edu"
MOODLE_URL = "https://moodle.example.edu"
JWKS_URL = "https://jwks.example.test/main/jwks"
MOODLE_SECRET = "s3cr3t-shared-token"
# No waiting in unit tests: backoff and pacing sleeps are recorded, not slept.
FAST = HttpPolicy(timeout=2.0, attempts=4, backoff_base=0.001, backoff_max=0.002, concurrency=2)


def fixture(lms: str, name: str) -> Any:
    return json.loads((FIXTURES / lms / f"{name}.json").read_text(encoding="utf-8"))


@cache
def signing_key(kid: str = "test-key-1") -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(*kids: str) -> dict[str, Any]:
    keys = []
    for kid in kids:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key(kid).public_key()))
        keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    return {"keys": keys}


def signed(payload: dict[str, Any], kid: str = "test-key-1", **claims: Any) -> bytes:
    """A Live Event as Canvas signs it: RS256, the event's metadata and body in the claims."""
    now = int(time.time())
    body = {"iss": "https://live-events.canvas.instructure.com", "iat": now, "exp": now + 300, **payload}
    body.update(claims)
    return jwt.encode(body, signing_key(kid), algorithm="RS256", headers={"kid": kid}).encode()


def canvas_config(**changes: Any) -> ConnectorConfig:
    values: dict[str, Any] = {
        "platform": "canvas1",
        "kind": "canvas",
        "base_url": CANVAS_URL,
        "token": "canvas-token",
        "webhook_auth": "jwt",
        "jwks_url": JWKS_URL,
        "policy": FAST,
    }
    values.update(changes)
    return ConnectorConfig(**values)


def moodle_config(**changes: Any) -> ConnectorConfig:
    values: dict[str, Any] = {
        "platform": "moodle1",
        "kind": "moodle",
        "base_url": MOODLE_URL,
        "token": "ws-token",
        "webhook_secret": MOODLE_SECRET,
        "webhook_auth": "token",
        "policy": FAST,
    }
    values.update(changes)
    return ConnectorConfig(**values)
