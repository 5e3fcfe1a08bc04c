"""Tables of the LMS sync: where each stream of each course got to, and a record of every run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bridge.db.models import Base, BigId, JsonDocument, UTCDateTime

SYNC_STATUSES = ("running", "succeeded", "partial", "failed")


class SyncCursor(Base):
    """A connector's cursor for one stream of one course: a watermark, a next page, a snapshot."""

    __tablename__ = "sync_cursors"

    platform: Mapped[str] = mapped_column(String(64), primary_key=True)
    course: Mapped[str] = mapped_column(String(255), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SyncRun(Base):
    """One sync of one platform (all its courses, or one): what it cost and what it found."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        CheckConstraint(f"status IN {SYNC_STATUSES}", name="status"),
        Index("ix_sync_runs_platform", "platform", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))
    course: Mapped[str | None] = mapped_column(String(255))  # None: every course of the platform
    full: Mapped[bool] = mapped_column(Boolean)
    trigger: Mapped[str] = mapped_column(String(16))  # "schedule", "cli"
    holder: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    courses: Mapped[int] = mapped_column(Integer, server_default="0")
    calls: Mapped[int] = mapped_column(Integer, server_default="0")
    events: Mapped[int] = mapped_column(Integer, server_default="0")  # new in the inbox
    duplicates: Mapped[int] = mapped_column(Integer, server_default="0")  # already there (a webhook's)
    errors: Mapped[int] = mapped_column(Integer, server_default="0")
    problems: Mapped[list[str]] = mapped_column(JsonDocument)  # the first 100 errors, each with its reason
