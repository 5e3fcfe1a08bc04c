"""Open Badges 3.0 documents: an OpenBadgeCredential per award (a W3C VC 2.0) and its status list.

Pure builders. The shapes follow 1EdTech's AchievementCredential JSON Schema, which is stricter than the
examples in the specification: every ``type`` is an array and the ``@context`` order is fixed. Revocation
uses a W3C Bitstring Status List: one bit per award, bit 0 the most significant bit of byte 0, the list
GZIP-compressed and base64url-encoded behind the multibase prefix ``u``.
"""

from __future__ import annotations

import base64
import gzip
from datetime import datetime
from typing import Any

from bridge.domain.openbadges import Achievement, IssuedBadge, IssuerProfile, iso

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
OB_CONTEXT = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
SCHEMA_ID = "https://purl.imsglobal.org/spec/ob/v3p0/schema/json/ob_v3p0_achievementcredential_schema.json"
# 131072 bits = 16 KiB, the W3C minimum: a short list would tell a verifier how few badges were issued.
STATUS_LIST_BITS = 131072


def status_position(award_id: int) -> tuple[int, int]:
    """(status list number, index in it) of an award: positions follow row ids, so nothing is stored."""
    return divmod(award_id, STATUS_LIST_BITS)


def profile(issuer: IssuerProfile) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": issuer.id,
        "type": ["Profile"],
        "name": issuer.name,
        "url": issuer.url,
        "email": issuer.email,
    }
    if issuer.description:
        document["description"] = issuer.description
    if issuer.image:
        document["image"] = {"id": issuer.image, "type": "Image"}
    return document


def achievement(badge: Achievement, issuer: IssuerProfile) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": badge.id,
        "type": ["Achievement"],
        "achievementType": "Badge",
        "name": badge.name,
        "description": badge.description,
        "criteria": {"narrative": badge.criteria_narrative or badge.description},
        "image": {"id": badge.image, "type": "Image", "caption": badge.name},
        "creator": profile(issuer),
    }
    if badge.tags:
        document["tag"] = list(badge.tags)
    return document


def open_badge_credential(
    issued: IssuedBadge,
    credential_id: str,
    badge: Achievement,
    issuer: IssuerProfile,
    *,
    status_list_url: str,
    status_index: int,
) -> dict[str, Any]:
    """The award as an OpenBadgeCredential (unsigned; ``vc_jwt_claims`` wraps it for a VC-JWT)."""
    subject: dict[str, Any] = {
        "id": issued.subject_id,
        "type": ["AchievementSubject"],
        "achievement": achievement(badge, issuer),
    }
    if issued.recipient.type == "email":
        subject["identifier"] = [
            {
                "type": "IdentityObject",
                "identityHash": issued.recipient.hashed_identity,
                "identityType": "emailAddress",
                "hashed": True,
                "salt": issued.recipient.salt,
            }
        ]
    credential: dict[str, Any] = {
        "@context": [VC_CONTEXT, OB_CONTEXT],
        "id": credential_id,
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": badge.name,
        "issuer": profile(issuer),
        "validFrom": iso(issued.issued_on),
        "awardedDate": iso(issued.issued_on),
        "credentialSubject": subject,
        "credentialSchema": [{"id": SCHEMA_ID, "type": "1EdTechJsonSchemaValidator2019"}],
        "credentialStatus": {
            "id": f"{status_list_url}#{status_index}",
            "type": "BitstringStatusListEntry",
            "statusPurpose": "revocation",
            "statusListIndex": str(status_index),
            "statusListCredential": status_list_url,
        },
    }
    if issued.expires is not None:
        credential["validUntil"] = iso(issued.expires)
    if issued.evidence:
        credential["evidence"] = [
            {"type": ["Evidence"], "name": e.name, "narrative": e.narrative} for e in issued.evidence
        ]
    return credential


def vc_jwt_claims(credential: dict[str, Any]) -> dict[str, Any]:
    """The VC-JWT payload (OB 3.0 §8.2): the credential plus its registered claims."""
    claims = dict(credential)
    issuer = credential["issuer"]
    claims["iss"] = issuer["id"] if isinstance(issuer, dict) else issuer
    claims["jti"] = credential["id"]
    claims["sub"] = credential["credentialSubject"]["id"]
    claims["nbf"] = _epoch(credential["validFrom"])
    if "validUntil" in credential:
        claims["exp"] = _epoch(credential["validUntil"])
    return claims


def encode_bitstring(set_bits: set[int], size: int = STATUS_LIST_BITS) -> str:
    """Multibase base64url (prefix ``u``, no padding) of the GZIP of the bitstring, MSB first."""
    bits = bytearray(size // 8)
    for index in set_bits:
        bits[index // 8] |= 0x80 >> (index % 8)
    # mtime=0: the same revocations always give the same bytes (cacheable, comparable).
    packed = gzip.compress(bytes(bits), mtime=0)
    return "u" + base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


def decode_bitstring(encoded: str) -> bytes:
    if not encoded.startswith("u"):
        raise ValueError("expected a multibase base64url value (prefix 'u')")
    data = encoded[1:]
    return gzip.decompress(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))


def bit_is_set(bitstring: bytes, index: int) -> bool:
    return bool(bitstring[index // 8] & (0x80 >> (index % 8)))


def status_list_credential(
    list_url: str, issuer: IssuerProfile, revoked_indices: set[int], valid_from: datetime
) -> dict[str, Any]:
    return {
        "@context": [VC_CONTEXT],
        "id": list_url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer.id,
        "validFrom": iso(valid_from),
        "credentialSubject": {
            "id": f"{list_url}#list",
            "type": "BitstringStatusList",
            "statusPurpose": "revocation",
            "encodedList": encode_bitstring(revoked_indices),
        },
    }


def _epoch(moment: str) -> int:
    return int(datetime.fromisoformat(moment).timestamp())
