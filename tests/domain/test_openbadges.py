"""The pure Open Badges builders: identities, OB 2.0 documents, OB 3.0 credentials and status lists."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.domain import ob2, ob3
from bridge.domain.openbadges import (
    Achievement,
    Evidence,
    IssuedBadge,
    IssuerProfile,
    Recipient,
    award_salt,
    evidence_text,
    identity_hash,
    learner_uuid,
    parse_public_award_id,
    public_award_id,
    recipient_for,
)
from tests.issuing.support import requires_standards, schema_errors

SECRET = b"s" * 32
BASE = "https://badges.example.org"
ISSUER = IssuerProfile(id=f"{BASE}/ob/issuers/default", name="Example U", url=BASE, email="b@example.org")
BADGE = Achievement(
    id=f"{BASE}/ob/issuers/default/badges/intro",
    name="Intro",
    description="Did the intro.",
    image=f"{BASE}/ob/images/intro.png",
    criteria_narrative="Complete the intro.",
    tags=("intro",),
)
ISSUED_ON = datetime(2026, 1, 15, 12, 0, 0, 123456, tzinfo=UTC)


def issued(**changes: object) -> IssuedBadge:
    values: dict[str, object] = {
        "id": f"{BASE}/ob/assertions/1-abc",
        "recipient": Recipient("alice@example.org", "email", "s4lt"),
        "subject_id": "urn:uuid:8f0e3c36-0c0b-4c51-9a55-7a3c2f1f0b11",
        "issued_on": ISSUED_ON,
        "expires": ISSUED_ON + timedelta(days=365),
        "evidence": (Evidence("Quiz graded: DL101 / q1, score 92%", "Recorded by moodle."),),
    }
    values.update(changes)
    return IssuedBadge(**values)  # type: ignore[arg-type]


def test_the_identity_hash_matches_the_reference_vector() -> None:
    expected = "sha256$081e07ee2ae2d376eb9cd04d9c4ff9479fbb1e7642ece147afa335408920895c"
    assert identity_hash("alice@example.org", "s4lt") == expected


def test_salts_are_per_award_stable_and_secret_dependent() -> None:
    assert award_salt(SECRET, 1) == award_salt(SECRET, 1)
    assert award_salt(SECRET, 1) != award_salt(SECRET, 2)
    assert award_salt(SECRET, 1) != award_salt(b"t" * 32, 1)
    assert len(award_salt(SECRET, 1)) == 32


def test_public_award_ids_round_trip_and_reject_guesses() -> None:
    public = public_award_id(SECRET, 42)
    assert public.startswith("42-")
    assert parse_public_award_id(SECRET, public) == 42
    assert parse_public_award_id(SECRET, public[:-1] + ("0" if public[-1] != "0" else "1")) is None
    assert parse_public_award_id(SECRET, public.replace("42-", "43-")) is None
    assert parse_public_award_id(SECRET, "x-1") is None
    assert parse_public_award_id(b"t" * 32, public) is None


def test_the_recipient_is_the_lowercased_email_or_the_pseudonymous_fallback_url() -> None:
    learner = learner_uuid(SECRET, "moodle1", "7")
    by_email = recipient_for(email=" Alice@Example.org ", salt="x", fallback_base=BASE, learner_id=learner)
    assert (by_email.identity, by_email.type) == ("alice@example.org", "email")
    fallback = recipient_for(email=None, salt="x", fallback_base=BASE + "/", learner_id=learner)
    assert (fallback.identity, fallback.type) == (f"{BASE}/ob/recipients/{learner}", "url")
    assert learner_uuid(SECRET, "moodle1", "7") == learner  # stable: the same URL on every badge
    assert learner not in {learner_uuid(SECRET, "moodle1", "8"), learner_uuid(SECRET, "canvas", "7")}


def test_evidence_text_names_kind_place_and_score() -> None:
    assert evidence_text("quiz_graded", "DL101", "q1", 0.915) == "Quiz graded: DL101 / q1, score 92%"
    assert evidence_text("login", None, None, None) == "Login"


def test_an_assertion_is_hosted_hashed_and_dated_with_offsets() -> None:
    document = ob2.assertion(issued(), BADGE.id)
    assert document["@context"] == "https://w3id.org/openbadges/v2"
    assert document["type"] == "Assertion"
    assert document["verification"] == {"type": "HostedBadge"}
    assert document["recipient"] == {
        "type": "email",
        "hashed": True,
        "salt": "s4lt",
        "identity": identity_hash("alice@example.org", "s4lt"),
    }
    assert document["issuedOn"] == "2026-01-15T12:00:00+00:00"
    assert document["expires"] == "2027-01-15T12:00:00+00:00"
    assert document["evidence"][0]["name"].startswith("Quiz graded")
    assert "revoked" not in document and "image" not in document


def test_a_signed_assertion_names_its_key_and_a_revoked_one_says_so() -> None:
    document = ob2.assertion(issued(revoked=True, revocation_reason="error"), BADGE.id, signing_key="k")
    assert document["verification"] == {"type": "SignedBadge", "creator": "k"}
    assert (document["revoked"], document["revocationReason"]) == (True, "error")
    assert "expires" not in ob2.assertion(issued(expires=None), BADGE.id)


def test_a_revoked_hosted_assertion_is_stripped_of_recipient_and_badge() -> None:
    document = ob2.revoked_assertion("https://x/a/1", "Awarded in error")
    assert document == {
        "@context": ob2.CONTEXT,
        "type": "Assertion",
        "id": "https://x/a/1",
        "revoked": True,
        "revocationReason": "Awarded in error",
    }


def test_issuer_badge_class_key_and_revocation_list() -> None:
    signed = replace(ISSUER, revocation_list="https://x/rl", public_keys=("https://x/k",))
    profile = ob2.issuer_profile(signed)
    assert {profile[k] for k in ("name", "url", "email")} == {"Example U", BASE, "b@example.org"}
    assert profile["publicKey"] == ["https://x/k"] and profile["revocationList"] == "https://x/rl"
    assert "publicKey" not in ob2.issuer_profile(ISSUER)
    badge = ob2.badge_class(BADGE, ISSUER.id)
    assert badge["criteria"] == {"narrative": "Complete the intro."} and badge["issuer"] == ISSUER.id
    key = ob2.cryptographic_key("https://x/k", ISSUER.id, "PEM")
    assert key["owner"] == ISSUER.id and key["type"] == "CryptographicKey"
    listed = ob2.revocation_list("https://x/rl", ISSUER.id, [("urn:uuid:1", "why")])
    assert listed["revokedAssertions"] == [{"id": "urn:uuid:1", "revocationReason": "why"}]


def credential(**changes: object) -> dict[str, object]:
    return ob3.open_badge_credential(
        issued(**changes),
        f"{BASE}/ob/assertions/1-abc/credential",
        BADGE,
        ISSUER,
        status_list_url=f"{ISSUER.id}/status/0",
        status_index=1,
    )


def test_a_credential_has_the_vc2_and_ob303_contexts_type_arrays_and_a_status_entry() -> None:
    document = credential()
    assert document["@context"] == [ob3.VC_CONTEXT, ob3.OB_CONTEXT]
    assert document["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert document["validFrom"] == "2026-01-15T12:00:00+00:00"
    assert document["validUntil"] == "2027-01-15T12:00:00+00:00"
    status = document["credentialStatus"]
    assert status == {
        "id": f"{ISSUER.id}/status/0#1",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "1",
        "statusListCredential": f"{ISSUER.id}/status/0",
    }
    subject = document["credentialSubject"]
    assert subject["identifier"][0]["identityHash"] == identity_hash("alice@example.org", "s4lt")  # type: ignore[index]


@requires_standards
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"expires": None, "evidence": ()},
        {"recipient": Recipient("https://x/ob/recipients/u", "url", "s")},
    ],
)
def test_credentials_validate_against_1edtechs_achievement_credential_schema(
    changes: dict[str, object],
) -> None:
    assert schema_errors(credential(**changes)) == []


@requires_standards
def test_the_schema_check_catches_a_broken_credential() -> None:
    broken = credential()
    broken["type"] = "OpenBadgeCredential"
    del broken["validFrom"]
    assert len(schema_errors(broken)) >= 2


def test_vc_jwt_claims_mirror_the_credential() -> None:
    document = credential()
    claims = ob3.vc_jwt_claims(document)
    assert claims["iss"] == ISSUER.id and claims["jti"] == document["id"]
    assert claims["sub"] == document["credentialSubject"]["id"]  # type: ignore[index]
    assert claims["nbf"] == int(datetime(2026, 1, 15, 12, tzinfo=UTC).timestamp())
    assert claims["exp"] == int(datetime(2027, 1, 15, 12, tzinfo=UTC).timestamp())
    assert "exp" not in ob3.vc_jwt_claims(credential(expires=None))
    status_list = ob3.status_list_credential(f"{ISSUER.id}/status/0", ISSUER, set(), ISSUED_ON)
    assert ob3.vc_jwt_claims(status_list)["iss"] == ISSUER.id  # an issuer given by id only


def test_the_bitstring_is_16_kib_msb_first_and_round_trips() -> None:
    encoded = ob3.encode_bitstring({0, 9, ob3.STATUS_LIST_BITS - 1})
    assert encoded.startswith("u") and "=" not in encoded
    bits = ob3.decode_bitstring(encoded)
    assert len(bits) == 16384
    assert bits[0] == 0x80 and bits[1] == 0x40 and bits[-1] == 0x01
    assert [ob3.bit_is_set(bits, i) for i in (0, 1, 9, ob3.STATUS_LIST_BITS - 1)] == [True, False, True, True]
    assert ob3.encode_bitstring(set()) == ob3.encode_bitstring(set())  # deterministic (no gzip mtime)
    with pytest.raises(ValueError, match="multibase"):
        ob3.decode_bitstring("z123")


def test_status_positions_follow_award_ids_across_lists() -> None:
    assert ob3.status_position(5) == (0, 5)
    assert ob3.status_position(ob3.STATUS_LIST_BITS + 3) == (1, 3)


def test_the_status_list_credential_carries_the_revoked_bits() -> None:
    document = ob3.status_list_credential(f"{ISSUER.id}/status/0", ISSUER, {7}, ISSUED_ON)
    assert document["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]
    subject = document["credentialSubject"]
    assert subject["statusPurpose"] == "revocation"
    assert ob3.bit_is_set(ob3.decode_bitstring(subject["encodedList"]), 7)
    assert not ob3.bit_is_set(ob3.decode_bitstring(subject["encodedList"]), 6)


@given(st.sets(st.integers(min_value=0, max_value=ob3.STATUS_LIST_BITS - 1), max_size=50))
def test_any_set_of_revoked_positions_decodes_to_exactly_those_bits(revoked: set[int]) -> None:
    bits = ob3.decode_bitstring(ob3.encode_bitstring(revoked))
    nonzero_bytes = [n for n, byte in enumerate(bits) if byte]  # checking all 131072 bits is slow
    found = {i for n in nonzero_bytes for i in range(n * 8, n * 8 + 8) if ob3.bit_is_set(bits, i)}
    assert found == revoked


@given(st.integers(min_value=1, max_value=10**15))
def test_every_award_number_round_trips_through_its_public_id(award_id: int) -> None:
    assert parse_public_award_id(SECRET, public_award_id(SECRET, award_id)) == award_id
