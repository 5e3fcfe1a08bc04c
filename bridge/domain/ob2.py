"""Open Badges 2.0 documents (1EdTech Final): Issuer Profile, BadgeClass, Assertion, RevocationList.

Pure builders: every URL comes in already resolved. The rules followed are the specification's and its
validator's (``../shared/reference/openbadges.md`` §1): the issuer has ``name``, ``url`` and ``email``;
datetimes carry an offset; a hashed identity looks like ``sha256$<hex>``; a revoked hosted assertion is
stripped to ``{id, type, revoked, revocationReason}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bridge.domain.openbadges import Achievement, IssuedBadge, IssuerProfile, iso

CONTEXT = "https://w3id.org/openbadges/v2"


def issuer_profile(issuer: IssuerProfile) -> dict[str, Any]:
    document: dict[str, Any] = {
        "@context": CONTEXT,
        "type": "Issuer",
        "id": issuer.id,
        "name": issuer.name,
        "url": issuer.url,
        "email": issuer.email,
    }
    if issuer.description:
        document["description"] = issuer.description
    if issuer.image:
        document["image"] = issuer.image
    if issuer.public_keys:
        document["publicKey"] = list(issuer.public_keys)
    if issuer.revocation_list:
        document["revocationList"] = issuer.revocation_list
    return document


def badge_class(achievement: Achievement, issuer_id: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "@context": CONTEXT,
        "type": "BadgeClass",
        "id": achievement.id,
        "name": achievement.name,
        "description": achievement.description,
        "image": achievement.image,
        "criteria": {"narrative": achievement.criteria_narrative or achievement.description},
        "issuer": issuer_id,
    }
    if achievement.tags:
        document["tags"] = list(achievement.tags)
    return document


def assertion(issued: IssuedBadge, badge_class_id: str, *, signing_key: str | None = None) -> dict[str, Any]:
    """The Assertion; ``signing_key`` (a CryptographicKey URL) makes it a SignedBadge, else HostedBadge."""
    verification: dict[str, Any] = (
        {"type": "SignedBadge", "creator": signing_key} if signing_key else {"type": "HostedBadge"}
    )
    document: dict[str, Any] = {
        "@context": CONTEXT,
        "type": "Assertion",
        "id": issued.id,
        "recipient": {
            "type": issued.recipient.type,
            "hashed": True,
            "salt": issued.recipient.salt,
            "identity": issued.recipient.hashed_identity,
        },
        "badge": badge_class_id,
        "verification": verification,
        "issuedOn": iso(issued.issued_on),
    }
    if issued.image:
        document["image"] = issued.image
    if issued.evidence:
        document["evidence"] = [
            {"type": "Evidence", "name": e.name, "narrative": e.narrative} for e in issued.evidence
        ]
    if issued.expires is not None:
        document["expires"] = iso(issued.expires)
    if issued.revoked:
        document["revoked"] = True
        document["revocationReason"] = issued.revocation_reason or ""
    return document


def revoked_assertion(assertion_id: str, reason: str | None) -> dict[str, Any]:
    """What a revoked hosted assertion's URL answers (with status 410): no recipient, no badge."""
    return {
        "@context": CONTEXT,
        "type": "Assertion",
        "id": assertion_id,
        "revoked": True,
        "revocationReason": reason or "",
    }


def revocation_list(
    list_id: str, issuer_id: str, revoked: Iterable[tuple[str, str | None]]
) -> dict[str, Any]:
    """The issuer's RevocationList: ``revoked`` holds (assertion id, reason) of every revoked signed badge."""
    return {
        "@context": CONTEXT,
        "type": "RevocationList",
        "id": list_id,
        "issuer": issuer_id,
        "revokedAssertions": [{"id": aid, "revocationReason": reason or ""} for aid, reason in revoked],
    }


def cryptographic_key(key_id: str, issuer_id: str, public_pem: str) -> dict[str, Any]:
    """A CryptographicKey; ``owner`` links back to the issuer, whose ``publicKey`` lists this key."""
    return {
        "@context": CONTEXT,
        "type": "CryptographicKey",
        "id": key_id,
        "owner": issuer_id,
        "publicKeyPem": public_pem,
    }
