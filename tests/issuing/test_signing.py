"""VC-JWTs (RS256, EdDSA) and OB 2.0 JWS: they verify with the public key and not after any change."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest

from bridge.issuing.keys import KeyRing
from bridge.issuing.signing import sign_ob2_assertion, sign_vc_jwt, verify_vc_jwt


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing.open(tmp_path_factory.mktemp("data"))


def jwks(ring: KeyRing) -> dict[str, object]:
    return {"keys": [k.public_jwk() for k in ring.all_keys()]}


def flip_one_byte(token: str, part: int) -> str:
    pieces = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(pieces[part] + "=" * (-len(pieces[part]) % 4)))
    raw[len(raw) // 2] ^= 0x01
    pieces[part] = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    return ".".join(pieces)


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_a_vc_jwt_verifies_and_carries_kid_and_typ(ring: KeyRing, alg: str) -> None:
    key = ring.active(alg)  # type: ignore[arg-type]
    token = sign_vc_jwt({"iss": "https://x", "sub": "urn:uuid:1"}, key, key.kid)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": key.kid, "typ": "JWT"}
    assert verify_vc_jwt(token, jwks(ring))["sub"] == "urn:uuid:1"


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
@pytest.mark.parametrize("part", [1, 2])
def test_one_changed_byte_in_payload_or_signature_fails(ring: KeyRing, alg: str, part: int) -> None:
    key = ring.active(alg)  # type: ignore[arg-type]
    token = sign_vc_jwt({"sub": "urn:uuid:1", "name": "A badge"}, key, key.kid)
    with pytest.raises(jwt.InvalidTokenError):
        verify_vc_jwt(flip_one_byte(token, part), jwks(ring))


def test_an_ob2_signed_assertion_is_a_jws_over_the_assertion_json(ring: KeyRing) -> None:
    assertion = {"@context": "https://w3id.org/openbadges/v2", "type": "Assertion", "id": "urn:uuid:1"}
    token = sign_ob2_assertion(assertion, ring.active("RS256"))
    payload = jwt.api_jws.PyJWS().decode(token, ring.active("RS256").public_key, algorithms=["RS256"])
    assert json.loads(payload) == assertion
    with pytest.raises(ValueError, match="RS256"):
        sign_ob2_assertion(assertion, ring.active("EdDSA"))


def test_ob2_keys_must_be_rsa_because_ob2_verifiers_know_only_rs256(tmp_path: Path) -> None:
    key = KeyRing.open(tmp_path).active("RS256")
    assert key.public_pem().startswith("-----BEGIN PUBLIC KEY-----")
