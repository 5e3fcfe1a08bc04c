"""The notifications outbox: a row per award and channel, written in the award's own transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from bridge.db.models import Base, BigId, JsonDocument, UTCDateTime

NOTIFICATION_STATUSES = ("pending", "sent", "failed", "skipped")


class OutboxNotification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(f"status IN {NOTIFICATION_STATUSES}", name="status"),
        # The sender's claim: due rows of one status, oldest first.
        Index("ix_notifications_due", "status", "next_attempt_at"),
        # A learner's in-app list: unseen first.
        Index("ix_notifications_inbox", "learner_id", "channel", "seen_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # "award.made", "award.revoked", ...
    channel: Mapped[str] = mapped_column(String(16))  # "in-app", "email", "webhook", "xapi"
    target: Mapped[str | None] = mapped_column(String(320))  # a webhook's name; None: resolved when sent
    award_id: Mapped[int | None] = mapped_column(ForeignKey("awards.id"))
    learner_id: Mapped[int | None] = mapped_column(ForeignKey("learners.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument)  # facts not in other rows (sync.failed)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a sender is delivering it
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # in-app: the learner saw it
