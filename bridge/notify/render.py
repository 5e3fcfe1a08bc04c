"""The notification an outbox row stands for, built when it is sent, from the award as it is then (a
revoked award is told as revoked), with the links and the baked image the Open Badges publisher makes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bridge.db.models import Approval, Badge, Learner
from bridge.db.models_notify import OutboxNotification
from bridge.issuing import records
from bridge.issuing.publisher import Publisher
from bridge.issuing.records import AwardRecord
from bridge.notify.messages import Notification
from bridge.notify.opt_out import emails_wanted, opt_out_token


class Renderer:
    def __init__(self, publisher: Publisher, admin_email: str | None = None) -> None:
        self._publisher = publisher
        self._admin_email = admin_email

    def __call__(self, row: OutboxNotification) -> Notification | None:
        payload: dict[str, Any] = dict(row.payload or {})
        record = records.award_record(self._publisher.database, row.award_id) if row.award_id else None
        if record is not None:
            payload |= self._award_payload(record)
        elif row.kind == "approval.requested":
            payload |= self._approval_payload(payload.get("approval", {}).get("id"))
        target = row.target
        if row.channel == "email":
            if row.kind in ("award.made", "award.revoked"):
                database, learner = self._publisher.database, row.learner_id
                if record is None or learner is None or not emails_wanted(database, learner):
                    return None  # no award, or the learner asked for no award emails: nothing to send
                target = record.email
                token = opt_out_token(self._publisher.keys.secret, learner)
                payload["links"]["unsubscribe"] = self._publisher.url(f"/notifications/unsubscribe/{token}")
            else:  # alerts for the people who run the bridge
                target = self._admin_email
            if target is None:
                return None
        return Notification(row.id, row.kind, row.channel, row.created_at, payload, target, row.attempts)  # type: ignore[arg-type]

    def image(self, notification: Notification) -> bytes | None:
        """The baked OB 2.0 PNG of the notification's award (for an email to show and carry)."""
        award = notification.payload.get("award")
        record = records.award_record(self._publisher.database, award["id"]) if award else None
        return None if record is None else self._publisher.baked_png(record, 2)

    def _approval_payload(self, approval_id: Any) -> dict[str, Any]:
        """The request as it is now: its badge, tier and course, and the learner it waits for."""
        if not isinstance(approval_id, int):
            return {}
        with self._publisher.database.read() as session:
            found = session.execute(
                select(Approval, Badge.name, Learner)
                .join(Badge, Badge.id == Approval.badge_id)
                .join(Learner, Learner.id == Approval.learner_id)
                .where(Approval.id == approval_id)
            ).one_or_none()
        if found is None:
            return {}
        approval, badge_name, learner = found
        return {
            "approval": {
                "id": approval.id,
                "badge_id": approval.badge_id,
                "badge_name": badge_name,
                "tier": approval.tier or None,
                "course": approval.course,
                "earned_at": approval.earned_at.isoformat(),
                "status": approval.status,
            },
            "learner": {
                "platform": learner.platform,
                "lms_user_id": learner.lms_user_id,
                "name": learner.display_name,
            },
        }

    def _award_payload(self, record: AwardRecord) -> dict[str, Any]:
        assertion = self._publisher.assertion_url(record.award_id)
        return {
            "award": {
                "id": record.award_id,
                "badge_id": record.badge.id,
                "badge_name": record.badge.name,
                "badge_description": record.badge.description,
                "tier": record.tier,
                "awarded_at": record.awarded_at.isoformat(),
                "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
                "revoked_reason": record.revoked_reason,
            },
            "learner": {
                "platform": record.platform,
                "lms_user_id": record.lms_user_id,
                "name": record.learner_name,
                "email": record.email,
            },
            "links": {
                "badge_class": self._publisher.badge_class_url(
                    self._publisher.issuer_key(record.platform), record.badge.id, record.tier
                ),
                "badge_page": assertion,
                "assertion": assertion,
                "image_png": f"{assertion}/badge.png",
                "credential": f"{assertion}/credential.jwt",
            },
        }
