"""A learner's choice to get no more award emails: the switch on their page in the LMS, and the link every
award email carries (one click from the mail client, as RFC 8058 says, or a page with a button).

The link names the learner by a token signed with the server secret (bridge.issuing.keys), so it needs no
sign-in and cannot be made for another learner; it never expires, as mail is read late."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select, update

from bridge.db.engine import Database
from bridge.db.models import Learner
from bridge.services.audit import record_audit

_SALT = "email-opt-out"


def opt_out_token(secret: bytes, learner_id: int) -> str:
    return URLSafeSerializer(secret, salt=_SALT).dumps(learner_id)


def learner_of(secret: bytes, token: str) -> int | None:
    """The learner a link's token names, or None for a token this server did not sign."""
    try:
        found = URLSafeSerializer(secret, salt=_SALT).loads(token)
    except BadSignature:
        return None
    return found if isinstance(found, int) else None


def learner_id(database: Database, platform: str, lms_user_id: str) -> int | None:
    with database.read() as session:
        return session.scalar(
            select(Learner.id).where(Learner.platform == platform, Learner.lms_user_id == lms_user_id)
        )


def emails_wanted(database: Database, learner_id: int) -> bool | None:
    """Whether the learner gets award emails; None for an unknown learner."""
    with database.read() as session:
        opted_out = session.scalar(select(Learner.email_opt_out).where(Learner.id == learner_id))
    return None if opted_out is None else not opted_out


def set_emails_wanted(database: Database, learner_id: int, wanted: bool, *, actor: str) -> bool:
    """Record the learner's choice (audited); False for an unknown learner."""
    with database.write() as session:
        changed = session.execute(
            update(Learner).where(Learner.id == learner_id).values(email_opt_out=not wanted)
        ).rowcount
        if changed:
            details = {"award_emails": "on" if wanted else "off"}
            record_audit(session, actor, "email_preference", learner_id=learner_id, details=details)
    return bool(changed)
