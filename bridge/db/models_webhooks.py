"""Webhook follow-ups: what a webhook implies but does not carry (a Moodle grade), still to be read.

A row is written before the webhook is answered and deleted once the read's events are in the inbox, so
a read that fails, or a process that stops first, leaves it here to be retried (services.sync_webhooks).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from bridge.db.models import Base, BigId, UTCDateTime

FOLLOW_UP_STATUSES = ("pending", "failed")


class WebhookFollowUp(Base):
    __tablename__ = "webhook_follow_ups"
    __table_args__ = (
        CheckConstraint(f"status IN {FOLLOW_UP_STATUSES}", name="status"),
        # The scheduler's claim: pending follow-ups that are due.
        Index(
            "ix_webhook_follow_ups_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))
    webhook_type: Mapped[str] = mapped_column(String(255))
    # The webhook's JSON, less any shared secret it carried, as ASCII text: any string a webhook may hold
    # (NUL, a lone surrogate) is stored as its escape, which both databases keep.
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
