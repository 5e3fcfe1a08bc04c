"""What an award looks like to the outside world, before it is written as OB 2.0 or OB 3.0 JSON.

Plain data and pure functions: the builders in ``ob2.py`` and ``ob3.py`` turn these into documents.

Recipient identity: the learner's email, hashed with SHA-256 and a per-award salt. Where no email is
known yet, the documented fallback is a pseudonymous URL on this bridge,
``<public_base_url>/ob/recipients/<uuid>``, of type ``url``; the uuid is derived from a server secret and
the learner's (platform, LMS user id), so it is stable, says nothing about the learner and cannot be
guessed. The same uuid is the OB 3.0 ``credentialSubject.id`` (``urn:uuid:<uuid>``).

Salts are derived too (HMAC of the server secret and the award id), so nothing extra is stored and the
same award always shows the same hash.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

RecipientType = Literal["email", "url"]


@dataclass(frozen=True, slots=True)
class IssuerProfile:
    id: str  # the URL the OB 2.0 Issuer Profile is served at
    name: str
    url: str
    email: str
    description: str = ""
    image: str | None = None
    revocation_list: str | None = None  # signed OB 2.0 only
    public_keys: tuple[str, ...] = ()  # CryptographicKey URLs, signed OB 2.0 only


@dataclass(frozen=True, slots=True)
class Achievement:
    """One badge template (and tier) as published: an OB 2.0 BadgeClass, an OB 3.0 Achievement."""

    id: str  # the URL the BadgeClass is served at
    name: str
    description: str
    image: str  # URL of the badge image (PNG)
    criteria_narrative: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Recipient:
    identity: str  # plain text; only its salted hash leaves the bridge
    type: RecipientType
    salt: str

    @property
    def hashed_identity(self) -> str:
        return identity_hash(self.identity, self.salt)


@dataclass(frozen=True, slots=True)
class Evidence:
    name: str
    narrative: str


@dataclass(frozen=True, slots=True)
class IssuedBadge:
    """One award, as published: who, when, until when, why, and whether it still stands."""

    id: str  # OB 2.0 Assertion id: its hosted URL, or urn:uuid for a signed badge
    recipient: Recipient
    subject_id: str  # urn:uuid of the learner, the OB 3.0 credentialSubject.id
    issued_on: datetime
    expires: datetime | None
    evidence: tuple[Evidence, ...]
    image: str | None = None  # the baked PNG's URL
    revoked: bool = False
    revocation_reason: str | None = None


def identity_hash(identity: str, salt: str) -> str:
    """OB 2.0 IdentityHash: ``"sha256$" + hex(sha256(identity + salt))``."""
    return "sha256$" + hashlib.sha256((identity + salt).encode("utf-8")).hexdigest()


def award_salt(secret: bytes, award_id: int) -> str:
    return hmac.new(secret, f"salt:{award_id}".encode(), hashlib.sha256).hexdigest()[:32]


def learner_uuid(secret: bytes, platform: str, lms_user_id: str) -> uuid.UUID:
    digest = hmac.new(secret, f"learner:{platform}\x00{lms_user_id}".encode(), hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def award_uuid(secret: bytes, award_id: int) -> uuid.UUID:
    """The signed OB 2.0 assertion id: stable per award, unrelated to any URL."""
    digest = hmac.new(secret, f"award-id:{award_id}".encode(), hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def public_award_id(secret: bytes, award_id: int) -> str:
    """The award's id in public URLs: the row id plus a MAC, so URLs cannot be enumerated."""
    mac = hmac.new(secret, f"award:{award_id}".encode(), hashlib.sha256).hexdigest()[:20]
    return f"{award_id}-{mac}"


def parse_public_award_id(secret: bytes, public_id: str) -> int | None:
    """The award row id in ``public_id``, or None when the MAC does not match (an unknown URL)."""
    number, _, _ = public_id.partition("-")
    if not number.isdigit() or len(number) > 18:
        return None
    award_id = int(number)
    return award_id if hmac.compare_digest(public_award_id(secret, award_id), public_id) else None


def recipient_for(*, email: str | None, salt: str, fallback_base: str, learner_id: uuid.UUID) -> Recipient:
    """The learner's email when known (lower-cased: addresses are matched case-insensitively), else the
    pseudonymous fallback URL described in this module's docstring."""
    if email:
        return Recipient(email.strip().lower(), "email", salt)
    return Recipient(f"{fallback_base.rstrip('/')}/ob/recipients/{learner_id}", "url", salt)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with an explicit offset, to the second (what both OB versions and JWTs expect)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def evidence_text(kind: str, course: str | None, item: str | None, score: float | None) -> str:
    """One line for one earning event: ``Quiz graded: DL101 / quiz-3, score 92%``."""
    what = kind.replace("_", " ").capitalize()
    where = " / ".join(part for part in (course, item) if part)
    text = f"{what}: {where}" if where else what
    return f"{text}, score {round(score * 100)}%" if score is not None else text
