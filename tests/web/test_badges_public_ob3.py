"""OB 3.0 over HTTP: credentials that pass 1EdTech's schema, VC-JWTs checked with the published keys,
the status list bit that flips on revocation, and baked images that unbake to what is served."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.db.engine import Database
from bridge.domain import ob3
from bridge.issuing.baking import unbake_png, unbake_svg
from bridge.issuing.signing import verify_vc_jwt
from bridge.services.manual_awards import ManualAwards
from bridge.settings import Settings
from tests.issuing.support import award, requires_standards, schema_errors
from tests.issuing.test_signing import flip_one_byte
from tests.web.test_badges_public import assertion_path, get_json, signed_app


@pytest.fixture
def awarded(app: Flask, database: Database, settings: Settings) -> str:
    return assertion_path(app, award(database, settings, "safety-certified"))


def published_jwks(client: FlaskClient) -> dict[str, object]:
    return get_json(client, "/ob/jwks.json")


@requires_standards
@pytest.mark.parametrize("badge,tier", [("safety-certified", ""), ("welcome", ""), ("rising-star", "gold")])
def test_every_credential_validates_against_the_achievement_credential_schema(
    app: Flask, client: FlaskClient, database: Database, settings: Settings, badge: str, tier: str
) -> None:
    url = assertion_path(app, award(database, settings, badge, tier=tier))
    credential = get_json(client, f"{url}/credential")
    assert schema_errors(credential) == []
    token = client.get(f"{url}/credential.jwt").get_data(as_text=True)
    claims = verify_vc_jwt(token, published_jwks(client))
    assert (
        schema_errors({k: v for k, v in claims.items() if k not in {"iss", "jti", "sub", "nbf", "exp"}}) == []
    )


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_the_vc_jwt_verifies_with_the_published_key_and_not_after_a_one_byte_change(
    client: FlaskClient, awarded: str, alg: str
) -> None:
    response = client.get(f"{awarded}/credential.jwt?alg={alg}")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    token = response.get_data(as_text=True)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg and header["typ"] == "JWT"
    jwk = get_json(client, header["kid"])  # the kid dereferences to the public JWK
    assert "d" not in jwk and jwk["kid"] == header["kid"]
    claims = verify_vc_jwt(token, published_jwks(client))
    credential = get_json(client, f"{awarded}/credential")
    assert claims["iss"] == credential["issuer"]["id"]  # type: ignore[index]
    assert claims["jti"] == credential["id"] and claims["sub"] == credential["credentialSubject"]["id"]  # type: ignore[index]
    assert "exp" in claims and claims["nbf"] < claims["exp"]
    for part in (1, 2):
        with pytest.raises(jwt.InvalidTokenError):
            verify_vc_jwt(flip_one_byte(token, part), published_jwks(client))


def test_an_unknown_algorithm_is_422(client: FlaskClient, awarded: str) -> None:
    response = client.get(f"{awarded}/credential.jwt?alg=HS256")
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "invalid_query"


def test_credentials_signed_before_a_key_rotation_still_verify(
    app: Flask, client: FlaskClient, awarded: str
) -> None:
    before = client.get(f"{awarded}/credential.jwt?alg=EdDSA").get_data(as_text=True)
    app.extensions["bridge"].publisher.keys.rotate()
    after = client.get(f"{awarded}/credential.jwt?alg=EdDSA").get_data(as_text=True)
    assert jwt.get_unverified_header(before)["kid"] != jwt.get_unverified_header(after)["kid"]
    for token in (before, after):
        assert verify_vc_jwt(token, published_jwks(client))["jti"].startswith("http")


def status_bit(client: FlaskClient, credential: dict[str, object]) -> bool:
    entry = credential["credentialStatus"]
    assert isinstance(entry, dict)
    status_list = get_json(client, entry["statusListCredential"])
    assert status_list["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]
    subject = status_list["credentialSubject"]
    assert isinstance(subject, dict) and subject["statusPurpose"] == "revocation"
    bits = ob3.decode_bitstring(subject["encodedList"])
    assert len(bits) >= 16 * 1024
    return ob3.bit_is_set(bits, int(entry["statusListIndex"]))


def test_revocation_flips_the_status_bit_and_only_that_one(
    app: Flask, client: FlaskClient, database: Database, settings: Settings, awarded: str
) -> None:
    other = assertion_path(app, award(database, settings, "welcome"))
    mine, theirs = get_json(client, f"{awarded}/credential"), get_json(client, f"{other}/credential")
    assert not status_bit(client, mine) and not status_bit(client, theirs)
    award_id = int(awarded.rsplit("/", 1)[1].split("-")[0])
    ManualAwards(database, settings).revoke(award_id=award_id, actor="tests", reason="error")
    assert status_bit(client, mine) and not status_bit(client, theirs)


def test_the_baked_ob2_png_and_svg_unbake_to_the_served_assertion(client: FlaskClient, awarded: str) -> None:
    served = get_json(client, awarded)
    png = client.get(f"{awarded}/badge.png")
    assert png.mimetype == "image/png"
    assert json.loads(unbake_png(png.data, "openbadges") or "") == served
    assert served["image"] == f"http://127.0.0.1:8000{awarded}/badge.png"
    verify, body = unbake_svg(client.get(f"{awarded}/badge.svg").get_data(as_text=True), 2)
    assert verify == served["id"] and json.loads(body or "") == served


def test_the_baked_ob3_png_and_svg_unbake_to_the_served_credential(client: FlaskClient, awarded: str) -> None:
    served_jwt = client.get(f"{awarded}/credential.jwt").get_data(as_text=True)
    baked = unbake_png(client.get(f"{awarded}/credential.png").data, "openbadgecredential")
    assert baked == served_jwt  # RS256 (PKCS#1 v1.5) signatures are deterministic
    verify, _ = unbake_svg(client.get(f"{awarded}/credential.svg").get_data(as_text=True), 3)
    assert verify == served_jwt
    claims = verify_vc_jwt(baked, published_jwks(client))
    served = get_json(client, f"{awarded}/credential")
    assert {k: v for k, v in claims.items() if k in served} == served


def test_a_signed_issuers_baked_png_carries_the_jws(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    app = signed_app(database, database_url, tmp_path)
    client = app.test_client()
    url = assertion_path(app, award(database, app.extensions["bridge"].settings))
    jws = client.get(f"{url}/assertion.jws").get_data(as_text=True)
    assert unbake_png(client.get(f"{url}/badge.png").data, "openbadges") == jws
    assert unbake_svg(client.get(f"{url}/badge.svg").get_data(as_text=True), 2) == (jws, None)


def test_badge_images_are_served_as_png_and_svg(client: FlaskClient) -> None:
    png = client.get("/ob/images/welcome.png")
    assert png.mimetype == "image/png" and png.data.startswith(b"\x89PNG")
    svg = client.get("/ob/images/welcome.svg")
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.data


def test_the_status_list_is_also_served_signed_as_a_vc_jwt(
    app: Flask, client: FlaskClient, database: Database, settings: Settings, awarded: str
) -> None:
    entry = get_json(client, f"{awarded}/credential")["credentialStatus"]
    assert isinstance(entry, dict)
    url = entry["statusListCredential"].removeprefix("http://127.0.0.1:8000")
    response = client.get(url, headers={"Accept": "application/vc+jwt"})
    assert response.mimetype == "application/vc+jwt" and "Accept" in response.headers["Vary"]
    claims = verify_vc_jwt(response.get_data(as_text=True), published_jwks(client))
    assert claims["jti"] == entry["statusListCredential"] and claims["iss"] == claims["issuer"]
    bits = ob3.decode_bitstring(claims["credentialSubject"]["encodedList"])
    assert not ob3.bit_is_set(bits, int(entry["statusListIndex"]))
    assert (
        client.get("/ob/issuers/nobody/status/0", headers={"Accept": "application/vc+jwt"}).status_code == 404
    )
