"""Every Open Badges document the bridge serves, composed from award rows, settings and keys.

URLs (all under ``public_base_url``; ``<iid>`` is ``default`` or a platform with its own issuer):

- ``/ob/issuers/<iid>``: OB 2.0 Issuer Profile; ``.../revocations``: RevocationList (signed badges);
  ``.../keys/<kid>``: CryptographicKey; ``.../badges/<badge>[/tiers/<tier>]``: BadgeClass;
  ``.../status/<n>``: Bitstring Status List credential (OB 3.0 revocation)
- ``/ob/assertions/<public id>``: the Assertion (JSON-LD) or the badge page (HTML), plus baked images
  and the OB 3.0 credential beneath it
- ``/ob/jwks.json`` and ``/ob/keys/<kid>``: the public signing keys as JWKs
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.domain import ob2, ob3
from bridge.domain.openbadges import (
    Achievement,
    IssuedBadge,
    IssuerProfile,
    award_salt,
    award_uuid,
    learner_uuid,
    parse_public_award_id,
    public_award_id,
    recipient_for,
)
from bridge.issuing import baking, records
from bridge.issuing.keys import Algorithm, KeyRing
from bridge.issuing.records import AwardRecord, BadgeRecord
from bridge.issuing.signing import sign_ob2_assertion, sign_vc_jwt
from bridge.settings import IssuerSettings, Settings

DEFAULT_ISSUER = "default"


class Publisher:
    def __init__(self, database: Database, settings: Settings, keys: KeyRing, images_dir: Path) -> None:
        self.database = database
        self.settings = settings
        self.keys = keys
        self.base = str(settings.public_base_url).rstrip("/")
        self._images_dir = images_dir

    # --- addresses -------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base + path

    def issuer_key(self, platform: str) -> str:
        configured = self.settings.platform(platform)
        return platform if configured is not None and configured.issuer is not None else DEFAULT_ISSUER

    def public_id(self, award_id: int) -> str:
        return public_award_id(self.keys.secret, award_id)

    def award_id(self, public_id: str) -> int | None:
        return parse_public_award_id(self.keys.secret, public_id)

    def assertion_url(self, award_id: int) -> str:
        return self.url(f"/ob/assertions/{self.public_id(award_id)}")

    def key_url(self, kid: str) -> str:
        return self.url(f"/ob/keys/{kid}")

    def badge_class_url(self, iid: str, badge_id: str, tier: str) -> str:
        tail = f"/tiers/{tier}" if tier else ""
        return self.url(f"/ob/issuers/{iid}/badges/{badge_id}{tail}")

    def status_list_url(self, iid: str, number: int) -> str:
        return self.url(f"/ob/issuers/{iid}/status/{number}")

    # --- issuers and badges ----------------------------------------------------------------------------

    def issuer_settings(self, iid: str) -> IssuerSettings | None:
        if iid == DEFAULT_ISSUER:
            return self.settings.issuer
        platform = self.settings.platform(iid)
        return platform.issuer if platform is not None else None

    def issuer(self, iid: str) -> IssuerProfile | None:
        chosen = self.issuer_settings(iid)
        if chosen is None:
            return None
        home = self.url(f"/ob/issuers/{iid}")
        # Only the active key: badgecheck allows one publicKey per issuer (more fail every signed badge).
        # Retired keys' documents stay served, so a JWS signed before a rotation can still be checked
        # against its `creator` key; downloads are always signed afresh with the active key.
        signed_keys = (f"{home}/keys/{self.keys.active('RS256').kid}",) if chosen.signed else ()
        return IssuerProfile(
            id=home,
            name=chosen.name,
            url=str(chosen.url or self.settings.public_base_url),
            email=chosen.email,
            description=chosen.description,
            image=str(chosen.image) if chosen.image else None,
            revocation_list=f"{home}/revocations" if chosen.signed else None,
            public_keys=signed_keys,
        )

    def achievement(self, iid: str, badge: BadgeRecord, tier: str) -> Achievement:
        return Achievement(
            id=self.badge_class_url(iid, badge.id, tier),
            name=f"{badge.name} ({tier.capitalize()})" if tier else badge.name,
            description=badge.description,
            image=self.url(f"/ob/images/{badge.id}.png"),
            criteria_narrative=badge.criteria_narrative,
            tags=badge.tags,
        )

    def badge_class(self, iid: str, badge_id: str, tier: str) -> dict[str, Any] | None:
        issuer = self.issuer(iid)
        badge = records.badge_record(self.database, badge_id)
        if issuer is None or badge is None or (tier and tier not in badge.tiers):
            return None
        return ob2.badge_class(self.achievement(iid, badge, tier), issuer.id)

    def image_svg(self, badge: str | BadgeRecord) -> bytes | None:
        """The badge's template SVG (by id, or of a badge already read); None when either is missing."""
        found = records.badge_record(self.database, badge) if isinstance(badge, str) else badge
        if found is None:
            return None
        path = (self._images_dir / found.image_file).resolve()
        # A badge edited over the API names its image: it must stay inside the templates folder.
        if not path.is_relative_to(self._images_dir.resolve()) or not path.is_file():
            return None
        return path.read_bytes()

    def image_png(self, badge: str | BadgeRecord) -> bytes | None:
        svg = self.image_svg(badge)
        return None if svg is None else _rendered(svg)

    # --- one award -------------------------------------------------------------------------------------

    def record(self, public_id: str) -> AwardRecord | None:
        award_id = self.award_id(public_id)
        return None if award_id is None else records.award_record(self.database, award_id)

    def is_signed(self, record: AwardRecord) -> bool:
        chosen = self.issuer_settings(self.issuer_key(record.platform))
        return chosen is not None and chosen.signed

    def issued(self, record: AwardRecord) -> IssuedBadge:
        secret = self.keys.secret
        learner = learner_uuid(secret, record.platform, record.lms_user_id)
        recipient = recipient_for(
            email=record.email,
            salt=award_salt(secret, record.award_id),
            fallback_base=self.base,
            learner_id=learner,
        )
        signed = self.is_signed(record)
        return IssuedBadge(
            id=f"urn:uuid:{award_uuid(secret, record.award_id)}"
            if signed
            else self.assertion_url(record.award_id),
            recipient=recipient,
            subject_id=f"urn:uuid:{learner}",
            issued_on=record.awarded_at,
            expires=record.expires_at,
            evidence=record.evidence,
            image=f"{self.assertion_url(record.award_id)}/badge.png",
            revoked=record.revoked_at is not None,
            revocation_reason=record.revoked_reason,
        )

    def assertion(self, record: AwardRecord) -> dict[str, Any]:
        """The OB 2.0 Assertion (signed or hosted, as the issuer is set up), including ``revoked``."""
        iid = self.issuer_key(record.platform)
        signing_key = None
        if self.is_signed(record):
            signing_key = self.url(f"/ob/issuers/{iid}/keys/{self.keys.active('RS256').kid}")
        return ob2.assertion(
            self.issued(record),
            self.badge_class_url(iid, record.badge.id, record.tier),
            signing_key=signing_key,
        )

    def signed_assertion(self, record: AwardRecord) -> str:
        return sign_ob2_assertion(self.assertion(record), self.keys.active("RS256"))

    def credential(self, record: AwardRecord) -> dict[str, Any]:
        iid = self.issuer_key(record.platform)
        issuer = self.issuer(iid)
        assert issuer is not None  # every learner's platform maps to a configured issuer
        number, index = ob3.status_position(record.award_id)
        return ob3.open_badge_credential(
            self.issued(record),
            f"{self.assertion_url(record.award_id)}/credential",
            self.achievement(iid, record.badge, record.tier),
            issuer,
            status_list_url=self.status_list_url(iid, number),
            status_index=index,
        )

    def credential_jwt(self, record: AwardRecord, alg: Algorithm) -> str:
        key = self.keys.active(alg)
        return sign_vc_jwt(ob3.vc_jwt_claims(self.credential(record)), key, self.key_url(key.kid))

    def ob2_baked_text(self, record: AwardRecord) -> str:
        """What a baked OB 2.0 image carries: the JWS (signed) or the assertion JSON (hosted)."""
        if self.is_signed(record):
            return self.signed_assertion(record)
        return _json(self.assertion(record))

    def baked_png(self, record: AwardRecord, version: int) -> bytes | None:
        png = self.image_png(record.badge)
        if png is None:
            return None
        if version == 2:
            return baking.bake_png(png, "openbadges", self.ob2_baked_text(record))
        return baking.bake_png(png, "openbadgecredential", self.credential_jwt(record, "RS256"))

    def baked_svg(self, record: AwardRecord, version: int) -> str | None:
        svg = self.image_svg(record.badge)
        if svg is None:
            return None
        text = svg.decode("utf-8")
        if version == 3:
            return baking.bake_svg(text, version=3, verify=self.credential_jwt(record, "RS256"))
        if self.is_signed(record):
            return baking.bake_svg(text, version=2, verify=self.signed_assertion(record))
        return baking.bake_svg(
            text, version=2, verify=self.assertion_url(record.award_id), body=_json(self.assertion(record))
        )

    # --- lists and keys --------------------------------------------------------------------------------

    def _own_platforms(self) -> list[str]:
        return [p.id for p in self.settings.platforms if p.issuer is not None]

    def _revoked(self, iid: str, id_range: range | None = None) -> list[tuple[int, str | None]]:
        if iid == DEFAULT_ISSUER:
            return records.revoked_awards(
                self.database, self._own_platforms(), exclude=True, id_range=id_range
            )
        return records.revoked_awards(self.database, [iid], exclude=False, id_range=id_range)

    def revocation_list(self, iid: str) -> dict[str, Any] | None:
        issuer = self.issuer(iid)
        if issuer is None:
            return None
        revoked = [(f"urn:uuid:{award_uuid(self.keys.secret, a)}", why) for a, why in self._revoked(iid)]
        return ob2.revocation_list(f"{issuer.id}/revocations", issuer.id, revoked)

    def status_list(self, iid: str, number: int) -> dict[str, Any] | None:
        issuer = self.issuer(iid)
        if issuer is None:
            return None
        size = ob3.STATUS_LIST_BITS
        revoked = self._revoked(iid, range(number * size, (number + 1) * size))
        return ob3.status_list_credential(
            self.status_list_url(iid, number), issuer, {a - number * size for a, _ in revoked}, utcnow()
        )

    def status_list_jwt(self, iid: str, number: int) -> str | None:
        document = self.status_list(iid, number)
        if document is None:
            return None
        key = self.keys.active("RS256")
        return sign_vc_jwt(ob3.vc_jwt_claims(document), key, self.key_url(key.kid))

    def ob2_key(self, iid: str, kid: str) -> dict[str, Any] | None:
        issuer, key = self.issuer(iid), self.keys.get(kid)
        if issuer is None or key is None or key.alg != "RS256":
            return None
        return ob2.cryptographic_key(f"{issuer.id}/keys/{kid}", issuer.id, key.public_pem())

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk(self.key_url(k.kid)) for k in self.keys.all_keys()]}

    def jwk(self, kid: str) -> dict[str, Any] | None:
        key = self.keys.get(kid)
        return None if key is None else key.public_jwk(self.key_url(kid))

    def status_of(self, record: AwardRecord, now: datetime | None = None) -> str:
        """``revoked``, ``expired`` or ``valid``, for people reading the badge page."""
        now = now or utcnow()
        if record.revoked_at is not None:
            return "revoked"
        if record.expires_at is not None and record.expires_at <= now:
            return "expired"
        return "valid"


@functools.lru_cache(maxsize=64)
def _rendered(svg: bytes) -> bytes:
    """Rendering takes milliseconds; badge images change rarely, so keep the last few."""
    return baking.render_png(svg)


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
