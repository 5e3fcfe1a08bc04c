"""Tables. The events table is the durable inbox; progress, awards and learners are its effects."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

EVENT_STATUSES = ("pending", "done", "failed")
APPROVAL_STATUSES = ("pending", "approved", "rejected")

# SQLite only aliases the rowid (and so autoincrements) for a column declared exactly INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonDocument = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which stores naive text) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("platform", "event_key"),
        CheckConstraint(f"status IN {EVENT_STATUSES}", name="status"),
        # The worker's claim query scans only pending events, in arrival order.
        Index(
            "ix_events_pending",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # A learner's events of some kinds in time order: the history replayed after a criteria change
        # and the evidence of an award, without sorting everything the learner did.
        Index("ix_events_learner_history", "platform", "learner", "kind", "occurred_at"),
        # A learner's events not done yet: the few that the history index alone cannot tell from the
        # processed ones, without reading every row (see services.effects, award evidence).
        Index(
            "ix_events_learner_open",
            "platform",
            "learner",
            postgresql_where=text("status != 'done'"),
            sqlite_where=text("status != 'done'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(64))
    learner: Mapped[str] = mapped_column(String(255))
    course: Mapped[str | None] = mapped_column(String(255))
    item: Mapped[str | None] = mapped_column(String(255))
    score: Mapped[float | None] = mapped_column(Float)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class Learner(Base):
    """A learner is (platform, LMS user id). The row is also the per-learner lock while evaluating."""

    __tablename__ = "learners"
    __table_args__ = (UniqueConstraint("platform", "lms_user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))
    lms_user_id: Mapped[str] = mapped_column(String(255))
    points: Mapped[int] = mapped_column(Integer, server_default="0")
    display_name: Mapped[str | None] = mapped_column(String(255))
    # Shown instead of the name on leaderboards when the learner opted out or names are anonymised.
    pseudonym: Mapped[str] = mapped_column(String(32))
    leaderboard_opt_out: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # No award emails (the learner's page, or the link in every such email, sets it).
    email_opt_out: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The badge recipient identity (hashed in every assertion); None until an event, roster or the API
    # names it, and meanwhile badges name a pseudonymous URL (bridge/domain/openbadges.py).
    email: Mapped[str | None] = mapped_column(String(320))
    # Set when the learner opts in to a public badge profile: the unguessable part of its URL.
    profile_token: Mapped[str | None] = mapped_column(String(64), unique=True)


class CourseMember(Base):
    """Who belongs to which course (and section), as seen in their events; leaderboards rank these."""

    __tablename__ = "course_members"
    __table_args__ = (Index("ix_course_members_course", "course", "learner_id"),)

    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), primary_key=True)
    course: Mapped[str] = mapped_column(String(255), primary_key=True)
    section: Mapped[str | None] = mapped_column(String(255))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Badge(Base):
    __tablename__ = "badges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    image: Mapped[str] = mapped_column(String(255))
    narrative: Mapped[str] = mapped_column(Text, server_default="")
    tags: Mapped[list[str]] = mapped_column(JsonDocument)
    points: Mapped[int] = mapped_column(Integer, server_default="0")
    criteria: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    criteria_version: Mapped[int] = mapped_column(Integer, server_default="1")
    # When this criteria version took effect: learners first seen later were never evaluated under an
    # older one, so a missing progress row means no progress, with no history to replay.
    criteria_since: Mapped[datetime] = mapped_column(UTCDateTime)
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JsonDocument)
    prerequisites: Mapped[list[str]] = mapped_column(JsonDocument)
    requires_approval: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    expires_after_days: Mapped[int | None] = mapped_column(Integer)
    expires_on: Mapped[date | None] = mapped_column(Date)
    # The template document as given (file or API); the columns above are what it resolves to.
    definition: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    # "file": kept in step with its template file on start; "api": edited at run time, files leave it be.
    source: Mapped[str] = mapped_column(String(8), server_default="file")
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LearnerState(Base):
    """The rules engine's working state for one learner: their requirement states, and a record per
    badge they have progress on.

    One document per learner, so that a batch reads and writes one row per learner whatever the number
    of badges (see benchmarks/evaluator.py); its format is in bridge/services/ledgers.py.
    """

    __tablename__ = "learner_states"

    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), primary_key=True)
    states: Mapped[dict[str, list[Any]]] = mapped_column(JsonDocument)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Progress(Base):
    """The report of a learner x badge record: its criteria version, start, completeness and tier.

    What the sweep, analytics and the tier funnel read, written when it changes for records that are
    (or were) complete or on a tier, for every record of a tiered badge, and for records the sweep
    rebuilds; not at every step. Values are worked out from ``learner_states``.
    """

    __tablename__ = "progress"

    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), primary_key=True)
    badge_id: Mapped[str] = mapped_column(ForeignKey("badges.id"), primary_key=True)
    criteria_version: Mapped[int] = mapped_column(Integer)
    complete: Mapped[bool] = mapped_column(Boolean)
    tier: Mapped[str] = mapped_column(String(16), server_default="")
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the first counted event
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Award(Base):
    __tablename__ = "awards"
    __table_args__ = (
        UniqueConstraint("learner_id", "badge_id", "tier"),
        Index("ix_awards_badge_id", "badge_id", "awarded_at"),
        Index("ix_awards_course", "course", "awarded_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"))
    badge_id: Mapped[str] = mapped_column(ForeignKey("badges.id"))
    tier: Mapped[str] = mapped_column(String(16), server_default="")
    criteria_version: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    # Provenance: the events that earned it (the latest first, at most 100).
    event_ids: Mapped[list[int]] = mapped_column(JsonDocument)
    points: Mapped[int] = mapped_column(Integer, server_default="0")
    course: Mapped[str | None] = mapped_column(String(255))  # of the event that earned it
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the learner did it
    awarded_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the bridge recorded it
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    granted_by: Mapped[str | None] = mapped_column(String(255))  # None: the rules
    reason: Mapped[str | None] = mapped_column(Text)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(255))
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class Approval(Base):
    """A completed badge that requires approval, waiting for (or decided by) an instructor."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("learner_id", "badge_id", "tier"),
        CheckConstraint(f"status IN {APPROVAL_STATUSES}", name="status"),
        Index("ix_approvals_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"))
    badge_id: Mapped[str] = mapped_column(ForeignKey("badges.id"))
    tier: Mapped[str] = mapped_column(String(16), server_default="")
    criteria_version: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    course: Mapped[str | None] = mapped_column(String(255))
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    award_id: Mapped[int | None] = mapped_column(ForeignKey("awards.id"))


class AuditEntry(Base):
    """Every manual action: who did what to whom, when and why. Never updated or deleted."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_learner_id", "learner_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    learner_id: Mapped[int | None] = mapped_column(ForeignKey("learners.id"))
    badge_id: Mapped[str | None] = mapped_column(String(64))
    tier: Mapped[str | None] = mapped_column(String(16))
    award_id: Mapped[int | None] = mapped_column(ForeignKey("awards.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JsonDocument)


class Lease(Base):
    """Who runs a scheduled job right now; one row per job name, taken when expired."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


API_KEY_SCOPES = ("read", "write", "admin")  # each allows what the ones before it allow


class ApiKey(Base):
    """REST API credentials; only the SHA-256 of the key is kept."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(f"scope IN {API_KEY_SCOPES}", name="scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scope: Mapped[str] = mapped_column(String(8))
    platform: Mapped[str | None] = mapped_column(String(64))  # None: every platform
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: never
    # Written at most once a minute per key (bridge/services/api_keys.py), not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Imported last: those modules add their tables to Base.metadata (tests empty every table listed there).
from bridge.db import (  # noqa: E402, F401
    models_lti,
    models_lti_grades,
    models_notify,
    models_sync,
    models_webhooks,
)
