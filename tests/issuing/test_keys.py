"""Signing keys: made on first start with owner-only files, rotated, old ones still published."""

from __future__ import annotations

import logging
import stat
import threading
from pathlib import Path

import jwt
import pytest

from bridge.issuing.keys import KeyRing
from bridge.issuing.signing import sign_vc_jwt, verify_vc_jwt


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_first_start_makes_an_rsa_and_an_ed25519_key_readable_by_the_owner_only(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path)
    keys = ring.all_keys()
    assert sorted(k.alg for k in keys) == ["EdDSA", "RS256"]
    assert all(k.active for k in keys)
    assert mode(tmp_path / "keys") == 0o700
    for key in keys:
        assert mode(tmp_path / "keys" / f"{key.kid}.pem") == 0o600
    assert mode(tmp_path / "keys" / "secret.bin") == 0o600
    assert len(ring.secret) == 32


def test_a_second_start_reuses_the_keys_and_the_secret(tmp_path: Path) -> None:
    first = KeyRing.open(tmp_path)
    second = KeyRing.open(tmp_path)
    assert [k.kid for k in first.all_keys()] == [k.kid for k in second.all_keys()]
    assert first.secret == second.secret


def test_processes_starting_together_make_one_key_set(tmp_path: Path) -> None:
    rings: list[KeyRing] = []
    threads = [threading.Thread(target=lambda: rings.append(KeyRing.open(tmp_path))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({tuple(k.kid for k in ring.all_keys()) for ring in rings}) == 1
    assert len(list((tmp_path / "keys").glob("*.pem"))) == 2


def test_rotation_retires_the_old_pair_which_still_verifies(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path)
    old = ring.active("EdDSA")
    token = sign_vc_jwt({"sub": "x"}, old, old.kid)
    new = ring.rotate()
    assert sorted(k.alg for k in new) == ["EdDSA", "RS256"]
    assert ring.active("EdDSA").kid != old.kid
    retired = ring.get(old.kid)
    assert retired is not None and not retired.active
    jwks = {"keys": [k.public_jwk() for k in ring.all_keys()]}
    assert len(jwks["keys"]) == 4
    assert verify_vc_jwt(token, jwks)["sub"] == "x"


def test_a_running_server_sees_a_rotation_made_by_another_process(tmp_path: Path) -> None:
    server = KeyRing.open(tmp_path)
    before = server.active("RS256").kid
    KeyRing.open(tmp_path).rotate()  # `badge-bridge keys rotate` from a terminal
    assert server.active("RS256").kid != before


def test_published_jwks_hold_no_private_parts(tmp_path: Path) -> None:
    for key in KeyRing.open(tmp_path).all_keys():
        jwk = key.public_jwk("https://x/ob/keys/" + key.kid)
        assert "d" not in jwk and "p" not in jwk
        assert jwk["kid"].endswith(key.kid) and jwk["alg"] == key.alg
        assert isinstance(jwt.PyJWK(jwk).key, type(key.public_key))


def test_keys_are_neither_logged_nor_in_their_repr(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        ring = KeyRing.open(tmp_path)
        ring.rotate()
    key = ring.active("RS256")
    assert "PRIVATE" not in repr(key) and "private_key" not in repr(key)
    created = [r for r in caplog.records if r.msg == "signing_keys.created"]
    assert len(created) == 2  # first start, rotation: key ids only
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert "PRIVATE KEY" not in logged and ring.secret.hex() not in logged


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_an_unknown_kid_does_not_verify(tmp_path: Path, alg: str) -> None:
    ring = KeyRing.open(tmp_path)
    token = sign_vc_jwt({"sub": "x"}, ring.active(alg), "https://x/unknown")  # type: ignore[arg-type]
    with pytest.raises(jwt.InvalidTokenError, match="no published key"):
        verify_vc_jwt(token, {"keys": [k.public_jwk() for k in ring.all_keys()]})
