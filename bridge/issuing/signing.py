"""Signatures: OB 2.0 signed assertions (JWS) and OB 3.0 VC-JWTs, both with PyJWT.

PyJWT rather than jwcrypto: it signs RS256 and EdDSA with ``cryptography`` keys directly, the LTI side
of the project already depends on it, and an OB 2.0 signed badge is a plain compact JWS whose payload is
the assertion JSON, which ``PyJWS.encode`` writes from bytes as they are.
"""

from __future__ import annotations

import json
from typing import Any

import jwt
from jwt.api_jws import PyJWS

from bridge.issuing.keys import SigningKey

VC_JWT_MEDIA_TYPE = "text/plain"  # OB 3.0 §8.2: a VC-JWT served on the web is text/plain


def sign_ob2_assertion(assertion: dict[str, Any], key: SigningKey) -> str:
    """A compact JWS over the assertion JSON. OB 2.0 verifiers know RS256 only, so the RSA key signs."""
    if key.alg != "RS256":
        raise ValueError("OB 2.0 signed badges use RS256")
    payload = json.dumps(assertion, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return PyJWS().encode(payload, key.private_key, algorithm="RS256")


def sign_vc_jwt(claims: dict[str, Any], key: SigningKey, kid_url: str) -> str:
    """A VC-JWT; ``kid_url`` dereferences to the public JWK (the OB 3.0 ``kid`` rule)."""
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"kid": kid_url, "typ": "JWT"})


def verify_vc_jwt(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The claims of ``token`` if a key of ``jwks`` (matched by ``kid``) verifies it; raises otherwise.

    ``exp``/``nbf`` are not enforced here: a verifier reports expiry itself, and an expired badge was
    still issued by us.
    """
    header = jwt.get_unverified_header(token)
    match = next((k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
    if match is None:
        raise jwt.InvalidTokenError(f"no published key with kid {header.get('kid')!r}")
    key = jwt.PyJWK(match)
    return jwt.decode(
        token,
        key.key,
        algorithms=[match["alg"]],
        options={"verify_exp": False, "verify_nbf": False, "verify_aud": False},
    )
